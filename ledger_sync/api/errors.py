"""One error body for the whole API: `{"error": {"code", "message", "field"}}`.

`code` is stable and meant for machines (e.g. `unknown_invoice`, `idempotency_conflict`);
`message` is a sentence for a person, naming what is wrong and how to fix it; `field` is the
request field at fault, or null.
"""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from ledger_sync.services.payments import CallbackRejected, IdempotencyConflict


class ApiError(exceptions.APIException):
    """An API error carrying its own code and field."""

    def __init__(self, message: str, *, code: str, field: str | None = None, status_code: int):
        super().__init__(detail=message, code=code)
        self.status_code = status_code
        self.error_code = code
        self.field = field


class BodyTooLarge(ApiError):
    def __init__(self, limit: int):
        super().__init__(
            f"The request body is larger than {limit} bytes.",
            code="body_too_large",
            status_code=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )


class HttpsRequired(ApiError):
    def __init__(self) -> None:
        super().__init__(
            "This API is served over HTTPS only; send the request to the https:// address.",
            code="https_required",
            status_code=status.HTTP_403_FORBIDDEN,
        )


def error_body(*, code: str, message: str, field: str | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "field": field}}


def error_response(
    *, status_code: int, code: str, message: str, field: str | None = None, headers=None
) -> Response:
    return Response(
        error_body(code=code, message=message, field=field), status=status_code, headers=headers
    )


_DEFAULT_CODES = {
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "throttled",
    exceptions.ParseError: "malformed_json",
}


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler (status, WWW-Authenticate, Retry-After), with our body."""
    if isinstance(exc, CallbackRejected):
        return error_response(status_code=422, code=exc.code, message=exc.message, field=exc.field)
    if isinstance(exc, IdempotencyConflict):
        return error_response(
            status_code=409, code="idempotency_conflict", message=exc.message, field=exc.field
        )
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, ApiError):
        response.data = error_body(code=exc.error_code, message=str(exc.detail), field=exc.field)
        return response
    if isinstance(exc, exceptions.ValidationError):
        field, message = _first_error(exc.detail)
        response.data = error_body(code="invalid", message=message, field=field)
        return response
    code = next((value for cls, value in _DEFAULT_CODES.items() if isinstance(exc, cls)), "error")
    detail = getattr(exc, "detail", str(exc))
    response.data = error_body(code=code, message=str(detail))
    return response


def _first_error(detail: Any, prefix: str = "") -> tuple[str | None, str]:
    """The first field and message of a (possibly nested) DRF ValidationError detail."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = None if key == "non_field_errors" else f"{prefix}{key}"
            field, message = _first_error(value, prefix=f"{name}." if name else prefix)
            return field or name, message
    if isinstance(detail, list) and detail:
        return _first_error(detail[0], prefix)
    text = str(detail)
    field = prefix.rstrip(".") or None
    return field, f"{field}: {text}" if field else text
