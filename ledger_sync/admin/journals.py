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
from django.core.exceptions import PermissionDenied
from django.db import models, transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import ngettext
from django_q.tasks import async_task
from import_export.admin import ExportMixin
from import_export.formats import base_formats
from import_export.forms import ExportForm

from ledger_sync.admin.display import counted, gl_account_names, money, pretty_json, when
from ledger_sync.admin.exports import BlockedOrderExport, JournalLineExport, journal_lines_of
from ledger_sync.admin.readonly import ReadOnlyPermissions, SuperuserOnlyFields
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
from ledger_sync.selectors.documents import (
    WAITING_FOR_ERP_INVOICE_TEXT,
    order_document_text,
    order_syncs_with_erp_invoice_wait,
)
from ledger_sync.services.posting import APPROVE_PERMISSION
from ledger_sync.services.write_back_steps import write_back_retry

TASKS = "ledger_sync.tasks."


def _enqueue(func: str, *args: Any, task_name: str) -> None:
    """Queue a task once the admin's transaction has committed (never run it here)."""
    transaction.on_commit(lambda: async_task(TASKS + func, *args, task_name=task_name))


def _order_link(order_sync: OrderSync) -> SafeString:
    order = order_sync.order
    url = reverse("admin:ledger_sync_ordersync_change", args=[order_sync.pk])
    label = f"{order.atlas_id}" + (
        f" {order.document_reference}" if order.document_reference else ""
    )
    return format_html('<a class="nowrap" href="{}">{}</a>', url, label)


class _ApproverMixin:
    def has_approve_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(APPROVE_PERMISSION)


class _CsvXlsxExport(ExportMixin):
    """django-import-export's "Export" button on a read-only list: CSV or XLSX of the filtered
    rows, for whoever may view them."""

    export_formats = [base_formats.CSV, base_formats.XLSX]
    # Format only: the columns are fixed, so that every export of a list reads the same.
    export_form_class = ExportForm
    export_file_stem = "export"

    def has_export_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)

    def get_export_filename(self, request: HttpRequest, queryset: Any, file_format: Any) -> str:
        day = f"{timezone.localdate():%Y-%m-%d}"
        return f"{self.export_file_stem}-{day}.{file_format.get_extension()}"


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
class JournalAdmin(_CsvXlsxExport, _ApproverMixin, ReadOnlyPermissions, admin.ModelAdmin):
    # Read-only: posted journals are never edited; corrections are reversals.
    # Seven columns, so the list fits 1,280 px; the rest is on the journal's page.
    list_display = (
        "reference",
        "order",
        "counterparty",
        "amount",
        "status",
        "order_state",
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
    resource_classes = [JournalLineExport]
    export_file_stem = "journal-lines"
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

    def get_export_queryset(self, request: HttpRequest) -> QuerySet:
        # The journals of the filtered list, exported with their lines (one row per line).
        return journal_lines_of(super().get_export_queryset(request))

    @admin.display(description="Journal", ordering="source_transaction_reference")
    def reference(self, obj: Journal) -> str:
        return obj.source_transaction_reference

    @admin.display(description="Order", ordering="order_sync__order__atlas_id")
    def order(self, obj: Journal) -> SafeString:
        return _order_link(obj.order_sync)

    @admin.display(description="Counterparty", ordering="order_sync__order__counterparty__name")
    def counterparty(self, obj: Journal) -> str:
        counterparty = obj.order_sync.order.counterparty
        return counterparty.name if counterparty else "—"

    @admin.display(description="Amount", ordering="total_debit")
    def amount(self, obj: Journal) -> SafeString | str:
        return money(obj.total_debit, obj.currency)

    @admin.display(description="Order state", ordering="order_sync__state")
    def order_state(self, obj: Journal) -> str:
        order_sync = obj.order_sync
        if order_sync.blocked_reason:
            return f"Blocked: {order_sync.get_blocked_reason_display()}"
        return order_sync.get_state_display()

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        journal = (
            Journal.objects.select_related("order_sync__order__counterparty", "reversal_of")
            .filter(pk=object_id)
            .first()
        )
        if journal is not None:
            can_decide = self.has_approve_permission(request)
            extra_context = {
                **(extra_context or {}),
                **journal_detail_context(journal),
                "can_approve": can_decide and journal_can_be_approved(journal),
                "can_reject": can_decide and journal_can_be_rejected(journal),
                "show_raw": request.user.is_superuser,
            }
        return super().change_view(request, object_id, form_url, extra_context)

    def get_urls(self) -> list[Any]:
        return [
            path(
                "<int:journal_id>/approve/",
                self.admin_site.admin_view(self.approve_view),
                name="ledger_sync_journal_approve",
            ),
            path(
                "<int:journal_id>/reject/",
                self.admin_site.admin_view(self.reject_view),
                name="ledger_sync_journal_reject",
            ),
            *super().get_urls(),
        ]

    def _decision_journal(self, request: HttpRequest, journal_id: int) -> Journal:
        if not self.has_approve_permission(request):
            raise PermissionDenied("Only accountants and finance leads may review journals.")
        return get_object_or_404(
            Journal.objects.select_related("order_sync__order__counterparty"), pk=journal_id
        )

    def _decision_page(
        self, request: HttpRequest, journal: Journal, **context: Any
    ) -> TemplateResponse:
        return TemplateResponse(
            request,
            "admin/ledger_sync/journal/decide.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "journal": journal,
                "order": journal.order_sync.order,
                "amount": money(journal.total_debit, journal.currency),
                "balanced": journal.total_debit == journal.total_credit,
                "back_url": reverse("admin:ledger_sync_journal_change", args=[journal.pk]),
                **context,
            },
        )

    def approve_view(self, request: HttpRequest, journal_id: int) -> HttpResponse:
        """The journal page's "Approve and post" button: asks, then queues the posting."""
        journal = self._decision_journal(request, journal_id)
        back = HttpResponseRedirect(reverse("admin:ledger_sync_journal_change", args=[journal.pk]))
        if not journal_can_be_approved(journal):
            self.message_user(
                request,
                f"Journal {journal.source_transaction_reference} does not await review "
                f"({journal.get_status_display()}; order {journal.order_sync.get_state_display()}"
                ").",
                messages.WARNING,
            )
            return back
        if request.method == "POST" and "confirm" in request.POST:
            _enqueue(
                "approve_journals_task",
                [journal.pk],
                request.user.pk,
                task_name=f"Approve journal {journal.source_transaction_reference}",
            )
            self.message_user(
                request,
                f"Journal {journal.source_transaction_reference} approved: it is being posted to "
                "the AR Ledger. Reload this page to see the result.",
                messages.SUCCESS,
            )
            return back
        return self._decision_page(
            request,
            journal,
            title=f"Approve and post journal {journal.source_transaction_reference}?",
            submit_label="Approve and post",
        )

    def reject_view(self, request: HttpRequest, journal_id: int) -> HttpResponse:
        """The journal page's "Reject" button: asks why, then queues the rejection."""
        journal = self._decision_journal(request, journal_id)
        back = HttpResponseRedirect(reverse("admin:ledger_sync_journal_change", args=[journal.pk]))
        if not journal_can_be_rejected(journal):
            self.message_user(
                request,
                f"Journal {journal.source_transaction_reference} is not a draft awaiting review; "
                "only such a draft can be rejected.",
                messages.WARNING,
            )
            return back
        form = ReasonForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            _enqueue(
                "reject_journal_task",
                journal.pk,
                request.user.pk,
                form.cleaned_data["reason"].strip(),
                task_name=f"Reject journal {journal.source_transaction_reference}",
            )
            self.message_user(
                request,
                f"Journal {journal.source_transaction_reference} rejected: the draft is being "
                "deleted in the AR Ledger and the order blocked with your reason.",
                messages.SUCCESS,
            )
            return back
        return self._decision_page(
            request,
            journal,
            title=f"Reject journal {journal.source_transaction_reference}?",
            form=form,
            submit_label="Reject the draft",
        )

    # --- actions (enqueued) ---------------------------------------------------------------

    @admin.action(description="Approve: post the selected drafts", permissions=["approve"])
    def approve_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        reviewable = queryset.filter(
            status=Journal.Status.DRAFT, order_sync__state=OrderState.AWAITING_REVIEW
        )
        ids = list(reviewable.values_list("pk", flat=True))
        if not ids:
            self.message_user(
                request, "None of the selected journals awaits review.", messages.WARNING
            )
            return None
        if "apply" not in request.POST:
            # Posting cannot be undone (only reversed): the page lists what will be posted.
            return TemplateResponse(
                request,
                "admin/ledger_sync/journal/reason.html",
                {
                    **self.admin_site.each_context(request),
                    "title": ngettext(
                        "Approve and post this journal?",
                        "Approve and post these %(count)d journals?",
                        len(ids),
                    )
                    % {"count": len(ids)},
                    "submit_label": "Approve and post",
                    "objects": list(reviewable.order_by("pk")),
                    "action": "approve_selected",
                    "opts": self.model._meta,
                    "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
                },
            )
        _enqueue(
            "approve_journals_task",
            ids,
            request.user.pk,
            task_name=f"Approve {counted(len(ids), 'journal', 'journals')}",
        )
        self.message_user(
            request,
            f"{counted(len(ids), 'journal', 'journals')} queued for posting.",
            messages.SUCCESS,
        )
        return None

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
        self.message_user(
            request,
            f"{counted(drafts.count(), 'rejection', 'rejections')} queued.",
            messages.SUCCESS,
        )
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
        self.message_user(
            request, f"{counted(posted.count(), 'reversal', 'reversals')} queued.", messages.SUCCESS
        )
        return None

    @admin.action(description="Retry the failed orders now", permissions=["approve"])
    def retry_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        _orders_retry(self, request, queryset.values_list("order_sync_id", flat=True))

    @admin.action(description="Rebuild the orders' journals", permissions=["approve"])
    def rebuild_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        _orders_rebuild(self, request, queryset.values_list("order_sync_id", flat=True))


def journal_can_be_approved(journal: Journal) -> bool:
    """What journal_approve takes: the order's current draft posting, awaiting review."""
    return (
        journal.kind == Journal.Kind.POSTING
        and journal.status == Journal.Status.DRAFT
        and journal.order_sync.state == OrderState.AWAITING_REVIEW
    )


def journal_can_be_rejected(journal: Journal) -> bool:
    """What journal_reject takes: a draft awaiting review, or one the ledger refused to post."""
    order_sync = journal.order_sync
    return journal.status == Journal.Status.DRAFT and (
        order_sync.state == OrderState.AWAITING_REVIEW
        or (
            order_sync.state == OrderState.BLOCKED
            and order_sync.blocked_reason == BlockedReason.REMOTE_REJECTION
        )
    )


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
        "request_pretty": pretty_json(journal.request_json),
        "response_pretty": pretty_json(journal.response_json),
        "gl_names": gl_account_names(
            [line.gl_account for line in lines] + [item.gl_account for item in items]
        ),
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
        request,
        f"{counted(len(ids), 'failed order', 'failed orders')} queued for a retry.",
        messages.SUCCESS,
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
    modeladmin.message_user(
        request, f"{counted(len(ids), 'order', 'orders')} queued for a rebuild.", messages.SUCCESS
    )


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
class OrderSyncAdmin(_CsvXlsxExport, _ApproverMixin, ReadOnlyPermissions, admin.ModelAdmin):
    resource_classes = [BlockedOrderExport]
    export_file_stem = "orders"
    import_export_change_list_template = "admin/ledger_sync/ordersync/change_list.html"

    # What a person needs to act, narrow enough for 1,280 px; the rest is on the order's page.
    list_display = (
        "order_display",
        "counterparty",
        "state_display",
        "blocked_message",
        "fix",
        "next_attempt",
        "erp_code_display",
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
        "erp_code_display",
        "document",
        "created_at",
        "updated_at",
    )
    fields = readonly_fields
    inlines = (JournalInline, WriteBackStepInline, OrderTransitionInline)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return order_syncs_with_erp_invoice_wait(super().get_queryset(request))

    @admin.display(description="Document")
    def document(self, obj: OrderSync) -> str:
        return order_document_text(obj)

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
        return format_html(
            '<a href="{}" aria-label="Fix order {}">fix it here</a>',
            obj.blocked_fix_url,
            obj.order.atlas_id,
        )

    @admin.display(description="State", ordering="state")
    def state_display(self, obj: OrderSync) -> str:
        if obj.blocked_reason:
            return f"Blocked: {obj.get_blocked_reason_display()}"
        if getattr(obj, "awaits_erp_invoice", False):
            return f"{obj.get_state_display()}, {WAITING_FOR_ERP_INVOICE_TEXT}"
        return obj.get_state_display()

    @admin.display(description="Next attempt", ordering="next_attempt_at")
    def next_attempt(self, obj: OrderSync) -> str:
        if obj.next_attempt_at is None:
            return ""
        tried = counted(obj.attempts, "attempt", "attempts")
        return f"{when(obj.next_attempt_at)} ({tried} so far)"

    @admin.display(description="ERP document code", ordering="erp_code")
    def erp_code_display(self, obj: OrderSync) -> str:
        return obj.erp_code or "—"

    def get_export_resource_kwargs(self, request: HttpRequest, **kwargs: Any) -> dict[str, Any]:
        return {"base_url": request.build_absolute_uri("/")}

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
class WriteBackStepAdmin(
    _ApproverMixin, SuperuserOnlyFields, ReadOnlyPermissions, admin.ModelAdmin
):
    superuser_only_fields = ("request_pretty", "response_pretty")
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
        return format_html("<pre>{}</pre>", pretty_json(obj.request_json))

    @admin.display(description="Response received")
    def response_pretty(self, obj: WriteBackStep) -> SafeString:
        return format_html("<pre>{}</pre>", pretty_json(obj.response_json))

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
                task_name=f"Retry write-backs of {counted(len(order_ids), 'order', 'orders')}",
            )
        self.message_user(
            request,
            counted(len(failed), "failed write-back", "failed write-backs") + " queued again.",
            messages.SUCCESS,
        )
