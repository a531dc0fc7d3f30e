"""One error body for the whole API: `{"error": {"code", "message", "field"}}`.

`code` is stable and meant for machines (e.g. `unknown_invoice`, `idempotency_conflict`);
`message` is a sentence for a person, naming what is wrong and how to fix it; `field` is the
request field at fault, or null.
"""

from __future__ import annotations

import logging
from typing import Any

from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from ledger_sync.models import ApiClient
from ledger_sync.services.callbacks import CallbackRejected, IdempotencyConflict
from ledger_sync.services.problems import refused_request_report

logger = logging.getLogger(__name__)


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


def refused_request_record(request: Any, response: Response, *, caller: str | None = None) -> None:
    """Put a 4xx answer in the error queue (folded per endpoint, caller, status and reason).

    Only the error body's code, message and field are kept: never the request body or its
    headers (a token, a signature). `caller` names a caller that has no API client (the ATLAS
    webhook); otherwise the authenticated client, or "an unauthenticated caller".
    """
    if not 400 <= response.status_code < 500:
        return
    try:
        _refused_request_record(request, response, caller=caller)
    except Exception:
        # The answer goes out whatever happens to its record.
        logger.exception("problems.refused_request_not_recorded")


def _refused_request_record(request: Any, response: Response, *, caller: str | None) -> None:
    error = (response.data or {}).get("error") if isinstance(response.data, dict) else None
    error = error if isinstance(error, dict) else {}
    # Not request.auth: reading it would authenticate again when the request was refused
    # before authentication (HTTPS, body size).
    client = getattr(request, "_auth", None)
    client = client if isinstance(client, ApiClient) else None
    match = getattr(request, "resolver_match", None)
    refused_request_report(
        route=match.route if match is not None else request.path,
        method=request.method,
        client=caller or (f"API client {client.name}" if client else "an unauthenticated caller"),
        api_client_pk=client.pk if client else None,
        status_code=response.status_code,
        code=str(error.get("code") or "error"),
        message=str(error.get("message") or response.status_text or ""),
        field=error.get("field"),
        remote_addr=request.META.get("REMOTE_ADDR"),
    )
