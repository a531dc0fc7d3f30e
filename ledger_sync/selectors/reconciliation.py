"""Reads for reconciliation: our posted journals and their lines, the mirrored ATLAS orders,
invoices and payments behind them, the payments we accepted, the mirrored periods — as the
plain values of services/reconciliation_checks.py — and the admin's last-run query.

Every loader is a fixed number of queries whatever the number of orders (values() rows
streamed with iterator(), no per-order query), so that 10,000 orders reconcile in seconds.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from ledger_sync.models import (
    AccountingPeriod,
    Invoice,
    Journal,
    JournalLine,
    Ledger,
    Order,
    OrderItem,
    Payment,
    PaymentConfirmation,
    ReconciliationRun,
    SyncRun,
    SyncState,
    WriteBackStep,
)
from ledger_sync.models.inbound import CallbackState
from ledger_sync.services.reconciliation_values import (
    AtlasOrderNow,
    Line,
    OurJournal,
    PeriodFacts,
)

# A journal with one of these statuses is (or was, before a reversal) in the ledger.
IN_LEDGER_STATUSES: tuple[str, ...] = (Journal.Status.POSTED, Journal.Status.REVERSED)
ITEM_ID_KEY = "atlas_order_item_id"
CHUNK = 2000


@dataclass(frozen=True)
class PeriodIndex:
    """The mirrored accounting periods of one ledger, by Gotransverse id, name and date."""

    periods: tuple[PeriodFacts, ...]

    def by_id(self, period_id: int | None) -> PeriodFacts | None:
        return next((p for p in self.periods if p.id == period_id), None)

    def by_name(self, name: str) -> PeriodFacts | None:
        return next((p for p in self.periods if p.name == name), None)

    def for_date(self, day: date | None) -> PeriodFacts | None:
        if day is None:
            return None
        return next((p for p in self.periods if p.start <= day <= p.end), None)


def reconciliation_periods(*, ledger: Ledger) -> PeriodIndex:
    rows = (
        AccountingPeriod.objects.filter(ledger=ledger)
        .exclude(sync_state=SyncState.MISSING)
        .order_by("start_date")
        .values_list("gotransverse_id", "name", "start_date", "end_date")
    )
    return PeriodIndex(
        periods=tuple(PeriodFacts(id=i, name=n, start=s, end=e) for i, n, s, e in rows)
    )


def _landed_period_id(landed: str, occurred_on: date, periods: PeriodIndex) -> int | None:
    """The period a journal landed in: the name posting recorded from the ledger's answer
    (after any roll-forward), else the period of its date. Several periods (a transaction split
    across periods) count by the first."""
    first = (landed or "").split(",")[0].strip()
    found = periods.by_name(first) if first else None
    if found is None and first.startswith("period "):
        digits = first.removeprefix("period ")
        found = periods.by_id(int(digits)) if digits.isdigit() else None
    if found is None:
        found = periods.for_date(occurred_on)
    return found.id if found else None


def reconciliation_journals(
    *, periods: PeriodIndex, posted_before: datetime
) -> tuple[list[OurJournal], set[str]]:
    """Every journal in the ledger (posted, or posted then reversed), of any kind, with its
    lines; and apart, the references of those posted at or after `posted_before` (in flight
    while the ledger was read)."""
    journals: dict[int, OurJournal] = {}
    in_flight = set(
        Journal.objects.filter(
            status__in=IN_LEDGER_STATUSES, posted_at__gte=posted_before
        ).values_list("source_transaction_reference", flat=True)
    )
    rows = (
        Journal.objects.filter(status__in=IN_LEDGER_STATUSES)
        .exclude(posted_at__gte=posted_before)
        .order_by("pk")
        .values_list(
            "pk",
            "source_transaction_reference",
            "kind",
            "status",
            "revision",
            "currency",
            "landed_period",
            "occurred_on",
            "ledger_transaction_id",
            "order_sync__order_id",
            "order_sync__order__atlas_id",
            "order_sync__revision",
        )
    )
    for (
        pk,
        reference,
        kind,
        status,
        revision,
        currency,
        landed,
        occurred_on,
        ledger_id,
        order_pk,
        order_atlas_id,
        current_revision,
    ) in rows.iterator(chunk_size=CHUNK):
        journals[pk] = OurJournal(
            pk=pk,
            reference=reference,
            kind=kind,
            currency=currency,
            period_id=_landed_period_id(landed, occurred_on, periods),
            ledger_transaction_id=ledger_id,
            lines=[],
            order_pk=order_pk,
            order_atlas_id=order_atlas_id,
            is_current_posting=(
                kind == Journal.Kind.POSTING
                and status == Journal.Status.POSTED
                and revision == current_revision
            ),
        )
    lines = (
        JournalLine.objects.filter(journal__status__in=IN_LEDGER_STATUSES)
        .exclude(journal__posted_at__gte=posted_before)
        .order_by("journal_id", "position")
        .values_list(
            "journal_id", "side", "gl_account", "amount", "currency", "billing_account_num",
            "entry_values",
        )
    )  # fmt: skip
    for journal_pk, side, account, amount, currency, billing, values in lines.iterator(
        chunk_size=CHUNK
    ):
        journal = journals.get(journal_pk)
        if journal is None:  # posted between the two reads: the next run has it
            continue
        item = (values or {}).get(ITEM_ID_KEY)
        journal.lines.append(
            Line(
                account=account,
                credit=side == JournalLine.Side.CREDIT,
                amount=amount,
                currency=currency,
                billing=billing or "",
                item_atlas_id=int(item)
                if isinstance(item, int | str) and str(item).isdigit()
                else None,
            )
        )
    return list(journals.values()), in_flight


def reference_journals_unposted() -> dict[str, int]:
    """References of journals we hold but never recorded as posted, to their pk."""
    return dict(
        Journal.objects.exclude(status__in=IN_LEDGER_STATUSES).values_list(
            "source_transaction_reference", "pk"
        )
    )


def reconciliation_orders(*, order_pks: set[int]) -> dict[int, AtlasOrderNow]:
    """ATLAS now, as the mirror holds it: each order's total and its status-2 items' gross."""
    gross: dict[int, dict[int, Decimal]] = defaultdict(dict)
    orders: dict[int, AtlasOrderNow] = {}
    wanted = sorted(order_pks)
    for start in range(0, len(wanted), CHUNK):
        chunk = wanted[start : start + CHUNK]
        items = (
            OrderItem.objects.filter(order_id__in=chunk, status=OrderItem.Status.IN_ORDER)
            .exclude(sync_state=SyncState.MISSING)
            .values_list("order_id", "atlas_id", "net_amount", "vat_amount")
        )
        for order_pk, atlas_id, net, vat in items:
            gross[order_pk][atlas_id] = net + vat
        for pk, atlas_id, total, currency, state, reference in Order.objects.filter(
            pk__in=chunk
        ).values_list(
            "pk", "atlas_id", "total_amount", "currency", "sync_state", "document_reference"
        ):
            orders[pk] = AtlasOrderNow(
                pk=pk,
                atlas_id=atlas_id,
                label=f"Order {atlas_id}" + (f" {reference}" if reference else ""),
                currency=currency,
                total_amount=None if state == SyncState.MISSING else total,
                item_gross=gross.get(pk, {}),
            )
    return orders


@dataclass(frozen=True)
class InvoicesOnTheWay:
    """Orders whose invoice ATLAS does not hold yet, by why (Order pks)."""

    # The invoice write-back is queued (not tried yet) or waits for the supplier's invoice from
    # the ERP, and none of the order's write-backs failed: ATLAS is expected to hold the invoice.
    expected: set[int]
    # A write-back of the order failed (the invoice step, or the ERP code step it comes after):
    # ATLAS will not hold the invoice until a person fixes the cause. pk -> what failed,
    # naming the order.
    failed: dict[int, str]
    # The invoice write-back is done: pk -> (the order's label, when ATLAS answered it).
    written: dict[int, tuple[str, datetime]] = field(default_factory=dict)


def orders_invoice_on_the_way(*, order_pks: set[int]) -> InvoicesOnTheWay:
    """The orders among `order_pks` whose invoice write-back to ATLAS is not done yet."""
    wanted = sorted(order_pks)
    pending: set[int] = set()
    failed: dict[int, str] = {}
    written: dict[int, tuple[str, datetime]] = {}
    for start in range(0, len(wanted), CHUNK):
        rows = WriteBackStep.objects.filter(
            order_sync__order_id__in=wanted[start : start + CHUNK],
        ).values_list(
            "order_sync__order_id",
            "order_sync__order__atlas_id",
            "order_sync__order__document_reference",
            "kind", "status", "attempts", "last_error", "done_at",
        )  # fmt: skip
        for order_pk, atlas_id, reference, kind, status, attempts, error, done_at in rows.order_by(
            "kind"
        ):
            order = f"Order {atlas_id}" + (f" {reference}" if reference else "")
            if status == WriteBackStep.Status.DONE:
                if kind == WriteBackStep.Kind.INVOICE and done_at is not None:
                    written[order_pk] = (order, done_at)
            elif status == WriteBackStep.Status.FAILED:
                failed.setdefault(
                    order_pk,
                    f"{order}: write-back {WriteBackStep.Kind(kind).label} failed after "
                    f"{attempts} attempt(s): {error or 'no error recorded'}",
                )
            elif kind == WriteBackStep.Kind.INVOICE:
                pending.add(order_pk)
    return InvoicesOnTheWay(expected=pending - set(failed), failed=failed, written=written)


def atlas_mirror_last_started() -> datetime | None:
    """When the last ATLAS mirror pass that finished began (what the mirror is as of)."""
    return (
        SyncRun.objects.filter(system=SyncRun.System.ATLAS)
        .exclude(status__in=(SyncRun.Status.RUNNING, SyncRun.Status.FAILED))
        .order_by("-started_at")
        .values_list("started_at", flat=True)
        .first()
    )


@dataclass(frozen=True)
class OrderMoney:
    """What ATLAS and we hold against one order: invoices, ATLAS payments, accepted payments."""

    invoiced: Decimal
    atlas_paid: Decimal
    accepted: list[tuple[int, Decimal]]  # (PaymentConfirmation pk, amount)


def reconciliation_order_money(*, order_pks: set[int], until: date | None) -> dict[int, OrderMoney]:
    """Per order pk: ATLAS invoices and payments (mirrored, still in ATLAS) and the payment
    confirmations we accepted (any state but rejected); payments dated up to `until` when
    given."""
    invoiced: dict[int, Decimal] = defaultdict(Decimal)
    paid: dict[int, Decimal] = defaultdict(Decimal)
    accepted: dict[int, list[tuple[int, Decimal]]] = defaultdict(list)
    wanted = sorted(order_pks)
    for start in range(0, len(wanted), CHUNK):
        chunk = wanted[start : start + CHUNK]
        invoices = Invoice.objects.filter(order_id__in=chunk).exclude(sync_state=SyncState.MISSING)
        payments = Payment.objects.filter(order_id__in=chunk).exclude(sync_state=SyncState.MISSING)
        if until is not None:
            # An invoice counts with its order (we booked the receivable when we posted it,
            # whenever ATLAS dates the invoice); a payment counts from its date.
            payments = payments.exclude(payment_date__date__gt=until)
        for order_pk, amount in invoices.values_list("order_id", "amount"):
            invoiced[order_pk] += amount
        for order_pk, amount in payments.values_list("order_id", "amount"):
            paid[order_pk] += amount
        atlas_ids = dict(Order.objects.filter(pk__in=chunk).values_list("atlas_id", "pk"))
        confirmations = PaymentConfirmation.objects.filter(
            order_atlas_id__in=list(atlas_ids)
        ).exclude(state=CallbackState.REJECTED)
        if until is not None:
            confirmations = confirmations.exclude(payment_date__gt=until)
        for pk, order_atlas_id, amount in confirmations.values_list(
            "pk", "order_atlas_id", "amount"
        ):
            accepted[atlas_ids[order_atlas_id]].append((pk, amount))
    return {
        pk: OrderMoney(
            invoiced=invoiced.get(pk, Decimal("0.00")),
            atlas_paid=paid.get(pk, Decimal("0.00")),
            accepted=accepted.get(pk, []),
        )
        for pk in order_pks
    }


def order_counterparties(*, order_pks: set[int]) -> dict[int, tuple[int | None, str]]:
    """Per order pk: (counterparty pk, counterparty name)."""
    result: dict[int, tuple[int | None, str]] = {}
    wanted = sorted(order_pks)
    for start in range(0, len(wanted), CHUNK):
        for pk, cp_pk, name in Order.objects.filter(
            pk__in=wanted[start : start + CHUNK]
        ).values_list("pk", "counterparty_id", "counterparty__name"):
            result[pk] = (cp_pk, name or "")
    return result


def reconciliation_run_last() -> ReconciliationRun | None:
    """The last finished run (for "last reconciled, N differences")."""
    return (
        ReconciliationRun.objects.filter(status=ReconciliationRun.Status.DONE)
        .order_by("-started_at", "-id")
        .first()
    )
