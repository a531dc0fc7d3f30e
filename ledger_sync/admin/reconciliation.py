"""Back office for reconciliation: the runs (also the clean ones: "last reconciled, 0
differences") and the differences report, filtered by run, level and kind, with the figures of
each system, the likely cause, a link to the records, and CSV/XLSX export of what is filtered.

Read-only: the rows are what a run found. "Reconcile now" queues a run (never runs it in the
request).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.contrib import admin, messages
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html
from django_q.tasks import async_task
from import_export import fields, resources
from import_export.admin import ExportMixin
from import_export.formats import base_formats

from ledger_sync.admin.readonly import ReadOnlyAdmin
from ledger_sync.models import ReconciliationDifference, ReconciliationRun
from ledger_sync.services.reconciliation_values import money

RUNS_IN_FILTER = 20
RECONCILE_TASK = "ledger_sync.tasks.reconcile_task"
_STATUS_COLOURS = {
    ReconciliationRun.Status.RUNNING: "#1565c0",
    ReconciliationRun.Status.DONE: "#2e7d32",
    ReconciliationRun.Status.FAILED: "#c62828",
}


def _figure(amount: Decimal | None, currency: str) -> str:
    return "—" if amount is None else money(amount, currency)


def _differences_url(run_id: int, **query: Any) -> str:
    params = "&".join([f"run__id__exact={run_id}", *(f"{k}={v}" for k, v in query.items())])
    return reverse("admin:ledger_sync_reconciliationdifference_changelist") + "?" + params


# --- runs ----------------------------------------------------------------------------------------


@admin.register(ReconciliationRun)
class ReconciliationRunAdmin(ReadOnlyAdmin):
    list_display = (
        "started_at",
        "scope",
        "status_badge",
        "differences_link",
        "orders_checked",
        "accounts_checked",
        "counterparties_checked",
        "remote_calls",
        "trigger",
    )
    list_filter = ("status", "trigger")
    date_hierarchy = "started_at"
    fields = (
        "status",
        "period",
        "trigger",
        "user",
        "started_at",
        "finished_at",
        "differences_link",
        "summary_table",
        "orders_checked",
        "accounts_checked",
        "counterparties_checked",
        "ledger_transactions_read",
        "ledger_calls",
        "atlas_calls",
        "error",
    )
    readonly_fields = fields
    change_list_template = "admin/ledger_sync/reconciliationrun/change_list.html"

    @admin.display(description="period", ordering="period")
    def scope(self, obj: ReconciliationRun) -> str:
        return obj.period or "all periods"

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: ReconciliationRun) -> str:
        return format_html(
            '<strong style="color:{}">{}</strong>',
            _STATUS_COLOURS.get(obj.status, "inherit"),
            obj.get_status_display(),
        )

    @admin.display(description="differences", ordering="difference_count")
    def differences_link(self, obj: ReconciliationRun) -> str:
        if obj.status != ReconciliationRun.Status.DONE:
            return "—"
        if not obj.difference_count:
            return "0 — everything agrees"
        return format_html(
            '<a href="{}">{} differences</a>',
            _differences_url(obj.pk),
            f"{obj.difference_count:,}",
        )

    @admin.display(description="remote calls")
    def remote_calls(self, obj: ReconciliationRun) -> str:
        return f"AR Ledger {obj.ledger_calls:,} · ATLAS {obj.atlas_calls:,}"

    @admin.display(description="differences by level and kind")
    def summary_table(self, obj: ReconciliationRun) -> str:
        counts = (obj.summary or {}).get("differences", {})
        if not counts:
            return "none"
        labels = dict(ReconciliationDifference.Kind.choices)
        rows = []
        for key, count in sorted(counts.items()):
            level, _, kind = key.partition(":")
            rows.append(
                format_html(
                    '<li><a href="{}">level {} · {}: {}</a></li>',
                    _differences_url(obj.pk, level__exact=level, kind__exact=kind),
                    level,
                    labels.get(kind, kind),
                    count,
                )
            )
        return format_html("<ul>{}</ul>", format_html("".join(rows)))

    def get_urls(self) -> list[Any]:
        own = [
            path(
                "reconcile-now/",
                self.admin_site.admin_view(self.reconcile_now),
                name="ledger_sync_reconciliationrun_reconcile_now",
            )
        ]
        return own + super().get_urls()

    def reconcile_now(self, request: HttpRequest) -> HttpResponse:
        """Queue one reconciliation of every period (POST only)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_view_permission(request):
            messages.error(request, "You may not run reconciliations.")
        else:
            transaction.on_commit(
                lambda: async_task(RECONCILE_TASK, "admin", task_name="Reconciliation (admin)")
            )
            messages.success(
                request,
                "Reconciliation queued: it appears here when the worker has run it.",
            )
        return HttpResponseRedirect(reverse("admin:ledger_sync_reconciliationrun_changelist"))


# --- differences ---------------------------------------------------------------------------------


class RecentRunFilter(admin.SimpleListFilter):
    """The last runs only: a filter listing every run ever made would grow without end."""

    title = "run"
    parameter_name = "run__id__exact"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        runs = ReconciliationRun.objects.filter(status=ReconciliationRun.Status.DONE)
        return [
            (str(r.pk), f"{r.pk} · {r.started_at:%Y-%m-%d %H:%M} · {r.period or 'all'}")
            for r in runs.order_by("-started_at", "-id")[:RUNS_IN_FILTER]
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(run_id=self.value()) if self.value() else queryset


class ReconciliationDifferenceResource(resources.ModelResource):
    """The export: one row per difference, figures as numbers (2 dp), empty when absent."""

    run = fields.Field(attribute="run_id", column_name="run")
    level = fields.Field(attribute="level", column_name="level")
    kind = fields.Field(attribute="kind", column_name="kind")
    record = fields.Field(attribute="record_label", column_name="record")
    currency = fields.Field(attribute="currency", column_name="currency")
    atlas = fields.Field(attribute="atlas_amount", column_name="atlas")
    ours = fields.Field(attribute="ours_amount", column_name="ledger_sync")
    ledger = fields.Field(attribute="ledger_amount", column_name="ar_ledger_entries")
    ledger_balance = fields.Field(
        attribute="ledger_balance_amount", column_name="ar_ledger_balance"
    )
    amount = fields.Field(attribute="amount", column_name="difference")
    likely_cause = fields.Field(attribute="likely_cause", column_name="likely_cause")
    reference = fields.Field(attribute="source_transaction_reference", column_name="reference")
    period = fields.Field(attribute="period", column_name="period")
    gl_account = fields.Field(attribute="gl_account", column_name="gl_account")
    billing = fields.Field(attribute="billing_account_num", column_name="billing_account")
    key = fields.Field(attribute="key", column_name="key")
    fix_url = fields.Field(attribute="fix_url", column_name="link")

    class Meta:
        model = ReconciliationDifference
        fields = (
            "run", "level", "kind", "record", "currency", "atlas", "ours", "ledger",
            "ledger_balance", "amount", "likely_cause", "reference", "period", "gl_account",
            "billing", "key", "fix_url",
        )  # fmt: skip
        export_order = fields


@admin.register(ReconciliationDifference)
class ReconciliationDifferenceAdmin(ExportMixin, ReadOnlyAdmin):
    resource_classes = [ReconciliationDifferenceResource]
    export_formats = [base_formats.CSV, base_formats.XLSX]
    list_display = (
        "record",
        "level",
        "kind",
        "atlas_figure",
        "ours_figure",
        "ledger_figure",
        "balance_figure",
        "amount_figure",
        "likely_cause",
        "run_link",
    )
    list_filter = (RecentRunFilter, "level", "kind", "currency")
    list_select_related = ("run",)
    search_fields = (
        "key",
        "record_label",
        "source_transaction_reference",
        "billing_account_num",
        "gl_account",
    )
    fields = (
        "run",
        "level",
        "kind",
        "record",
        "key",
        "currency",
        "atlas_figure",
        "ours_figure",
        "ledger_figure",
        "balance_figure",
        "amount_figure",
        "likely_cause",
        "period",
        "gl_account",
        "billing_account_num",
        "source_transaction_reference",
        "ledger_transaction_ids",
        "order",
        "journal",
        "counterparty",
        "details",
    )
    readonly_fields = fields

    @admin.display(description="record", ordering="record_label")
    def record(self, obj: ReconciliationDifference) -> str:
        if obj.fix_url:
            return format_html('<a href="{}">{}</a>', obj.fix_url, obj.record_label)
        return obj.record_label

    @admin.display(description="ATLAS", ordering="atlas_amount")
    def atlas_figure(self, obj: ReconciliationDifference) -> str:
        return _figure(obj.atlas_amount, obj.currency)

    @admin.display(description="ledger_sync", ordering="ours_amount")
    def ours_figure(self, obj: ReconciliationDifference) -> str:
        return _figure(obj.ours_amount, obj.currency)

    @admin.display(description="AR Ledger entries", ordering="ledger_amount")
    def ledger_figure(self, obj: ReconciliationDifference) -> str:
        return _figure(obj.ledger_amount, obj.currency)

    @admin.display(description="AR Ledger balance", ordering="ledger_balance_amount")
    def balance_figure(self, obj: ReconciliationDifference) -> str:
        return _figure(obj.ledger_balance_amount, obj.currency)

    @admin.display(description="difference", ordering="amount")
    def amount_figure(self, obj: ReconciliationDifference) -> str:
        return format_html("<strong>{}</strong>", money(obj.amount, obj.currency))

    @admin.display(description="run", ordering="run__started_at")
    def run_link(self, obj: ReconciliationDifference) -> str:
        url = reverse("admin:ledger_sync_reconciliationrun_change", args=[obj.run_id])
        return format_html('<a href="{}">{}</a>', url, f"{obj.run.started_at:%Y-%m-%d %H:%M}")

    def has_export_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("ledger_sync.view_reconciliationdifference")
