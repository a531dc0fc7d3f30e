"""Planning one payment's settlement transaction, without writing anything: from the order's
posted journal and the posting settings, the lines that clear what the journal booked (Dr bank /
Cr receivables for a receivable, Dr payables / Cr bank for a payable), or the reason it waits or
is blocked. services/settlements.py stores and sends what is planned here."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from django.conf import settings

from ledger_sync.models import (
    ClosedPeriodPolicy,
    Invoice,
    IssuedInvoice,
    Journal,
    JournalLine,
    Ledger,
    OrderState,
    OrderSync,
    PaymentConfirmation,
    PostingSettings,
    SyncState,
)
from ledger_sync.selectors.reference import gl_account_check, period_landing
from ledger_sync.services.account_roles import account_role_problem

SETTLEMENT_REFERENCE_PREFIX = "ATLAS-PAYMENT-"


INVOICE_NUMBER_KEY = "invoice_number"


PAYMENT_KEY = "payment_external_id"


ORDER_KEY = "atlas_order_id"


def settlement_reference(confirmation_pk: int) -> str:
    return f"{SETTLEMENT_REFERENCE_PREFIX}{confirmation_pk}"


@dataclass
class SettlementPlan:
    """What the settlement of one payment books, or why it cannot be booked now.

    `not_ours`: no journal of ours to settle (the order is not in our pipeline); `waiting`: the
    order's journal is not posted yet; `problem`: a person must fix something (blocked).
    """

    order_sync: OrderSync | None = None
    order_journal: Journal | None = None
    receivable: bool = True
    control_account: str = ""
    bank_account: str = ""
    billing_account_num: str = ""
    invoice_number: str = ""
    landed_period: str = ""
    not_ours: str = ""
    waiting: str = ""
    problem: str = ""
    lines: list[tuple[str, str]] = field(default_factory=list)  # (side, GL account)


def _order_posted_journal(order_sync: OrderSync) -> Journal | None:
    """The order's journal that is in the ledger now (its latest posted revision)."""
    return (
        Journal.objects.filter(
            order_sync=order_sync, kind=Journal.Kind.POSTING, status=Journal.Status.POSTED
        )
        .order_by("-revision")
        .prefetch_related("lines")
        .first()
    )


def _invoice_number(confirmation: PaymentConfirmation) -> str:
    """The invoice's number as printed (ours, else ATLAS's), else how the caller named it."""
    if confirmation.invoice_external_id:
        issued = IssuedInvoice.objects.filter(external_id=confirmation.invoice_external_id).first()
        if issued is not None:
            return issued.number
    mirrored = Invoice.objects.exclude(sync_state=SyncState.MISSING)
    if confirmation.invoice_atlas_id:
        mirrored = mirrored.filter(atlas_id=confirmation.invoice_atlas_id)
    else:
        mirrored = mirrored.filter(external_id=confirmation.invoice_external_id)
    found = mirrored.order_by("atlas_id").first()
    if found is not None and found.invoice_number:
        return found.invoice_number
    return confirmation.invoice_external_id or confirmation.invoice_reference


def payment_settlement_plan(*, confirmation: PaymentConfirmation) -> SettlementPlan:
    """Accounts, billing account, invoice number and period of the payment's settlement, read
    from the order's posted journal and the posting settings (no remote call)."""
    plan = SettlementPlan()
    order_sync = (
        OrderSync.objects.select_related("order")
        .filter(order__atlas_id=confirmation.order_atlas_id)
        .first()
        if confirmation.order_atlas_id is not None
        else None
    )
    if order_sync is None or order_sync.state == OrderState.PROCESSED_ELSEWHERE:
        order = (
            f"ATLAS order {confirmation.order_atlas_id}"
            if confirmation.order_atlas_id is not None
            else "The order"
        )
        plan.not_ours = (
            f"{order} of invoice {confirmation.invoice_reference} has no journal of "
            "ledger_sync (processed elsewhere or never selected): its receivable or payable is "
            "not in the AR Ledger through us, so there is nothing to settle."
        )
        return plan
    plan.order_sync = order_sync
    order_journal = _order_posted_journal(order_sync)
    if order_journal is None:
        plan.waiting = (
            f"Waiting for order {order_sync.order.atlas_id}'s journal to be posted (order state: "
            f"{order_sync.get_state_display()}); the settlement is posted once it is."
        )
        return plan
    plan.order_journal = order_journal
    reference = order_journal.source_transaction_reference
    posting = PostingSettings.load()
    control = {
        (posting.receivables_account or "").strip(),
        (posting.payables_account or "").strip(),
    } - {""}
    control_lines = [line for line in order_journal.lines.all() if line.gl_account in control]
    if order_journal.currency != confirmation.currency:
        plan.problem = (
            f"Payment {confirmation.external_id} is in {confirmation.currency} but journal "
            f"{reference} is in {order_journal.currency}; a settlement is booked in the "
            "currency of what it settles."
        )
        return plan
    balance = sum(
        (line.amount if line.side == JournalLine.Side.DEBIT else -line.amount)
        for line in control_lines
    )
    if not control_lines or balance == 0:
        plan.problem = (
            f"Journal {reference} has no open receivable or payable on the control accounts "
            f"({', '.join(sorted(control)) or 'none set'}) of the posting settings, so payment "
            f"{confirmation.external_id} has nothing to settle; check the posting settings."
        )
        return plan
    plan.receivable = balance > 0
    # The line that booked the open item: its account and billing account are cleared.
    open_side = JournalLine.Side.DEBIT if plan.receivable else JournalLine.Side.CREDIT
    booked = next(line for line in control_lines if line.side == open_side)
    plan.control_account = booked.gl_account
    plan.billing_account_num = booked.billing_account_num
    plan.bank_account = (posting.bank_account or "").strip()
    bank, bank_problem = gl_account_check(plan.bank_account)
    if bank is not None and bank_problem is None:
        bank_problem = account_role_problem(role="bank", account=bank)
    if not plan.bank_account or bank_problem:
        plan.problem = (
            f"Bank account of the posting settings: {bank_problem} Set a bank account in the "
            "posting settings, then retry the settlement."
        )
        return plan
    plan.invoice_number = _invoice_number(confirmation)
    plan.lines = (
        [(JournalLine.Side.DEBIT, plan.bank_account), (JournalLine.Side.CREDIT, booked.gl_account)]
        if plan.receivable
        else [
            (JournalLine.Side.DEBIT, booked.gl_account),
            (JournalLine.Side.CREDIT, plan.bank_account),
        ]
    )
    plan.problem, plan.landed_period = _period_problem(
        confirmation.payment_date, policy=posting.closed_period_policy, what=confirmation
    )
    return plan


def _period_problem(on: date, *, policy: str, what: PaymentConfirmation) -> tuple[str, str]:
    """(why the payment date cannot be posted, "" when it can; the period it lands in)."""
    ledger = Ledger.objects.filter(gotransverse_id=_int(settings.GOTRANSVERSE_LEDGER_ID)).first()
    if ledger is None:
        return (
            f"AR Ledger {settings.GOTRANSVERSE_LEDGER_ID} (GOTRANSVERSE_LEDGER_ID) is not in the "
            "mirror, so no accounting period is known; sync the Gotransverse reference data.",
            "",
        )
    landing = period_landing(ledger=ledger, on=on)
    if landing.landing is None:
        return f"Payment {what.external_id}: {landing.problem}", ""
    if landing.rolled_forward and policy != ClosedPeriodPolicy.ROLL_FORWARD:
        assert landing.period is not None
        return (
            f"Payment {what.external_id} is dated {on:%Y-%m-%d}, in the closed accounting period "
            f"{landing.period.name}. Reopen the period in Gotransverse (then sync), or set the "
            "closed-period policy to roll forward in the posting settings so it is posted into "
            f"{landing.landing.name}; then retry the settlement.",
            "",
        )
    return "", landing.landing.name


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


__all__ = [
    "INVOICE_NUMBER_KEY",
    "ORDER_KEY",
    "PAYMENT_KEY",
    "SETTLEMENT_REFERENCE_PREFIX",
    "SettlementPlan",
    "payment_settlement_plan",
    "settlement_reference",
]
