"""Back office for what arrives from outside: webhook deliveries, API clients, payment
confirmations, invoice settlements and invoice reports.

Deliveries and callbacks are read-only (they are the record of what was received); actions
queue work ("replay", "retry") and never call ATLAS inside the request. An API client's token
is shown once, on the page that follows its creation (or a rotation), and only its hash is kept.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template import RequestContext, Template
from django.utils.html import format_html
from django.utils.safestring import SafeString

from ledger_sync.admin.display import counted, pretty_json
from ledger_sync.admin.readonly import ReadOnlyAdmin, SuperuserOnlyFields
from ledger_sync.models import (
    ApiClient,
    InboundDelivery,
    InvoiceReport,
    InvoiceSettlement,
    LedgerSettlementState,
    PaymentConfirmation,
)
from ledger_sync.models.inbound import CallbackState
from ledger_sync.services.admin_links import journal_admin_url
from ledger_sync.services.api_clients import api_client_create, api_client_rotate_token
from ledger_sync.services.inbound import inbound_delivery_replay
from ledger_sync.services.invoice_reports import invoice_report_retry
from ledger_sync.services.payments import invoice_settlement_retry, payment_confirmation_retry
from ledger_sync.services.settlements import payment_settlement_retry

REPLAY_MAX = 500
_STATE_COLOURS = {
    "received": "#1565c0",
    "processing": "#1565c0",
    "accepted": "#1565c0",
    "pending": "#1565c0",
    "processed": "#2e7d32",
    "written_to_atlas": "#2e7d32",
    "done": "#2e7d32",
    "ignored": "#757575",
    "failed": "#ef6c00",
    "rejected": "#c62828",
    "posted": "#2e7d32",
    "blocked": "#c62828",
    "not_ours": "#757575",
}


def _badge(state: str, label: str) -> SafeString:
    return format_html(
        '<span style="color:#fff;background:{};padding:1px 6px;border-radius:3px">{}</span>',
        _STATE_COLOURS.get(state, "#555"),
        label,
    )


def _pre(text: str) -> SafeString:
    """A payload or traceback, folded (shown to superusers only: SuperuserOnlyFields)."""
    if not text:
        return format_html("{}", "—")
    return format_html(
        '<details><summary>Show</summary><pre style="white-space:pre-wrap;max-width:100em">{}'
        "</pre></details>",
        pretty_json(text),
    )


@admin.register(InboundDelivery)
class InboundDeliveryAdmin(SuperuserOnlyFields, ReadOnlyAdmin):
    superuser_only_fields = ("headers", "raw_body_pretty", "traceback_pretty")
    list_display = (
        "id",
        "received_at",
        "source",
        "event_type",
        "entity_type",
        "entity_id",
        "new_status",
        "state_badge",
        "attempts",
        "short_error",
    )
    list_filter = ("state", "source", "event_type")
    search_fields = ("=entity_id", "dedup_key", "new_status")
    date_hierarchy = "received_at"
    actions = ["replay_selected"]
    fields = (
        "source",
        "event_type",
        "entity_type",
        "entity_id",
        "new_status",
        "event_timestamp",
        "dedup_key",
        "state",
        "attempts",
        "next_attempt_at",
        "replays",
        "received_at",
        "processed_at",
        "remote_addr",
        "headers",
        "raw_body_pretty",
        "result",
        "last_error",
        "traceback_pretty",
    )
    readonly_fields = fields

    @admin.display(description="State", ordering="state")
    def state_badge(self, obj: InboundDelivery) -> SafeString:
        return _badge(obj.state, obj.get_state_display())

    @admin.display(description="Error")
    def short_error(self, obj: InboundDelivery) -> str:
        return (obj.last_error or "")[:120]

    @admin.display(description="Raw body")
    def raw_body_pretty(self, obj: InboundDelivery) -> SafeString:
        return _pre(obj.raw_body)

    @admin.display(description="Traceback")
    def traceback_pretty(self, obj: InboundDelivery) -> SafeString:
        return _pre(obj.traceback)

    @admin.action(description="Replay selected (queued; the pipeline never books twice)")
    def replay_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        deliveries = list(
            queryset.exclude(state=InboundDelivery.State.PROCESSING)[: REPLAY_MAX + 1]
        )
        if len(deliveries) > REPLAY_MAX:
            self.message_user(
                request, f"At most {REPLAY_MAX} deliveries can be replayed at once.", messages.ERROR
            )
            return
        for delivery in deliveries:
            inbound_delivery_replay(delivery=delivery)
        self.message_user(
            request,
            f"Queued {counted(len(deliveries), 'delivery', 'deliveries')} for processing; their "
            "state updates here.",
            messages.SUCCESS,
        )


class ApiClientForm(forms.ModelForm):
    class Meta:
        model = ApiClient
        fields = ("name", "can_confirm_payments", "can_report_invoices", "is_active", "notes")


_TOKEN_PAGE = Template(
    """{% extends "admin/base_site.html" %}
{% block content %}
<h1>Token of API client “{{ client.name }}”</h1>
<p><strong>Copy this token now: it is shown only once.</strong> ledger_sync keeps only its hash;
a lost token is replaced with the “Rotate token” action.</p>
<p><code style="font-size:1.2em;user-select:all">{{ token }}</code></p>
<p>The client sends it as <code>Authorization: Bearer &lt;token&gt;</code>.</p>
<p><a href="{{ back }}">Back to API clients</a></p>
{% endblock %}"""
)


def _token_page(request: HttpRequest, *, client: ApiClient, token: str) -> HttpResponse:
    context = RequestContext(
        request,
        {"client": client, "token": token, "back": "../", "title": "API client token"},
    )
    response = HttpResponse(_TOKEN_PAGE.render(context))
    # Never cached by the browser or a proxy.
    response["Cache-Control"] = "no-store"
    return response


@admin.register(ApiClient)
class ApiClientAdmin(admin.ModelAdmin):
    form = ApiClientForm
    list_display = (
        "name",
        "token_prefix",
        "can_confirm_payments",
        "can_report_invoices",
        "is_active",
        "last_used_at",
        "created_at",
    )
    list_filter = ("is_active", "can_confirm_payments", "can_report_invoices")
    search_fields = ("name", "token_prefix")
    readonly_fields = ("token_prefix", "created_at", "last_used_at")
    actions = ["rotate_token"]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        editable = ("name", "can_confirm_payments", "can_report_invoices", "is_active", "notes")
        return editable if obj is None else (*editable, *self.readonly_fields)

    def save_model(self, request: HttpRequest, obj: ApiClient, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        permissions = [
            permission
            for permission, flag in (
                (ApiClient.Permission.PAYMENTS, obj.can_confirm_payments),
                (ApiClient.Permission.INVOICES, obj.can_report_invoices),
            )
            if flag
        ]
        issued = api_client_create(name=obj.name, permissions=permissions, notes=obj.notes)
        if not obj.is_active:
            ApiClient.objects.filter(pk=issued.client.pk).update(is_active=False)
        obj.pk = issued.client.pk
        obj.token_prefix = issued.client.token_prefix
        obj.token_hash = issued.client.token_hash
        obj.created_at = issued.client.created_at
        request._ledger_sync_issued_token = issued.token  # type: ignore[attr-defined]

    def response_add(self, request: HttpRequest, obj: ApiClient, post_url_continue=None):
        token = getattr(request, "_ledger_sync_issued_token", None)
        if token:
            return _token_page(request, client=obj, token=token)
        return super().response_add(request, obj, post_url_continue)

    @admin.action(description="Rotate token (the old one stops working; the new one is shown once)")
    def rotate_token(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        clients = list(queryset[:2])
        if len(clients) != 1:
            self.message_user(request, "Rotate one client at a time.", messages.ERROR)
            return None
        issued = api_client_rotate_token(client=clients[0])
        return _token_page(request, client=issued.client, token=issued.token)


class _CallbackAdmin(SuperuserOnlyFields, ReadOnlyAdmin):
    superuser_only_fields = ("request_pretty", "atlas_request_pretty", "atlas_response_pretty")
    list_filter = ("state",)
    search_fields = ("external_id",)
    date_hierarchy = "received_at"

    @admin.display(description="State", ordering="state")
    def state_badge(self, obj: Any) -> SafeString:
        return _badge(obj.state, obj.get_state_display())

    @admin.display(description="Why not in ATLAS yet")
    def short_error(self, obj: Any) -> str:
        return (obj.last_error or "")[:120]

    @admin.display(description="Request")
    def request_pretty(self, obj: Any) -> SafeString:
        return _pre(obj.request_json)

    @admin.display(description="Sent to ATLAS")
    def atlas_request_pretty(self, obj: Any) -> SafeString:
        return _pre(obj.atlas_request_json)

    @admin.display(description="ATLAS answered")
    def atlas_response_pretty(self, obj: Any) -> SafeString:
        return _pre(obj.atlas_response_json)

    def _queue_retries(
        self, request: HttpRequest, queryset: QuerySet, *, retry: Callable[[Any], Any], noun: str
    ) -> None:
        """Queue each selected failed or rejected row again; the others are left as they are."""
        rows = list(queryset.filter(state__in=[CallbackState.FAILED, CallbackState.REJECTED]))
        for row in rows:
            retry(row)
        self.message_user(
            request, f"Queued {counted(len(rows), noun, noun + 's')} for ATLAS.", messages.SUCCESS
        )


@admin.register(PaymentConfirmation)
class PaymentConfirmationAdmin(_CallbackAdmin):
    list_display = (
        "external_id",
        "api_client",
        "invoice_reference",
        "amount",
        "currency",
        "payment_date",
        "state_badge",
        "atlas_payment_id",
        "attempts",
        "next_attempt_at",
        "short_error",
        "ledger_state_badge",
        "received_at",
        "confirmed_at",
    )
    list_filter = ("state", "ledger_state")
    list_select_related = ("api_client", "settlement_journal")
    search_fields = ("external_id", "invoice_external_id", "=invoice_atlas_id", "=order_atlas_id")
    actions = ["retry_selected", "retry_settlement_selected"]
    fields = (
        "external_id",
        "api_client",
        "invoice_reference",
        "invoice_external_id",
        "invoice_atlas_id",
        "order_atlas_id",
        "amount",
        "currency",
        "payment_date",
        "state",
        "attempts",
        "next_attempt_at",
        "last_error",
        "atlas_payment_id",
        "received_at",
        "confirmed_at",
        "ledger_state",
        "ledger_attempts",
        "ledger_next_attempt_at",
        "ledger_error",
        "settlement_journal_link",
        "request_pretty",
        "atlas_request_pretty",
        "atlas_response_pretty",
    )
    readonly_fields = fields

    @admin.display(description="AR Ledger settlement", ordering="ledger_state")
    def ledger_state_badge(self, obj: PaymentConfirmation) -> SafeString:
        return _badge(obj.ledger_state, obj.get_ledger_state_display())

    @admin.display(description="Settlement journal")
    def settlement_journal_link(self, obj: PaymentConfirmation) -> SafeString:
        journal = getattr(obj, "settlement_journal", None)
        if journal is None:
            return format_html("{}", "—")
        return format_html(
            '<a href="{}">{}</a> ({})',
            journal_admin_url(journal),
            journal.source_transaction_reference,
            journal.get_status_display(),
        )

    @admin.action(description="Retry writing to ATLAS (queued)")
    def retry_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._queue_retries(
            request,
            queryset,
            retry=lambda row: payment_confirmation_retry(confirmation=row),
            noun="payment",
        )

    @admin.action(description="Retry posting the settlement to the AR Ledger (queued)")
    def retry_settlement_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        rows = list(
            queryset.filter(
                ledger_state__in=[LedgerSettlementState.BLOCKED, LedgerSettlementState.FAILED]
            )
        )
        for row in rows:
            payment_settlement_retry(confirmation=row)
        self.message_user(
            request,
            f"Queued {counted(len(rows), 'settlement', 'settlements')} for the AR Ledger.",
            messages.SUCCESS,
        )


@admin.register(InvoiceReport)
class InvoiceReportAdmin(_CallbackAdmin):
    list_display = (
        "external_id",
        "order_atlas_id",
        "invoice_number",
        "amount",
        "currency",
        "state_badge",
        "atlas_invoice_id",
        "attempts",
        "next_attempt_at",
        "short_error",
        "received_at",
        "confirmed_at",
    )
    search_fields = ("external_id", "invoice_number", "=order_atlas_id")
    actions = ["retry_selected"]
    fields = (
        "external_id",
        "api_client",
        "order_atlas_id",
        "invoice_number",
        "amount",
        "currency",
        "invoice_date",
        "due_date",
        "state",
        "attempts",
        "next_attempt_at",
        "last_error",
        "atlas_invoice_id",
        "received_at",
        "confirmed_at",
        "request_pretty",
        "atlas_request_pretty",
        "atlas_response_pretty",
    )
    readonly_fields = fields

    @admin.action(description="Retry creating in ATLAS (queued)")
    def retry_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._queue_retries(
            request,
            queryset,
            retry=lambda row: invoice_report_retry(report=row),
            noun="invoice",
        )


@admin.register(InvoiceSettlement)
class InvoiceSettlementAdmin(ReadOnlyAdmin):
    list_display = (
        "invoice_atlas_id",
        "order_atlas_id",
        "paid_total",
        "invoice_amount",
        "state_badge",
        "attempts",
        "next_attempt_at",
        "short_error",
        "created_at",
        "done_at",
    )
    list_filter = ("state",)
    search_fields = ("=invoice_atlas_id", "=order_atlas_id")
    actions = ["retry_selected"]
    readonly_fields = (
        "invoice_atlas_id",
        "order_atlas_id",
        "paid_total",
        "invoice_amount",
        "state",
        "attempts",
        "next_attempt_at",
        "last_error",
        "request_json",
        "response_json",
        "created_at",
        "done_at",
    )
    fields = readonly_fields

    @admin.display(description="State", ordering="state")
    def state_badge(self, obj: InvoiceSettlement) -> SafeString:
        return _badge(obj.state, obj.get_state_display())

    @admin.display(description="Why not done yet")
    def short_error(self, obj: InvoiceSettlement) -> str:
        return (obj.last_error or "")[:120]

    @admin.action(description="Retry setting isPaid in ATLAS (queued; never sent twice)")
    def retry_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        rows = list(queryset.filter(state=InvoiceSettlement.State.FAILED))
        for row in rows:
            invoice_settlement_retry(settlement=row)
        self.message_user(
            request,
            f"Queued {counted(len(rows), 'settlement', 'settlements')} for ATLAS.",
            messages.SUCCESS,
        )
