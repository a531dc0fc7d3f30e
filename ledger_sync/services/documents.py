"""Which document an order gets, by the direction of its open item (the document rule).

| the order's open item (its one netted control line) | self-billing counterparty | document |
|---|---|---|
| receivable (we are owed; also a credit note on receivables) | either | our invoice, INV series |
| payable (we owe) | yes | our self-billing invoice, SB series |
| payable | no | none from us: the supplier's invoice comes from the ERP (POST /api/invoices/) |
| nothing open (the order nets to 0.00) | either | none: nothing to invoice, nothing to pay |

The direction is read from the posted journal, not from ATLAS: the journal nets Active and
Passive items into one control line under the one billing account (journals.build_journal_lines),
so the document is issued for exactly the open item the AR Ledger holds. The ERP's supplier
invoice is written to ATLAS once it arrives. A mixed order is
therefore a receivable or a payable by the sign of its net, like its control line.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from ledger_sync.models import GLAccount, Journal, JournalLine, OrderSync, PostingSettings
from ledger_sync.services.account_roles import account_role_fits

__all__ = [
    "Direction",
    "OpenItem",
    "OrderDocument",
    "open_item_direction",
    "order_document_for",
    "order_open_items",
]

ZERO = Decimal("0.00")


class Direction(StrEnum):
    RECEIVABLE = "receivable"
    PAYABLE = "payable"
    NOTHING_OPEN = "nothing_open"


class OrderDocument(StrEnum):
    OUR_INVOICE = "our_invoice"
    SELF_BILLING = "self_billing"
    AWAIT_ERP = "await_erp"
    NONE = "none"


def open_item_direction(*, receivables: Decimal, payables: Decimal) -> Direction:
    """The direction of an order's open item from what its journal books (debit minus credit)
    on the receivables and on the payables accounts.

    One netted control line (the journals this code builds) is on one of them: receivables →
    RECEIVABLE whatever its sign (a credit note reduces what the customer owes, on the same
    account), payables likewise. A journal with lines on both (built before the control line
    was netted) is read by the sign of the net, as a mixed order's control line is chosen.
    """
    if receivables and not payables:
        return Direction.RECEIVABLE
    if payables and not receivables:
        return Direction.PAYABLE
    net = receivables + payables
    if net > 0:
        return Direction.RECEIVABLE
    if net < 0:
        return Direction.PAYABLE
    return Direction.NOTHING_OPEN


def order_document_for(*, direction: Direction, self_billing: bool) -> OrderDocument:
    """The document rule (see the module's table)."""
    if direction is Direction.RECEIVABLE:
        return OrderDocument.OUR_INVOICE
    if direction is Direction.PAYABLE:
        return OrderDocument.SELF_BILLING if self_billing else OrderDocument.AWAIT_ERP
    return OrderDocument.NONE


@dataclass(frozen=True)
class OpenItem:
    """What an order's current posted journal leaves open, and the document that follows."""

    direction: Direction
    amount: Decimal  # never negative
    document: OrderDocument
    journal_reference: str


def order_open_items(order_syncs: Iterable[OrderSync]) -> dict[int, OpenItem]:
    """The open item and document of each order with a posted journal (by OrderSync pk);
    an order without one is left out. Three queries whatever the number of orders.

    A control line is a line on the posting settings' receivables/payables account, or on an
    account the mirrored chart designates receivable/payable (the settings may have changed
    since the journal was posted). `order_sync.order.counterparty` gives self-billing.
    """
    by_pk = {o.pk: o for o in order_syncs}
    if not by_pk:
        return {}
    journals = {
        j.order_sync_id: j
        for j in Journal.objects.filter(
            order_sync_id__in=list(by_pk),
            kind=Journal.Kind.POSTING,
            status=Journal.Status.POSTED,
        ).order_by("order_sync_id", "revision")
    }
    lines: dict[int, list[JournalLine]] = defaultdict(list)
    for line in JournalLine.objects.filter(journal__in=list(journals.values())).only(
        "journal_id", "side", "gl_account", "amount"
    ):
        lines[line.journal_id].append(line)
    receivable_accounts, payable_accounts = _control_accounts(
        {line.gl_account for group in lines.values() for line in group}
    )
    items = {}
    for pk, journal in journals.items():
        receivables = payables = ZERO
        for line in lines[journal.pk]:
            signed = line.amount if line.side == JournalLine.Side.DEBIT else -line.amount
            if line.gl_account in receivable_accounts:
                receivables += signed
            elif line.gl_account in payable_accounts:
                payables += signed
        direction = open_item_direction(receivables=receivables, payables=payables)
        counterparty = by_pk[pk].order.counterparty
        items[pk] = OpenItem(
            direction=direction,
            amount=abs(receivables + payables),
            document=order_document_for(
                direction=direction,
                self_billing=bool(counterparty is not None and counterparty.self_billing),
            ),
            journal_reference=journal.source_transaction_reference,
        )
    return items


def _control_accounts(numbers: set[str]) -> tuple[frozenset[str], frozenset[str]]:
    row = PostingSettings.load()
    receivable = {row.receivables_account} - {""}
    payable = {row.payables_account} - {""}
    for number, kind, designation in GLAccount.objects.filter(
        number__in=numbers - receivable - payable
    ).values_list("number", "type", "designation"):
        if account_role_fits(role="receivables", account_type=kind, designation=designation):
            receivable.add(number)
        elif account_role_fits(role="payables", account_type=kind, designation=designation):
            payable.add(number)
    return frozenset(receivable), frozenset(payable)
