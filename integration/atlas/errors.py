"""Typed ATLAS errors, one class per way a call can fail (after stripe-python's hierarchy).

Every error names the endpoint, the HTTP status (None when no response came back) and ATLAS's
own `message`, and knows whether trying again may help (`retryable`). Callers branch on the class
or on `retryable`, never on message text. No error ever carries a token, a password or a request
body: the client builds every message itself from the endpoint, the status and ATLAS's answer.
"""

from __future__ import annotations

from typing import Any


class AtlasError(Exception):
    """Base of every ATLAS failure."""

    default_retryable = False
    # True when a write may or may not have been applied (no clear answer came back): the client
    # does not resend a create in that state, and the caller must look the record up (by its
    # externalId) before sending it again.
    outcome_unknown = False

    def __init__(
        self,
        message: str,
        *,
        endpoint: str,
        status: int | None = None,
        retryable: bool | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.endpoint = endpoint
        self.status = status
        self.retryable = self.default_retryable if retryable is None else retryable

    def __str__(self) -> str:
        status = f"HTTP {self.status}" if self.status is not None else "no HTTP response"
        return f"ATLAS {self.endpoint} failed ({status}): {self.message}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(endpoint={self.endpoint!r}, status={self.status!r}, "
            f"message={self.message!r}, retryable={self.retryable!r})"
        )

    def _init_kwargs(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "status": self.status, "retryable": self.retryable}

    def __reduce__(self) -> Any:
        # Exceptions pickle as cls(*args) by default, which loses the keyword-only fields; the
        # task queue pickles failures, so rebuild with every field.
        state = {"outcome_unknown": True} if self.outcome_unknown else None
        return (_rebuild, (type(self), self.message, self._init_kwargs()), state)


def _rebuild(cls: type[AtlasError], message: str, kwargs: dict[str, Any]) -> AtlasError:
    return cls(message, **kwargs)


class AtlasAuthenticationError(AtlasError):
    """ATLAS refused the service account, or still answered 401 after one token renewal.

    Not retryable: the fix is the credentials (ATLAS_USERNAME / ATLAS_PASSWORD) or the account's
    permissions in ATLAS, not another attempt.
    """


class AtlasRateLimitError(AtlasError):
    """ATLAS kept answering 429 after the client's bounded retries. `retry_after_seconds` is
    ATLAS's Retry-After, when it sent one."""

    default_retryable = True

    def __init__(
        self,
        message: str,
        *,
        endpoint: str,
        status: int | None = 429,
        retryable: bool | None = None,
        retry_after_seconds: float | None = None,
    ):
        super().__init__(message, endpoint=endpoint, status=status, retryable=retryable)
        self.retry_after_seconds = retry_after_seconds

    def _init_kwargs(self) -> dict[str, Any]:
        return {**super()._init_kwargs(), "retry_after_seconds": self.retry_after_seconds}


class AtlasPacingError(AtlasRateLimitError):
    """Our own shared pacer found no free request slot within its wait bound; nothing was sent.

    Retryable later (the window moves on), but the client does not retry it itself.
    """

    def __init__(
        self,
        message: str,
        *,
        endpoint: str,
        status: int | None = None,
        retryable: bool | None = None,
        retry_after_seconds: float | None = None,
    ):
        super().__init__(
            message,
            endpoint=endpoint,
            status=status,
            retryable=retryable,
            retry_after_seconds=retry_after_seconds,
        )


class AtlasServerError(AtlasError):
    """ATLAS answered 5xx (after the retries, when raised by the client)."""

    default_retryable = True


class AtlasTimeoutError(AtlasError):
    """No answer within the client's timeout. The request may or may not have been applied."""

    default_retryable = True


class AtlasConnectionError(AtlasError):
    """The connection could not be made or broke before an answer came."""

    default_retryable = True


class AtlasBadRequestError(AtlasError):
    """ATLAS rejected the request itself (400, 404, 409, 422 and other 4xx): never retried,
    because the same request would be rejected again. `message` is ATLAS's reason."""


class AtlasProtocolError(AtlasError):
    """ATLAS answered something that is not its envelope: not JSON, no `success`/`data`, or
    `success: false` with a 2xx status."""
