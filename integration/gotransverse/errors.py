"""Typed Gotransverse AR Ledger errors, one class per way a call can fail.

Every error carries the HTTP `status` (None when no response came back), the ledger's own `code`
and `message` (the spec's error body is `{"code": "...", "message": "..."}`), the `endpoint`
("METHOD /path", never the query string or body) and whether trying again may help
(`retryable`). Callers branch on the class or on `retryable`, never on message text.

Only 503, timeouts and connection failures are retryable. A timeout or a broken connection on a
write that is not safe to repeat (creating transactions) is raised with `retryable=False` and
`outcome_unknown=True`: the ledger may have booked it, so the caller must look the transaction up
by its source_transaction_reference before sending it again (the ledger does not reject
duplicate references, so a blind retry could post twice).
"""

from __future__ import annotations

from typing import Any


class GotransverseError(Exception):
    """Base of every AR Ledger failure."""

    default_retryable = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        endpoint: str = "",
        retryable: bool | None = None,
        outcome_unknown: bool = False,
    ):
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.endpoint = endpoint
        self.retryable = self.default_retryable if retryable is None else retryable
        # True when a write may or may not have been applied (no answer came back).
        self.outcome_unknown = outcome_unknown

    def __str__(self) -> str:
        status = f"HTTP {self.status}" if self.status is not None else "no HTTP response"
        code = f" [{self.code}]" if self.code else ""
        return f"Gotransverse {self.endpoint} failed ({status}){code}: {self.message}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, code={self.code!r}, "
            f"message={self.message!r}, endpoint={self.endpoint!r}, "
            f"retryable={self.retryable!r})"
        )

    def __reduce__(self) -> Any:
        # The task queue pickles failures; the default cls(*args) would lose the keywords.
        return (
            _rebuild,
            (
                type(self),
                self.message,
                {
                    "status": self.status,
                    "code": self.code,
                    "endpoint": self.endpoint,
                    "retryable": self.retryable,
                    "outcome_unknown": self.outcome_unknown,
                },
            ),
        )


def _rebuild(cls: type[GotransverseError], message: str, kwargs: dict[str, Any]) -> Any:
    return cls(message, **kwargs)


class BadRequestError(GotransverseError):
    """400: the ledger refused the request as invalid. Fix the request; retrying will not help."""


class AuthenticationError(GotransverseError):
    """401: the X-Api-Key was missing or wrong. Fix GOTRANSVERSE_API_KEY."""


class ForbiddenError(GotransverseError):
    """403: the key is valid but may not do this. Fix the key's permissions in Gotransverse."""


class NotFoundError(GotransverseError):
    """404: no such ledger, year, period, account, transaction or run."""


class ConflictError(GotransverseError):
    """409: the request conflicts with the ledger's state (e.g. changing a posted transaction)."""


class PreconditionFailedError(GotransverseError):
    """412: the ledger is not in a state to do this (e.g. a run while another is running)."""


class ServiceUnavailableError(GotransverseError):
    """503: the ledger is temporarily unavailable. Retried with backoff by the client."""

    default_retryable = True


class GotransverseTimeoutError(GotransverseError):
    """No answer within the client's timeout. Retryable unless the write is unsafe to repeat."""

    default_retryable = True


class GotransverseConnectionError(GotransverseError):
    """The connection failed (refused, reset, DNS). Retryable unless the write may have landed."""

    default_retryable = True


class UnexpectedResponseError(GotransverseError):
    """The ledger answered something the spec does not describe (not JSON, wrong shape)."""


_BY_STATUS: dict[int, type[GotransverseError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    412: PreconditionFailedError,
    503: ServiceUnavailableError,
}


def error_for_status(
    status: int, body: Any, *, endpoint: str, reason: str = ""
) -> GotransverseError:
    """The typed error for an HTTP error answer, reading the spec's `{"code", "message"}` body."""
    code: str | None = None
    message = ""
    if isinstance(body, dict):
        raw_code = body.get("code")
        code = None if raw_code is None else str(raw_code)
        raw_message = body.get("message")
        message = "" if raw_message is None else str(raw_message)
    if not message:
        message = reason or f"HTTP {status} without an error message"
    cls = _BY_STATUS.get(status, GotransverseError)
    return cls(message, status=status, code=code, endpoint=endpoint)
