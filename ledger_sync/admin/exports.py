"""CSV/XLSX exports of the journal list (one row per line) and of blocked orders (reason,
message, the link that fixes it), with django-import-export.

Amounts are exported as numbers (XLSX cells are numeric; CSV has `85500.00`), so a spreadsheet
can sum them; labels are the readable ones the pages show.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.urls import reverse
from import_export import resources
from import_export.fields import Field

from ledger_sync.admin.display import gl_account_names
from ledger_sync.models import JournalLine, OrderSync


class JournalLineExport(resources.ModelResource):
    """One row per journal line, with its journal, order and counterparty."""

    journal = Field(attribute="journal__source_transaction_reference", column_name="Journal")
    kind = Field(column_name="Kind")
    status = Field(column_name="Journal status")
    atlas_order = Field(attribute="journal__order_sync__order__atlas_id", column_name="ATLAS order")
    document_reference = Field(
        attribute="journal__order_sync__order__document_reference", column_name="Document"
    )
    counterparty = Field(column_name="Counterparty")
    occurred_on = Field(attribute="journal__occurred_on", column_name="Date")
    landed_period = Field(attribute="journal__landed_period", column_name="Period")
    line = Field(attribute="position", column_name="Line")
    gl_account = Field(attribute="gl_account", column_name="GL account")
    gl_account_name = Field(column_name="GL account name")
    debit = Field(column_name="Debit")
    credit = Field(column_name="Credit")
    currency = Field(attribute="currency", column_name="Currency")
    erp_party = Field(attribute="billing_account_num", column_name="ERP party")
    description = Field(attribute="description", column_name="Description")

    class Meta:
        model = JournalLine
        name = "Journal lines"
        fields = (
            "journal",
            "kind",
            "status",
            "atlas_order",
            "document_reference",
            "counterparty",
            "occurred_on",
            "landed_period",
            "line",
            "gl_account",
            "gl_account_name",
            "debit",
            "credit",
            "currency",
            "erp_party",
            "description",
        )
        export_order = fields

    def before_export(self, queryset: QuerySet, **kwargs: Any) -> None:
        # One query for every account name of the export, not one per line.
        self._gl_names = gl_account_names(queryset.values_list("gl_account", flat=True))

    def dehydrate_kind(self, line: JournalLine) -> str:
        return line.journal.get_kind_display()

    def dehydrate_status(self, line: JournalLine) -> str:
        return line.journal.get_status_display()

    def dehydrate_counterparty(self, line: JournalLine) -> str:
        counterparty = line.journal.order_sync.order.counterparty
        return counterparty.name if counterparty else ""

    def dehydrate_gl_account_name(self, line: JournalLine) -> str:
        return getattr(self, "_gl_names", {}).get(line.gl_account, "")

    def dehydrate_debit(self, line: JournalLine) -> Any:
        return line.amount if line.side == JournalLine.Side.DEBIT else None

    def dehydrate_credit(self, line: JournalLine) -> Any:
        return line.amount if line.side == JournalLine.Side.CREDIT else None


def journal_lines_of(journals: QuerySet) -> QuerySet:
    """The lines of `journals` (the filtered journal list), ready for JournalLineExport."""
    return (
        JournalLine.objects.filter(journal__in=journals.values("pk"))
        .select_related("journal__order_sync__order__counterparty")
        .order_by("journal_id", "position")
    )


class BlockedOrderExport(resources.ModelResource):
    """One row per order of the pipeline list: why it is blocked and where to fix it."""

    atlas_order = Field(attribute="order__atlas_id", column_name="ATLAS order")
    document_reference = Field(attribute="order__document_reference", column_name="Document")
    counterparty = Field(column_name="Counterparty")
    total_amount = Field(attribute="order__total_amount", column_name="Total amount")
    currency = Field(attribute="order__currency", column_name="Currency")
    state = Field(column_name="State")
    reason = Field(column_name="Blocked reason")
    message = Field(attribute="blocked_message", column_name="Message")
    fix_link = Field(column_name="Fix it here")
    order_link = Field(column_name="Order page")
    since = Field(attribute="updated_at", column_name="Last changed")

    class Meta:
        model = OrderSync
        name = "Blocked orders"
        fields = (
            "atlas_order",
            "document_reference",
            "counterparty",
            "total_amount",
            "currency",
            "state",
            "reason",
            "message",
            "fix_link",
            "order_link",
            "since",
        )
        export_order = fields

    def __init__(self, *, base_url: str = "", **kwargs: Any):
        super().__init__(**kwargs)
        # Links in a file work only absolute: the admin's own address, from the request.
        self.base_url = base_url.rstrip("/")

    def dehydrate_counterparty(self, order_sync: OrderSync) -> str:
        counterparty = order_sync.order.counterparty
        return counterparty.name if counterparty else ""

    def dehydrate_state(self, order_sync: OrderSync) -> str:
        return order_sync.get_state_display()

    def dehydrate_reason(self, order_sync: OrderSync) -> str:
        return order_sync.get_blocked_reason_display() if order_sync.blocked_reason else ""

    def dehydrate_fix_link(self, order_sync: OrderSync) -> str:
        return self._absolute(order_sync.blocked_fix_url)

    def dehydrate_order_link(self, order_sync: OrderSync) -> str:
        return self._absolute(reverse("admin:ledger_sync_ordersync_change", args=[order_sync.pk]))

    def _absolute(self, url: str) -> str:
        if not url or url.startswith(("http://", "https://")):
            return url or ""
        return f"{self.base_url}{url}"
