"""Request validation and response shapes of the inbound API (camelCase on the wire, like
ATLAS). Serializers only check shapes and types; the business rules (unknown invoice, currency,
overpayment ...) are the services' and answer 422."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from django.urls import reverse
from django.utils.dateparse import parse_date, parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ledger_sync.models import InvoiceReport, LedgerSettlementState, PaymentConfirmation
from ledger_sync.services.invoice_reports import InvoiceReportRequest
from ledger_sync.services.payments import PaymentRequest

_DECIMAL_TEXT = re.compile(r"^-?\d{1,20}(\.\d{1,20})?$")
# Printable, no spaces at the ends: an id the caller can send again byte for byte.
_EXTERNAL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/#\-]{0,127}$")
CALLBACK_STATUSES = ["accepted", "written_to_atlas", "failed", "rejected"]
WEBHOOK_ACK_STATUSES = ["accepted", "duplicate", "ignored"]
MONEY_SCHEMA = {
    "type": "string",
    "pattern": r"^\d{1,16}(\.\d{1,2})?$",
    "description": "A decimal amount with at most 2 decimal places. Sent as a JSON number or "
    "a string (both are read exactly, never through floating point); answered as a string.",
    "example": "1234.50",
}


@extend_schema_field(MONEY_SCHEMA)
class MoneyField(serializers.Field):
    """An exact Decimal from a JSON number (parsed as Decimal) or a decimal string. How many
    places and the sign are business rules (422), checked by the service."""

    default_error_messages = {
        "invalid": "must be a decimal number such as 1234.50 (a JSON number or a string).",
    }

    def to_internal_value(self, data: Any) -> Decimal:
        if isinstance(data, bool | float):
            # A float here means a parser that lost precision: refuse rather than guess.
            self.fail("invalid")
        if isinstance(data, int):
            return Decimal(data)
        if isinstance(data, Decimal):
            if not data.is_finite():
                self.fail("invalid")
            return data
        if isinstance(data, str) and _DECIMAL_TEXT.match(data.strip()):
            try:
                return Decimal(data.strip())
            except InvalidOperation:
                self.fail("invalid")
        self.fail("invalid")
        raise AssertionError("unreachable")

    def to_representation(self, value: Decimal) -> str:
        return f"{value:.2f}"


@extend_schema_field(OpenApiTypes.DATE)
class CalendarDateField(serializers.Field):
    """An ISO date (2026-04-14); an ATLAS-style midnight datetime (2026-04-14T00:00:00) is
    accepted too and read as its date."""

    default_error_messages = {"invalid": "must be a date such as 2026-04-14."}

    def to_internal_value(self, data: Any) -> date:
        if isinstance(data, str):
            text = data.strip()
            try:
                parsed = parse_date(text)
                if parsed is not None:
                    return parsed
                moment = parse_datetime(text)
            except ValueError:
                self.fail("invalid")
            if moment is not None:
                return moment.date()
        self.fail("invalid")
        raise AssertionError("unreachable")

    def to_representation(self, value: date) -> str:
        return value.isoformat()


class ExternalIdField(serializers.RegexField):
    def __init__(self, **kwargs: Any):
        kwargs.setdefault("max_length", 128)
        kwargs.setdefault(
            "error_messages",
            {"invalid": "must be 1-128 characters: letters, digits and . _ : / # -"},
        )
        super().__init__(_EXTERNAL_ID, **kwargs)


class CurrencyField(serializers.RegexField):
    def __init__(self, **kwargs: Any):
        kwargs.setdefault("error_messages", {"invalid": "must be an ISO 4217 code such as EUR."})
        kwargs.setdefault("help_text", "ISO 4217 currency code, e.g. EUR.")
        super().__init__(r"^[A-Za-z]{3}$", min_length=3, max_length=3, **kwargs)


# --- errors ---------------------------------------------------------------------------------------


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable machine-readable code, e.g. unknown_invoice.")
    message = serializers.CharField(help_text="What is wrong and how to fix it.")
    field = serializers.CharField(allow_null=True, help_text="The request field at fault, or null.")


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


# --- webhooks -------------------------------------------------------------------------------------


class WebhookPayloadSerializer(serializers.Serializer):
    """For the schema only: the body is verified and stored raw, then read by the service."""

    event = serializers.CharField(max_length=100, help_text="e.g. order.status_changed")
    entityType = serializers.CharField(max_length=64, required=False, help_text="e.g. Order")
    entityId = serializers.IntegerField(min_value=1, help_text="The ATLAS id of the record.")
    newStatus = serializers.CharField(max_length=255, required=False)
    timestamp = serializers.CharField(max_length=64, required=False)


class WebhookAckSerializer(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=WEBHOOK_ACK_STATUSES,
        help_text="accepted: stored and queued; duplicate: already received, not processed "
        "again; ignored: stored, event type not handled.",
    )
    deliveryId = serializers.IntegerField()


# --- payments -------------------------------------------------------------------------------------


class PaymentRequestSerializer(serializers.Serializer):
    externalId = ExternalIdField(help_text="Your id of this payment: the idempotency key.")
    invoiceExternalId = ExternalIdField(
        required=False, help_text="The invoice's externalId. Send this or invoiceId."
    )
    invoiceId = serializers.IntegerField(
        required=False, min_value=1, max_value=2**53, help_text="The invoice's ATLAS id."
    )
    amount = MoneyField()
    currency = CurrencyField()
    paymentDate = CalendarDateField()

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("invoiceExternalId" in attrs) == ("invoiceId" in attrs):
            raise serializers.ValidationError(
                {"invoiceExternalId": "send exactly one of invoiceExternalId and invoiceId."}
            )
        return attrs

    def to_request(self) -> PaymentRequest:
        data = self.validated_data
        return PaymentRequest(
            external_id=data["externalId"],
            invoice_external_id=data.get("invoiceExternalId"),
            invoice_atlas_id=data.get("invoiceId"),
            amount=data["amount"],
            currency=data["currency"].upper(),
            payment_date=data["paymentDate"],
        )


class InvoiceRefSerializer(serializers.Serializer):
    reference = serializers.CharField()
    externalId = serializers.CharField(allow_null=True)
    atlasId = serializers.IntegerField(allow_null=True)


class PaymentResourceSerializer(serializers.Serializer):
    externalId = serializers.CharField()
    invoice = InvoiceRefSerializer()
    amount = MoneyField()
    currency = serializers.CharField()
    paymentDate = CalendarDateField()
    status = serializers.ChoiceField(
        choices=CALLBACK_STATUSES,
        help_text="accepted: stored, not yet in ATLAS; written_to_atlas: ATLAS confirmed it; "
        "failed: ATLAS could not be reached, retried automatically; rejected: ATLAS refused "
        "it, a person will look.",
    )
    atlasPaymentId = serializers.IntegerField(allow_null=True)
    attempts = serializers.IntegerField()
    lastError = serializers.CharField(allow_blank=True)
    ledgerStatus = serializers.ChoiceField(
        choices=LedgerSettlementState.choices,
        help_text="The settlement transaction in the AR Ledger, apart from ATLAS: pending: to "
        "post (or waiting for the order's journal); posted; failed: retried automatically; "
        "blocked: a person must fix something; not_ours: no journal of ours to settle.",
    )
    receivedAt = serializers.DateTimeField()
    confirmedAt = serializers.DateTimeField(allow_null=True)
    statusUrl = serializers.CharField()


def payment_resource(confirmation: PaymentConfirmation, *, request: Any) -> dict[str, Any]:
    url = reverse("api-payment-detail", kwargs={"external_id": confirmation.external_id})
    return PaymentResourceSerializer(
        {
            "externalId": confirmation.external_id,
            "invoice": {
                "reference": confirmation.invoice_reference,
                "externalId": confirmation.invoice_external_id or None,
                "atlasId": confirmation.invoice_atlas_id,
            },
            "amount": confirmation.amount,
            "currency": confirmation.currency,
            "paymentDate": confirmation.payment_date,
            "status": confirmation.state,
            "atlasPaymentId": confirmation.atlas_payment_id,
            "attempts": confirmation.attempts,
            "lastError": confirmation.last_error,
            "ledgerStatus": confirmation.ledger_state,
            "receivedAt": confirmation.received_at,
            "confirmedAt": confirmation.confirmed_at,
            "statusUrl": request.build_absolute_uri(url),
        }
    ).data


# --- invoices -------------------------------------------------------------------------------------


class InvoiceReportRequestSerializer(serializers.Serializer):
    externalId = ExternalIdField(help_text="The ERP's id of the invoice: the idempotency key.")
    order = serializers.IntegerField(min_value=1, max_value=2**53, help_text="ATLAS order id.")
    invoiceNumber = serializers.RegexField(
        r"^\S(.*\S)?$", max_length=64, help_text="The invoice number the ERP issued."
    )
    amount = MoneyField()
    currency = CurrencyField()
    invoiceDate = CalendarDateField()
    dueDate = CalendarDateField()

    def to_request(self) -> InvoiceReportRequest:
        data = self.validated_data
        return InvoiceReportRequest(
            external_id=data["externalId"],
            order_atlas_id=data["order"],
            invoice_number=data["invoiceNumber"],
            amount=data["amount"],
            currency=data["currency"].upper(),
            invoice_date=data["invoiceDate"],
            due_date=data["dueDate"],
        )


class InvoiceResourceSerializer(serializers.Serializer):
    externalId = serializers.CharField()
    order = serializers.IntegerField()
    invoiceNumber = serializers.CharField()
    amount = MoneyField()
    currency = serializers.CharField()
    invoiceDate = CalendarDateField()
    dueDate = CalendarDateField()
    status = serializers.ChoiceField(choices=["accepted", "written_to_atlas", "failed", "rejected"])
    atlasInvoiceId = serializers.IntegerField(allow_null=True)
    attempts = serializers.IntegerField()
    lastError = serializers.CharField(allow_blank=True)
    receivedAt = serializers.DateTimeField()
    confirmedAt = serializers.DateTimeField(allow_null=True)
    statusUrl = serializers.CharField()


def invoice_resource(report: InvoiceReport, *, request: Any) -> dict[str, Any]:
    url = reverse("api-invoice-detail", kwargs={"external_id": report.external_id})
    return InvoiceResourceSerializer(
        {
            "externalId": report.external_id,
            "order": report.order_atlas_id,
            "invoiceNumber": report.invoice_number,
            "amount": report.amount,
            "currency": report.currency,
            "invoiceDate": report.invoice_date,
            "dueDate": report.due_date,
            "status": report.state,
            "atlasInvoiceId": report.atlas_invoice_id,
            "attempts": report.attempts,
            "lastError": report.last_error,
            "receivedAt": report.received_at,
            "confirmedAt": report.confirmed_at,
            "statusUrl": request.build_absolute_uri(url),
        }
    ).data


__all__ = [
    "ErrorSerializer",
    "InvoiceReportRequestSerializer",
    "InvoiceResourceSerializer",
    "PaymentRequestSerializer",
    "PaymentResourceSerializer",
    "WebhookAckSerializer",
    "WebhookPayloadSerializer",
    "invoice_resource",
    "payment_resource",
]
