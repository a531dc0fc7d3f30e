"""Reads over the order pipeline for the admin and the API: orders by state and reason, waiting
orders with the items that hold them, journals with their lines and totals, an order's history.

Every list is a queryset with its related rows joined or prefetched, so a page of 100 rows
costs a fixed number of queries.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Count, Prefetch, QuerySet, Sum

from ledger_sync.models import (
    Journal,
    JournalLine,
    OrderItem,
    OrderState,
    OrderSync,
    OrderTransition,
    SyncState,
)


def order_syncs_list(
    *, state: str | None = None, blocked_reason: str | None = None
) -> QuerySet[OrderSync]:
    """Orders in the pipeline, newest change first, with the order and counterparty joined."""
    queryset = OrderSync.objects.select_related(
        "order", "order__counterparty", "order__counterparty__erp_mapping"
    ).order_by("-updated_at", "-id")
    if state:
        queryset = queryset.filter(state=state)
    if blocked_reason:
        queryset = queryset.filter(blocked_reason=blocked_reason)
    return queryset


def order_sync_counts_by_state() -> dict[str, int]:
    """How many orders are in each state (every state present, zero when none)."""
    counts = dict.fromkeys(OrderState.values, 0)
    for row in OrderSync.objects.values("state").annotate(n=Count("id")).order_by():
        counts[row["state"]] = row["n"]
    return counts


def order_sync_counts_by_blocked_reason() -> dict[str, int]:
    """How many blocked orders there are per reason (only reasons that occur)."""
    return {
        row["blocked_reason"]: row["n"]
        for row in OrderSync.objects.filter(state=OrderState.BLOCKED)
        .values("blocked_reason")
        .annotate(n=Count("id"))
        .order_by("blocked_reason")
    }


@dataclass(frozen=True)
class WaitingOrder:
    order_sync: OrderSync
    holding_items: list[OrderItem]  # the items still in status 0 (Calculated) or 1 (Edited)


def orders_waiting() -> list[WaitingOrder]:
    """Orders waiting for items under review in ATLAS, each with the items that hold it."""
    holding = OrderItem.objects.exclude(sync_state=SyncState.MISSING).filter(
        status__in=[OrderItem.Status.CALCULATED, OrderItem.Status.EDITED]
    )
    syncs = (
        OrderSync.objects.filter(state=OrderState.WAITING)
        .select_related("order", "order__counterparty")
        .prefetch_related(Prefetch("order__items", queryset=holding, to_attr="holding_items"))
        .order_by("order__atlas_id")
    )
    return [
        WaitingOrder(order_sync=sync, holding_items=list(sync.order.holding_items))
        for sync in syncs
    ]


def journals_list(
    *,
    state: str | None = None,
    blocked_reason: str | None = None,
    status: str | None = None,
    kind: str | None = None,
) -> QuerySet[Journal]:
    """Journals for the review list: order, counterparty and the order's state joined; filter
    by the order's state and blocked reason, or by the journal's status and kind."""
    queryset = Journal.objects.select_related(
        "order_sync", "order_sync__order", "order_sync__order__counterparty"
    ).order_by("-created_at", "-id")
    if state:
        queryset = queryset.filter(order_sync__state=state)
    if blocked_reason:
        queryset = queryset.filter(order_sync__blocked_reason=blocked_reason)
    if status:
        queryset = queryset.filter(status=status)
    if kind:
        queryset = queryset.filter(kind=kind)
    return queryset


@dataclass(frozen=True)
class JournalDetail:
    journal: Journal
    lines: list[JournalLine]
    total_debit: Decimal
    total_credit: Decimal

    @property
    def balanced(self) -> bool:
        return self.total_debit == self.total_credit

    @property
    def difference(self) -> Decimal:
        return self.total_debit - self.total_credit


def journal_detail(*, journal_id: int) -> JournalDetail:
    """A journal with its lines in order and the totals computed from the lines themselves
    (not the stored header), so the page shows what would actually be sent."""
    journal = (
        Journal.objects.select_related(
            "order_sync", "order_sync__order", "order_sync__order__counterparty", "reversal_of"
        )
        .prefetch_related(
            Prefetch(
                "lines",
                queryset=JournalLine.objects.select_related("order_item").order_by("position"),
            )
        )
        .get(pk=journal_id)
    )
    lines = list(journal.lines.all())
    debit = sum((line.amount for line in lines if line.side == "debit"), Decimal("0.00"))
    credit = sum((line.amount for line in lines if line.side == "credit"), Decimal("0.00"))
    return JournalDetail(journal=journal, lines=lines, total_debit=debit, total_credit=credit)


def journal_totals(*, journal_ids: list[int]) -> dict[int, tuple[Decimal, Decimal]]:
    """(debit, credit) per journal from its lines, in one query."""
    totals: dict[int, tuple[Decimal, Decimal]] = {
        pk: (Decimal("0.00"), Decimal("0.00")) for pk in journal_ids
    }
    rows = (
        JournalLine.objects.filter(journal_id__in=journal_ids)
        .values("journal_id", "side")
        .annotate(total=Sum("amount"))
        .order_by()
    )
    for row in rows:
        debit, credit = totals[row["journal_id"]]
        if row["side"] == "debit":
            debit = row["total"]
        else:
            credit = row["total"]
        totals[row["journal_id"]] = (debit, credit)
    return totals


def order_sync_journals(*, order_sync: OrderSync) -> QuerySet[Journal]:
    """Every journal of an order (revisions, reversals, superseded), oldest first."""
    return order_sync.journals.order_by("revision", "created_at", "id")


def order_sync_current_journal(*, order_sync: OrderSync) -> Journal | None:
    """The posting journal of the order's current revision, if built."""
    return (
        order_sync.journals.filter(kind=Journal.Kind.POSTING, revision=order_sync.revision)
        .order_by("-id")
        .first()
    )


def order_sync_history(*, order_sync: OrderSync) -> QuerySet[OrderTransition]:
    """The order's state changes, oldest first, with the user joined."""
    return order_sync.transitions.select_related("user").order_by("at", "id")
