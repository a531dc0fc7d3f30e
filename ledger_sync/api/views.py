"""The inbound endpoints. Views check the transport (HTTPS, size, signature or token, shape)
and delegate to services/inbound.py and services/payments.py; no business rule lives here."""

from __future__ import annotations

import io
import logging
from typing import Any

from django.conf import settings
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
)
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from ledger_sync.api.authentication import ApiClientTokenAuthentication
from ledger_sync.api.errors import (
    BodyTooLarge,
    HttpsRequired,
    api_exception_handler,
    error_response,
    refused_request_record,
)
from ledger_sync.api.parsers import ExactJSONParser
from ledger_sync.api.permissions import HasApiClientPermission
from ledger_sync.api.serializers import (
    ErrorSerializer,
    InvoiceReportRequestSerializer,
    InvoiceResourceSerializer,
    PaymentRequestSerializer,
    PaymentResourceSerializer,
    WebhookAckSerializer,
    WebhookPayloadSerializer,
    invoice_resource,
    payment_resource,
)
from ledger_sync.api.throttling import ApiClientScopedThrottle
from ledger_sync.models import ApiClient, InboundDelivery, InvoiceReport, PaymentConfirmation
from ledger_sync.services.inbound import (
    SIGNATURE_HEADER,
    WebhookPayloadError,
    atlas_webhook_receive,
    webhook_signature_valid,
)
from ledger_sync.services.invoice_reports import invoice_report_accept
from ledger_sync.services.payments import payment_confirmation_accept

logger = logging.getLogger(__name__)


def _error(description: str, example_code: str, example_message: str, field: Any = None):
    return OpenApiResponse(
        response=ErrorSerializer,
        description=description,
        examples=[
            OpenApiExample(
                example_code,
                value={"error": {"code": example_code, "message": example_message, "field": field}},
            )
        ],
    )


E400 = _error("Malformed request", "invalid", "amount: must be a decimal number.", "amount")
E401 = _error("Missing or bad credentials", "authentication_failed", "Invalid API token.")
E403 = _error(
    "Not allowed (permission, or plain HTTP in production)",
    "permission_denied",
    "API client 'bank' does not have the 'invoices' permission.",
)
E404 = _error("Not found", "not_found", "No payment with this externalId.")
E406 = _error("Not acceptable", "not_acceptable", "Could not satisfy the Accept header.")
E409 = _error(
    "The externalId was used with a different request",
    "idempotency_conflict",
    "externalId 'PAY-1' was already used for a different payment.",
    "externalId",
)
E413 = _error("Body too large", "body_too_large", "The request body is larger than 65536 bytes.")
E415 = _error("Not JSON", "unsupported_media_type", 'Unsupported media type "text/plain".')
E429 = _error("Too many requests", "throttled", "Request was throttled.")
COMMON = {406: E406, 413: E413, 415: E415}


class ApiView(APIView):
    """Base of every inbound endpoint: JSON in (exact decimals) and out, HTTPS in production,
    a body size cap checked before anything is parsed, and our error body."""

    parser_classes = [ExactJSONParser]
    renderer_classes = [JSONRenderer]

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        if settings.API_REQUIRE_HTTPS and not request.is_secure():
            raise HttpsRequired()
        _read_body_capped(request._request, limit=settings.API_MAX_BODY_BYTES)
        super().initial(request, *args, **kwargs)

    def get_exception_handler(self) -> Any:
        return api_exception_handler

    # The caller the error queue names when there is no API client (the webhook overrides it).
    refused_caller: str | None = None

    def finalize_response(
        self, request: Request, response: Response, *args: Any, **kwargs: Any
    ) -> Response:
        # Every refusal, raised or returned (a bad signature is returned), reaches the queue.
        refused_request_record(request, response, caller=self.refused_caller)
        return super().finalize_response(request, response, *args, **kwargs)


def _read_body_capped(http_request: Any, *, limit: int) -> bytes:
    """Read and cache the raw body, at most `limit` bytes, so that the stored request is the
    bytes as sent and nothing larger is ever held in memory or stored.

    Content-Length cannot be trusted for the cap: it may be absent (chunked, or an ASGI server
    that hands over the whole body) or lie. A declared length over the cap is refused before
    reading; otherwise at most limit + 1 bytes are read from the stream and one byte too many
    is a 413. The result is cached the way HttpRequest.body caches it, so the parsers and
    `request.body` see exactly these bytes.
    """
    try:
        declared = int(http_request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        raise BodyTooLarge(limit)
    if hasattr(http_request, "_body"):
        body = http_request._body
    else:
        body = http_request.read(limit + 1)
        http_request._body = body
        http_request._stream = io.BytesIO(body)
        # Like HttpRequest.body: the cached bytes are read again from the start.
        http_request._read_started = False
    if len(body) > limit:
        raise BodyTooLarge(limit)
    return body


class ClientApiView(ApiView):
    authentication_classes = [ApiClientTokenAuthentication]
    permission_classes = [HasApiClientPermission]
    throttle_classes = [ApiClientScopedThrottle]
    required_permission: str = ""


def _callback_accept(
    request: Request, *, serializer_class: type[Any], accept: Any, resource: Any
) -> Response:
    """Validate a client's callback and hand it to its service, which stores it idempotently:
    202 when it is new, 200 for a repeat of the same request; Location is its status URL."""
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    row, created = accept(
        request=serializer.to_request(),
        raw_body=request._request.body.decode("utf-8", errors="replace"),
        api_client=request.auth,
    )
    body = resource(row, request=request)
    return Response(
        body,
        status=status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK,
        headers={"Location": body["statusUrl"]},
    )


def _callback_status(
    request: Request, *, model: type[Any], external_id: str, resource: Any, what: str
) -> Response:
    """A stored callback by its externalId, or 404."""
    row = model.objects.filter(external_id=external_id).first()
    if row is None:
        return error_response(
            status_code=404, code="not_found", message=f"No {what} with this externalId."
        )
    return Response(resource(row, request=request))


# --- webhooks ---------------------------------------------------------------------------------


class AtlasWebhookView(ApiView):
    """ATLAS → ledger_sync. Authenticated by the body's HMAC signature, not by a client token;
    not throttled here (a bad signature costs one HMAC and no database work)."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    throttle_classes: list[Any] = []
    refused_caller = "the webhook sender"

    @extend_schema(
        operation_id="atlas_webhook",
        summary="Receive an ATLAS webhook",
        description=(
            "Verifies `X-Atlas-Signature: sha256=<hex HMAC-SHA256 of the raw body with "
            "ATLAS_WEBHOOK_SECRET>`, stores the delivery and answers 200 at once; a task "
            "re-fetches the order from ATLAS and runs the journal pipeline. A duplicate "
            "delivery is acknowledged (`duplicate`) and not processed again; an event type "
            "ledger_sync does not handle is stored and acknowledged (`ignored`)."
        ),
        request=WebhookPayloadSerializer,
        parameters=[
            OpenApiParameter(
                SIGNATURE_HEADER,
                str,
                OpenApiParameter.HEADER,
                required=True,
                description="sha256=<hex HMAC-SHA256 of the raw body>",
            )
        ],
        responses={
            200: WebhookAckSerializer,
            400: _error("Malformed JSON or no entityId", "invalid_payload", "entityId is missing."),
            401: _error("Missing or bad signature", "invalid_signature", "Bad signature."),
            403: E403,
            **COMMON,
        },
        examples=[
            OpenApiExample(
                "Order ready for accounting",
                request_only=True,
                value={
                    "event": "order.status_changed",
                    "entityType": "Order",
                    "entityId": 210,
                    "newStatus": "Approved order by ETRM",
                    "timestamp": "2026-04-01T08:30:00Z",
                },
            )
        ],
        tags=["webhooks"],
    )
    def post(self, request: Request) -> Response:
        body: bytes = request._request.body
        signature = request.headers.get(SIGNATURE_HEADER)
        if not webhook_signature_valid(body=body, header=signature):
            logger.warning(
                "webhook.signature_rejected",
                extra={
                    "remote_addr": request.META.get("REMOTE_ADDR"),
                    "reason": "missing" if not signature else "mismatch",
                    "bytes": len(body),
                },
            )
            return error_response(
                status_code=status.HTTP_401_UNAUTHORIZED,
                code="invalid_signature",
                message=f"Missing or invalid {SIGNATURE_HEADER} signature.",
                headers={"WWW-Authenticate": f'Signature header="{SIGNATURE_HEADER}"'},
            )
        try:
            receipt = atlas_webhook_receive(
                body=body, headers=request.headers, remote_addr=request.META.get("REMOTE_ADDR")
            )
        except WebhookPayloadError as exc:
            return error_response(
                status_code=status.HTTP_400_BAD_REQUEST,
                code="invalid_payload",
                message=exc.message,
                field=exc.details.get("field"),
            )
        delivery = receipt.delivery
        if receipt.duplicate:
            outcome = "duplicate"
        elif delivery.state == InboundDelivery.State.IGNORED:
            outcome = "ignored"
        else:
            outcome = "accepted"
        return Response({"status": outcome, "deliveryId": delivery.pk})


# --- payments ---------------------------------------------------------------------------------


PAYMENT_EXAMPLE = {
    "externalId": "PAY-2026-0042",
    "invoiceExternalId": "INV-2026-0042",
    "amount": 85500.00,
    "currency": "EUR",
    "paymentDate": "2026-04-14",
}


class PaymentsView(ClientApiView):
    required_permission = ApiClient.Permission.PAYMENTS
    throttle_scope = "payments"

    @extend_schema(
        operation_id="payment_confirm",
        summary="Confirm a payment",
        description=(
            "A payment confirmed by the ERP or the bank. Idempotent on `externalId`: the same "
            "request again answers 200 with the same resource; the same externalId with other "
            'content answers 409. "The same" means the same payment, not the same bytes: '
            "key order, white space, unknown extra fields, an amount sent as a number or a "
            'string (400, 400.0 and "400.00" are equal), the currency\'s letter case and a '
            "midnight datetime for the date make no difference; naming the invoice by "
            "`invoiceId` instead of `invoiceExternalId` (or the reverse) does. "
            "Accepted payments answer 202 and are written to ATLAS "
            "(Payment/Post) by a task; when the invoice's payments reach its amount, ATLAS's "
            "invoice is set isPaid=true once. Follow `statusUrl` to see when ATLAS confirmed."
        ),
        request=PaymentRequestSerializer,
        responses={
            200: OpenApiResponse(PaymentResourceSerializer, "The same request was sent before"),
            202: OpenApiResponse(PaymentResourceSerializer, "Accepted and stored"),
            400: E400,
            401: E401,
            403: E403,
            409: E409,
            422: _error(
                "Refused: unknown invoice, wrong currency, amount, future date, overpayment",
                "overpayment",
                "amount 100.00 EUR would take invoice INV-1 past its amount 85500.00.",
                "amount",
            ),
            429: E429,
            **COMMON,
        },
        examples=[OpenApiExample("Full payment", value=PAYMENT_EXAMPLE, request_only=True)],
        tags=["callbacks"],
    )
    def post(self, request: Request) -> Response:
        return _callback_accept(
            request,
            serializer_class=PaymentRequestSerializer,
            accept=payment_confirmation_accept,
            resource=payment_resource,
        )


class PaymentDetailView(ClientApiView):
    required_permission = ApiClient.Permission.PAYMENTS
    throttle_scope = "status"

    @extend_schema(
        operation_id="payment_status",
        summary="A payment's status",
        responses={
            200: PaymentResourceSerializer,
            401: E401,
            403: E403,
            404: E404,
            429: E429,
            **COMMON,
        },
        tags=["callbacks"],
    )
    def get(self, request: Request, external_id: str) -> Response:
        return _callback_status(
            request,
            model=PaymentConfirmation,
            external_id=external_id,
            resource=payment_resource,
            what="payment",
        )


# --- invoices ---------------------------------------------------------------------------------


INVOICE_EXAMPLE = {
    "externalId": "INV-2026-0042",
    "order": 210,
    "invoiceNumber": "SB-2026-042",
    "amount": 85500.00,
    "currency": "EUR",
    "invoiceDate": "2026-04-01",
    "dueDate": "2026-04-15",
}


class InvoicesView(ClientApiView):
    required_permission = ApiClient.Permission.INVOICES
    throttle_scope = "invoices"

    @extend_schema(
        operation_id="invoice_report",
        summary="Report an invoice the ERP issued for an order",
        description=(
            "Checked against the ATLAS order and its posted journal; answered 202 and created "
            "in ATLAS by a task (looked up by externalId first, then Invoice/Post). "
            "Idempotent on externalId like payments."
        ),
        request=InvoiceReportRequestSerializer,
        responses={
            200: OpenApiResponse(InvoiceResourceSerializer, "The same request was sent before"),
            202: OpenApiResponse(InvoiceResourceSerializer, "Accepted and stored"),
            400: E400,
            401: E401,
            403: E403,
            409: E409,
            422: _error(
                "Refused: unknown or unposted order, amount or currency disagreeing",
                "order_not_posted",
                "Order 210 has no posted journal.",
                "order",
            ),
            429: E429,
            **COMMON,
        },
        examples=[OpenApiExample("ERP invoice", value=INVOICE_EXAMPLE, request_only=True)],
        tags=["callbacks"],
    )
    def post(self, request: Request) -> Response:
        return _callback_accept(
            request,
            serializer_class=InvoiceReportRequestSerializer,
            accept=invoice_report_accept,
            resource=invoice_resource,
        )


class InvoiceDetailView(ClientApiView):
    required_permission = ApiClient.Permission.INVOICES
    throttle_scope = "status"

    @extend_schema(
        operation_id="invoice_status",
        summary="An invoice report's status",
        responses={
            200: InvoiceResourceSerializer,
            401: E401,
            403: E403,
            404: E404,
            429: E429,
            **COMMON,
        },
        tags=["callbacks"],
    )
    def get(self, request: Request, external_id: str) -> Response:
        return _callback_status(
            request,
            model=InvoiceReport,
            external_id=external_id,
            resource=invoice_resource,
            what="invoice",
        )
