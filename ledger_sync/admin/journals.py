"""Journal review, order pipeline and write-back admin.

Every action only validates and ENQUEUES a task (on commit); nothing remote runs in the
request. Approving, rejecting, reversing, retrying and rebuilding need the permission
`ledger_sync.approve_journal` (accountants and finance leads, services/roles.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db import models, transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django_q.tasks import async_task

from integration import wire
from ledger_sync.admin.readonly import ReadOnlyPermissions
from ledger_sync.models import (
    BlockedReason,
    Journal,
    JournalLine,
    OrderItem,
    OrderState,
    OrderSync,
    OrderTransition,
    SyncState,
    WriteBackStep,
)
from ledger_sync.services.posting import APPROVE_PERMISSION
from ledger_sync.services.writeback import write_back_retry

TASKS = "ledger_sync.tasks."


def _enqueue(func: str, *args: Any, task_name: str) -> None:
    """Queue a task once the admin's transaction has committed (never run it here)."""
    transaction.on_commit(lambda: async_task(TASKS + func, *args, task_name=task_name))


def _pretty_json(text: str) -> str:
    if not text:
        return ""
    try:
        return wire.dumps(wire.loads(text), indent=2)
    except ValueError:
        return text


def _order_link(order_sync: OrderSync) -> SafeString:
    order = order_sync.order
    url = reverse("admin:ledger_sync_ordersync_change", args=[order_sync.pk])
    label = f"{order.atlas_id}" + (
        f" {order.document_reference}" if order.document_reference else ""
    )
    return format_html('<a href="{}">{}</a>', url, label)


class _ApproverMixin:
    def has_approve_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(APPROVE_PERMISSION)


class ReasonForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
        help_text="Kept with the journal and shown on the order.",
    )


def _reason_step(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    queryset: QuerySet,
    *,
    action: str,
    title: str,
) -> tuple[str | None, HttpResponse | None]:
    """The intermediate page that asks why; returns (reason, None) once it was given."""
    if "apply" in request.POST:
        form = ReasonForm(request.POST)
        if form.is_valid():
            return form.cleaned_data["reason"].strip(), None
    else:
        form = ReasonForm()
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": title,
        "form": form,
        "objects": list(queryset),
        "action": action,
        "opts": modeladmin.model._meta,
        "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
    }
    return None, TemplateResponse(request, "admin/ledger_sync/journal/reason.html", context)


# --- journals -------------------------------------------------------------------------------------


class _OrderSyncChoiceFilter(admin.SimpleListFilter):
    """Journals by one choice field of their order's OrderSync."""

    order_sync_field: str
    # Not `choices`: SimpleListFilter.choices() renders the options.
    choice_type: type[models.TextChoices]

    def lookups(self, request: HttpRequest, model_admin: Any) -> Sequence[tuple[str, str]]:
        return self.choice_type.choices

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value():
            return queryset.filter(**{f"order_sync__{self.order_sync_field}": self.value()})
        return queryset


class BlockedReasonFilter(_OrderSyncChoiceFilter):
    title = "blocked reason"
    parameter_name = "blocked_reason"
    order_sync_field = "blocked_reason"
    choice_type = BlockedReason


class OrderStateFilter(_OrderSyncChoiceFilter):
    title = "order state"
    parameter_name = "order_state"
    order_sync_field = "state"
    choice_type = OrderState


@admin.register(Journal)
class JournalAdmin(_ApproverMixin, ReadOnlyPermissions, admin.ModelAdmin):
    # Read-only: posted journals are never edited; corrections are reversals.
    list_display = (
        "source_transaction_reference",
        "order",
        "counterparty",
        "amount",
        "currency",
        "status",
        "order_state",
        "blocked_reason",
        "workflow",
        "landed_period",
    )
    list_filter = (OrderStateFilter, BlockedReasonFilter, "status", "workflow", "kind")
    list_select_related = ("order_sync__order__counterparty",)
    search_fields = (
        "source_transaction_reference",
        "=order_sync__order__atlas_id",
        "order_sync__order__document_reference",
        "order_sync__order__counterparty__name",
    )
    ordering = ("-created_at", "-id")
    list_per_page = 100
    show_full_result_count = False
    change_form_template = "admin/ledger_sync/journal/change_form.html"
    fields = (
        "source_transaction_reference",
        "kind",
        "status",
        "workflow",
        "revision",
        "currency",
        "occurred_on",
        "event_date",
        "ledger_transaction_id",
        "landed_period",
        "posted_at",
        "rejected_reason",
        "reversal_of",
    )
    readonly_fields = fields
    actions = (
        "approve_selected",
        "reject_selected",
        "reverse_selected",
        "retry_selected",
        "rebuild_selected",
    )

    @admin.display(description="Order", ordering="order_sync__order__atlas_id")
    def order(self, obj: Journal) -> SafeString:
        return _order_link(obj.order_sync)

    @admin.display(description="Counterparty", ordering="order_sync__order__counterparty__name")
    def counterparty(self, obj: Journal) -> str:
        counterparty = obj.order_sync.order.counterparty
        return counterparty.name if counterparty else "—"

    @admin.display(description="Amount", ordering="total_debit")
    def amount(self, obj: Journal) -> Decimal:
        return obj.total_debit

    @admin.display(description="Order state", ordering="order_sync__state")
    def order_state(self, obj: Journal) -> str:
        return obj.order_sync.get_state_display()

    @admin.display(description="Blocked reason")
    def blocked_reason(self, obj: Journal) -> str:
        return obj.order_sync.get_blocked_reason_display() if obj.order_sync.blocked_reason else ""

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        journal = (
            Journal.objects.select_related("order_sync__order__counterparty", "reversal_of")
            .filter(pk=object_id)
            .first()
        )
        if journal is not None:
            extra_context = {**(extra_context or {}), **journal_detail_context(journal)}
        return super().change_view(request, object_id, form_url, extra_context)

    # --- actions (enqueued) ---------------------------------------------------------------

    @admin.action(description="Approve: post the selected drafts", permissions=["approve"])
    def approve_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        ids = list(
            queryset.filter(
                status=Journal.Status.DRAFT, order_sync__state=OrderState.AWAITING_REVIEW
            ).values_list("pk", flat=True)
        )
        if not ids:
            self.message_user(
                request, "None of the selected journals awaits review.", messages.WARNING
            )
            return
        _enqueue(
            "approve_journals_task",
            ids,
            request.user.pk,
            task_name=f"Approve {len(ids)} journal(s)",
        )
        self.message_user(request, f"{len(ids)} journal(s) queued for posting.", messages.SUCCESS)

    @admin.action(description="Reject: delete the drafts, with a reason", permissions=["approve"])
    def reject_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        drafts = queryset.filter(status=Journal.Status.DRAFT)
        reason, page = _reason_step(
            self, request, drafts, action="reject_selected", title="Reject journals"
        )
        if page is not None:
            return page
        for pk in drafts.values_list("pk", flat=True):
            _enqueue(
                "reject_journal_task", pk, request.user.pk, reason, task_name=f"Reject journal {pk}"
            )
        self.message_user(request, f"{drafts.count()} rejection(s) queued.", messages.SUCCESS)
        return None

    @admin.action(
        description="Reverse: post a reversing journal, with a reason", permissions=["approve"]
    )
    def reverse_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        posted = queryset.filter(status=Journal.Status.POSTED, kind=Journal.Kind.POSTING)
        reason, page = _reason_step(
            self, request, posted, action="reverse_selected", title="Reverse journals"
        )
        if page is not None:
            return page
        for pk in posted.values_list("pk", flat=True):
            _enqueue(
                "reverse_journal_task",
                pk,
                request.user.pk,
                reason,
                task_name=f"Reverse journal {pk}",
            )
        self.message_user(request, f"{posted.count()} reversal(s) queued.", messages.SUCCESS)
        return None

    @admin.action(description="Retry the failed orders now", permissions=["approve"])
    def retry_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        _orders_retry(self, request, queryset.values_list("order_sync_id", flat=True))

    @admin.action(description="Rebuild the orders' journals", permissions=["approve"])
    def rebuild_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        _orders_rebuild(self, request, queryset.values_list("order_sync_id", flat=True))


def journal_detail_context(journal: Journal) -> dict[str, Any]:
    """What the review page shows beside the journal: lines with totals, the ATLAS order and
    items, request and response, and the order's history."""
    lines = list(journal.lines.select_related("order_item").order_by("position"))
    debit = sum((line.amount for line in lines if line.side == JournalLine.Side.DEBIT), Decimal(0))
    credit = sum(
        (line.amount for line in lines if line.side == JournalLine.Side.CREDIT), Decimal(0)
    )
    order_sync = journal.order_sync
    order = order_sync.order
    items = list(order.items.order_by("atlas_id"))
    # Gross computed here, in Decimal: the template's `add` filter goes through int() first
    # and would show 71848.74 + 13651.26 as 85499.
    item_rows = [(item, item.net_amount + item.vat_amount) for item in items]
    booked = [
        gross
        for item, gross in item_rows
        if item.status == OrderItem.Status.IN_ORDER and item.sync_state != SyncState.MISSING
    ]
    return {
        "journal": journal,
        "lines": lines,
        "total_debit": debit,
        "total_credit": credit,
        "balanced": debit == credit,
        "order_sync": order_sync,
        "atlas_order": order,
        "atlas_items": items,
        "atlas_item_rows": item_rows,
        # What validation compares with the order's totalAmount: the booked items only.
        "items_gross": sum(booked, Decimal("0.00")),
        "request_pretty": _pretty_json(journal.request_json),
        "response_pretty": _pretty_json(journal.response_json),
        "transitions": list(
            OrderTransition.objects.filter(order_sync=order_sync)
            .select_related("user")
            .order_by("at", "id")
        ),
        "other_journals": list(
            Journal.objects.filter(order_sync=order_sync).exclude(pk=journal.pk).order_by("id")
        ),
        "write_backs": list(order_sync.write_backs.order_by("kind")),
    }


def _orders_retry(modeladmin: Any, request: HttpRequest, order_sync_ids: Any) -> None:
    ids = list(
        OrderSync.objects.filter(pk__in=list(order_sync_ids), state=OrderState.FAILED).values_list(
            "pk", flat=True
        )
    )
    for pk in ids:
        _enqueue("retry_order_task", pk, request.user.pk, task_name=f"Retry order sync {pk}")
    modeladmin.message_user(
        request, f"{len(ids)} failed order(s) queued for a retry.", messages.SUCCESS
    )


def _orders_rebuild(modeladmin: Any, request: HttpRequest, order_sync_ids: Any) -> None:
    rebuildable = (
        OrderState.BLOCKED,
        OrderState.FAILED,
        OrderState.READY,
        OrderState.JOURNAL_BUILT,
    )
    ids = list(
        OrderSync.objects.filter(pk__in=list(order_sync_ids), state__in=rebuildable).values_list(
            "pk", flat=True
        )
    )
    for pk in ids:
        _enqueue("rebuild_order_task", pk, request.user.pk, task_name=f"Rebuild order sync {pk}")
    modeladmin.message_user(request, f"{len(ids)} order(s) queued for a rebuild.", messages.SUCCESS)


# --- orders ---------------------------------------------------------------------------------------


class OrderTransitionInline(admin.TabularInline):
    model = OrderTransition
    fields = ("at", "from_state", "to_state", "actor", "note")
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ("at", "id")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class JournalInline(admin.TabularInline):
    model = Journal
    fields = (
        "link",
        "kind",
        "revision",
        "status",
        "total_debit",
        "currency",
        "ledger_transaction_id",
        "landed_period",
    )
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ("id",)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="Journal")
    def link(self, obj: Journal) -> SafeString:
        url = reverse("admin:ledger_sync_journal_change", args=[obj.pk])
        return format_html('<a href="{}">{}</a>', url, obj.source_transaction_reference)


class WriteBackStepInline(admin.TabularInline):
    model = WriteBackStep
    fields = ("kind", "status", "attempts", "next_attempt_at", "last_error", "waiting_for")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(OrderSync)
class OrderSyncAdmin(_ApproverMixin, ReadOnlyPermissions, admin.ModelAdmin):
    list_display = (
        "order_display",
        "counterparty",
        "state",
        "blocked_reason",
        "blocked_message",
        "fix",
        "revision",
        "attempts",
        "next_attempt_at",
        "erp_code",
    )
    list_filter = ("state", "blocked_reason")
    list_select_related = ("order__counterparty",)
    search_fields = ("=order__atlas_id", "order__document_reference", "erp_code")
    ordering = ("-updated_at", "-id")
    list_per_page = 100
    show_full_result_count = False
    readonly_fields = (
        "order_display",
        "state",
        "blocked_reason",
        "blocked_message",
        "fix",
        "all_problems",
        "waiting_on_items",
        "revision",
        "attempts",
        "next_attempt_at",
        "last_error",
        "claimed_by",
        "claimed_at",
        "erp_code",
        "created_at",
        "updated_at",
    )
    fields = readonly_fields
    inlines = (JournalInline, WriteBackStepInline, OrderTransitionInline)
    actions = ("retry_selected", "rebuild_selected")

    @admin.display(description="Order", ordering="order__atlas_id")
    def order_display(self, obj: OrderSync) -> SafeString:
        order = obj.order
        url = reverse("admin:ledger_sync_order_change", args=[order.pk])
        return format_html('<a href="{}">{}</a>', url, order)

    @admin.display(description="Counterparty", ordering="order__counterparty__name")
    def counterparty(self, obj: OrderSync) -> str:
        return obj.order.counterparty.name if obj.order.counterparty else "—"

    @admin.display(description="Fix")
    def fix(self, obj: OrderSync) -> SafeString | str:
        if not obj.blocked_fix_url:
            return ""
        return format_html('<a href="{}">fix it here</a>', obj.blocked_fix_url)

    @admin.display(description="Every problem found")
    def all_problems(self, obj: OrderSync) -> SafeString | str:
        problems = [p for p in obj.blocked_problems or [] if isinstance(p, dict)]
        if not problems:
            return ""
        return render_to_string(
            "admin/ledger_sync/includes/order_problems.html", {"problems": problems}
        )

    @admin.action(description="Retry the failed orders now", permissions=["approve"])
    def retry_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        _orders_retry(self, request, queryset.values_list("pk", flat=True))

    @admin.action(description="Rebuild (after fixing the cause)", permissions=["approve"])
    def rebuild_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        _orders_rebuild(self, request, queryset.values_list("pk", flat=True))


# --- write-backs ----------------------------------------------------------------------------------


@admin.register(WriteBackStep)
class WriteBackStepAdmin(_ApproverMixin, ReadOnlyPermissions, admin.ModelAdmin):
    list_display = (
        "order",
        "kind",
        "status",
        "attempts",
        "next_attempt_at",
        "waiting_for",
        "last_error",
        "updated_at",
    )
    list_filter = ("status", "kind", "waiting_for")
    list_select_related = ("order_sync__order",)
    search_fields = ("=order_sync__order__atlas_id", "order_sync__order__document_reference")
    ordering = ("-updated_at", "-id")
    list_per_page = 100
    show_full_result_count = False
    readonly_fields = (
        "order",
        "kind",
        "status",
        "attempts",
        "next_attempt_at",
        "waiting_for",
        "last_error",
        "request_pretty",
        "response_pretty",
        "created_at",
        "updated_at",
        "done_at",
    )
    fields = readonly_fields
    actions = ("retry_selected",)

    @admin.display(description="Order", ordering="order_sync__order__atlas_id")
    def order(self, obj: WriteBackStep) -> SafeString:
        return _order_link(obj.order_sync)

    @admin.display(description="Request sent")
    def request_pretty(self, obj: WriteBackStep) -> SafeString:
        return format_html("<pre>{}</pre>", _pretty_json(obj.request_json))

    @admin.display(description="Response received")
    def response_pretty(self, obj: WriteBackStep) -> SafeString:
        return format_html("<pre>{}</pre>", _pretty_json(obj.response_json))

    @admin.action(description="Retry the failed write-backs now", permissions=["approve"])
    def retry_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        failed = list(queryset.filter(status=WriteBackStep.Status.FAILED))
        for step in failed:
            write_back_retry(step=step)
        order_ids = sorted({step.order_sync_id for step in failed})
        if order_ids:
            _enqueue(
                "write_back_task",
                order_ids,
                task_name=f"Retry write-backs of {len(order_ids)} order(s)",
            )
        self.message_user(
            request, f"{len(failed)} failed write-back(s) queued for a retry.", messages.SUCCESS
        )
