"""The double-entry rules for one ATLAS order, over plain values (no database).

`build_journal_lines` turns an order's facts into line drafts: one accounting transaction per
order, lines per item (cashflow and sign decide debit and credit), one control line per order.
`journal_lines_problems` and `vat_problems` are the checks a journal must pass before it is
stored. Pure, so they can be property-tested.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Any

from integration import wire
from ledger_sync.models import BlockedReason, Order

CENT = Decimal("0.01")


# DecimalField(max_digits=18, decimal_places=2): the largest amount a line can hold.
MAX_AMOUNT = Decimal("9999999999999999.99")


# The currencies the AR Ledger accepts (its conversion_currency enumeration in the spec).
# fmt: off
LEDGER_CURRENCIES: frozenset[str] = frozenset({
    "USD", "GBP", "EUR", "SEK", "NOK", "DKK", "CAD", "AUD", "ZAR", "NZD", "MXN", "INR",
    "JPY", "SAR", "QAR", "EGP", "AED", "BHD", "KWD", "OMR", "HKD", "CHF", "BRL", "PLN",
    "CNY", "ILS", "COP", "PEN", "RUB", "SGD", "IDR", "MYR", "KRW", "TWD", "PKR", "ARS",
    "CLP", "CRC", "CZK", "HUF", "ISK", "PHP", "RON", "THB", "TRY", "BWP", "NGN",
})


# fmt: on
# entry_values keys carrying the ATLAS references; they win over a custom field mapped to the
# same key, because reconciliation relies on them.
ENTRY_ORDER_ID = "atlas_order_id"


ENTRY_ITEM_ID = "atlas_order_item_id"


ENTRY_DEAL_ID = "atlas_deal_id"


RESERVED_ENTRY_KEYS: frozenset[str] = frozenset({ENTRY_ORDER_ID, ENTRY_ITEM_ID, ENTRY_DEAL_ID})


# A block that the next cycle re-evaluates by itself. A remote rejection is not retried
# automatically (it would be re-sent every cycle); a person presses "rebuild".
MANUAL_ONLY_REASONS: frozenset[str] = frozenset(
    {BlockedReason.REMOTE_REJECTION, BlockedReason.REJECTED_IN_REVIEW}
)


def source_transaction_reference(*, atlas_order_id: int, revision: int) -> str:
    """The reference of a posting journal: stable for an order and revision, chosen before any
    remote call and reused on every retry (a reversal appends "-REV")."""
    return f"ATLAS-ORDER-{atlas_order_id}-R{revision}"


class Cashflow:
    ACTIVE = 0  # amounts we receive: positive in ATLAS
    PASSIVE = 1  # amounts we pay: negative in ATLAS


class Side(StrEnum):
    DEBIT = "debit"
    CREDIT = "credit"

    @property
    def opposite(self) -> Side:
        return Side.CREDIT if self is Side.DEBIT else Side.DEBIT


class LineRole(StrEnum):
    RECEIVABLES = "receivables"
    REVENUE = "revenue"
    OUTPUT_VAT = "output_vat"
    EXPENSE = "expense"
    INPUT_VAT = "input_vat"
    PAYABLES = "payables"
    BANK = "bank"  # settlement transactions only (services/settlements.py)


CONTROL_ROLES: frozenset[LineRole] = frozenset(
    {LineRole.RECEIVABLES, LineRole.PAYABLES, LineRole.OUTPUT_VAT, LineRole.INPUT_VAT}
)


# The posting-settings field of each control role.
CONTROL_ROLE_FIELDS: dict[LineRole, str] = {
    LineRole.RECEIVABLES: "receivables_account",
    LineRole.PAYABLES: "payables_account",
    LineRole.OUTPUT_VAT: "output_vat_account",
    LineRole.INPUT_VAT: "input_vat_account",
}


ROLE_WORDS: dict[LineRole, str] = {
    LineRole.RECEIVABLES: "receivable",
    LineRole.REVENUE: "revenue",
    LineRole.OUTPUT_VAT: "output VAT",
    LineRole.EXPENSE: "expense",
    LineRole.INPUT_VAT: "input VAT",
    LineRole.PAYABLES: "payable",
    LineRole.BANK: "bank",
}


@dataclass(frozen=True)
class OrderFacts:
    atlas_id: int
    currency: str
    registration_date: date
    total_amount: Decimal
    document_reference: str = ""
    period_from: date | None = None
    period_to: date | None = None


@dataclass(frozen=True)
class ItemFacts:
    """One order item in status 2. Amounts carry ATLAS's sign (Active +, Passive -)."""

    atlas_id: int
    cashflow: int
    net_amount: Decimal
    vat_amount: Decimal
    description: str = ""
    deal_id: int | None = None
    gl_account: str = ""
    vat_rate: Decimal | None = None
    period_from: date | None = None
    period_to: date | None = None
    pk: int | None = None  # the mirrored OrderItem's pk, for JournalLine.order_item

    @property
    def gross_amount(self) -> Decimal:
        return self.net_amount + self.vat_amount


@dataclass(frozen=True)
class CounterpartyFacts:
    atlas_id: int
    name: str = ""
    gl_account: str = ""


@dataclass(frozen=True)
class ControlAccounts:
    """The posting settings' accounts: the control accounts, and the default revenue and
    expense accounts ("" when not set) for items nothing else gives an account of their role."""

    receivables: str
    payables: str
    output_vat: str
    input_vat: str
    default_revenue: str = ""
    default_expense: str = ""

    def for_role(self, role: LineRole) -> str:
        return {
            LineRole.RECEIVABLES: self.receivables,
            LineRole.PAYABLES: self.payables,
            LineRole.OUTPUT_VAT: self.output_vat,
            LineRole.INPUT_VAT: self.input_vat,
            LineRole.REVENUE: self.default_revenue,
            LineRole.EXPENSE: self.default_expense,
        }[role]


# Whether GL account `number` may carry a line of `role` (the chart's type/designation); the
# pure builder gets it from the caller, so that it needs no database.
AccountFits = Callable[[str, "LineRole"], bool]


def _any_account_fits(number: str, role: LineRole) -> bool:
    return True


@dataclass(frozen=True)
class LineDraft:
    role: LineRole
    side: Side
    gl_account: str
    amount: Decimal  # never negative: the side carries the direction
    currency: str
    billing_account_num: str
    description: str
    entry_values: dict[str, Any]
    occurred_on: date
    event_date: date
    item_atlas_id: int | None = None
    item_pk: int | None = None
    correction: bool = False

    @property
    def signed_amount(self) -> Decimal:
        """Debit positive, credit negative."""
        return self.amount if self.side is Side.DEBIT else -self.amount

    def fingerprint(self) -> tuple[Any, ...]:
        return (
            str(self.side),
            self.gl_account,
            self.amount,
            self.currency,
            self.billing_account_num,
            self.description,
            wire.canonical(self.entry_values),
            self.item_atlas_id,
        )


def item_role(item: ItemFacts) -> LineRole:
    """The role of an item's own line: revenue for Active, expense for Passive."""
    return LineRole.REVENUE if item.cashflow == Cashflow.ACTIVE else LineRole.EXPENSE


def item_gl_account(
    *,
    item: ItemFacts,
    counterparty: CounterpartyFacts,
    defaults: ControlAccounts | None = None,
    fits: AccountFits = _any_account_fits,
) -> str:
    """The GL account of an item's revenue/expense line ("" when there is none).

    1. The item's own glAccount wins (ATLAS guide, 4.1) — and is validated for its role, never
       replaced: a person chose it in ATLAS, and booking elsewhere would hide that mistake.
    2. The counterparty's glAccount, only when it is of the item's role: a customer's revenue
       account must not receive the expense of a Passive item of the same counterparty.
    3. The posting settings' default revenue/expense account for the item's role.
    Otherwise "" (validation blocks, naming the counterparty's account and the fix).
    """
    own = (item.gl_account or "").strip()
    if own:
        return own
    role = item_role(item)
    fallback = (counterparty.gl_account or "").strip()
    if fallback and fits(fallback, role):
        return fallback
    if defaults is not None:
        return (defaults.for_role(role) or "").strip()
    return ""


def _date_text(value: date | None) -> str:
    return f"{value:%Y-%m-%d}" if value else ""


def _describe(*, order: OrderFacts, item: ItemFacts, role: LineRole, correction: bool) -> str:
    reference = order.document_reference or f"ATLAS order {order.atlas_id}"
    what = (item.description or "").strip() or f"item {item.atlas_id}"
    start = _date_text(item.period_from or order.period_from)
    end = _date_text(item.period_to or order.period_to)
    period = f"{start} to {end}" if start and end and start != end else start or end
    role_text = ROLE_WORDS[role]
    if role in (LineRole.OUTPUT_VAT, LineRole.INPUT_VAT) and item.vat_rate is not None:
        role_text += f" {item.vat_rate.normalize():f}%"
    if correction:
        role_text += " (correction)"
    parts = [reference, what, period, role_text] if period else [reference, what, role_text]
    text = " · ".join(parts)
    return text if len(text) <= 255 else text[:254] + "…"


def _describe_control(*, order: OrderFacts, role: LineRole, correction: bool) -> str:
    reference = order.document_reference or f"ATLAS order {order.atlas_id}"
    start, end = _date_text(order.period_from), _date_text(order.period_to)
    period = f"{start} to {end}" if start and end and start != end else start or end
    role_text = ROLE_WORDS[role] + (" (correction)" if correction else "")
    parts = [reference, period, role_text] if period else [reference, role_text]
    text = " · ".join(parts)
    return text if len(text) <= 255 else text[:254] + "…"


def _item_amounts(
    *, item: ItemFacts, gl_account: str, control: ControlAccounts
) -> list[tuple[LineRole, str, Side, Decimal]]:
    """(role, GL account, normal side, amount in the normal direction) of an item's own lines:
    revenue/expense and VAT. The control line is the order's (see build_journal_lines).

    "Amount in the normal direction" is positive for a regular item and negative for a
    correction, whose side then swaps.
    """
    net, vat = item.net_amount, item.vat_amount
    if item.cashflow == Cashflow.ACTIVE:
        return [
            (LineRole.REVENUE, gl_account, Side.CREDIT, net),
            (LineRole.OUTPUT_VAT, control.output_vat, Side.CREDIT, vat),
        ]
    if item.cashflow == Cashflow.PASSIVE:
        # Passive amounts are negative in ATLAS: a regular item's -net is what we owe.
        return [
            (LineRole.EXPENSE, gl_account, Side.DEBIT, -net),
            (LineRole.INPUT_VAT, control.input_vat, Side.DEBIT, -vat),
        ]
    raise ValueError(f"item {item.atlas_id}: cashflow {item.cashflow!r} is neither 0 nor 1")


def order_control_role(*, items: Sequence[ItemFacts], net_gross: Decimal) -> LineRole:
    """The control account of an order's one open item.

    - only Active items: receivables — also when the net is negative (a credit note to the
      customer reduces what they owe, on the same account);
    - only Passive items: payables, likewise for a supplier's credit note;
    - a mixed order: receivables when its signed gross total is 0 or more (we are owed, net),
      payables when it is negative (we owe, net).
    The control line's side follows the sign (debit when ≥ 0, credit when negative).

    Why one line, netted: the order gets one document for its net amount (ATLAS's totalAmount),
    so the open item in the ledger must be that same amount under the one billing account — a
    mixed order booking its Active items to receivables and its Passive items to payables would
    leave two open items that no single invoice or payment clears.
    """
    cashflows = {item.cashflow for item in items}
    if cashflows == {Cashflow.ACTIVE}:
        return LineRole.RECEIVABLES
    if cashflows == {Cashflow.PASSIVE}:
        return LineRole.PAYABLES
    return LineRole.RECEIVABLES if net_gross >= 0 else LineRole.PAYABLES


def build_journal_lines(
    *,
    order: OrderFacts,
    items: Sequence[ItemFacts],
    counterparty: CounterpartyFacts,
    mapping_code: str,
    control_accounts: ControlAccounts,
    custom_field_values: Mapping[str, Any],
    zero_amount_entries: bool,
    account_fits: AccountFits = _any_account_fits,
) -> list[LineDraft]:
    """The lines of the one accounting transaction of `order`.

    Per item (bookable items only, in ATLAS id order):
    - cashflow 0 (Active): credit the item's revenue account with the net, credit output VAT
      with the VAT;
    - cashflow 1 (Passive): debit the item's expense account with the net, debit input VAT
      with the VAT;
    - each amount whose sign is opposite to its cashflow's (a correction) swaps its side.
    Then one control line for the order: the signed gross total of its items, debited when 0 or
    more and credited when negative, on receivables or payables (order_control_role). It is
    first for receivables, last for payables (so a one-item order reads as before: receivables,
    revenue, VAT / expense, VAT, payables). The transaction balances because the control line is
    the sum of the others. Zero amounts are dropped unless `zero_amount_entries` (the ledger's
    create_zero_amount_entries). The item account comes from item_gl_account (`account_fits`
    judges the counterparty's fallback); an item left without one gets a line with an empty
    account, which validation blocks.
    """
    item_lines: list[LineDraft] = []
    occurred_on = order.registration_date
    custom = {k: v for k, v in custom_field_values.items() if k not in RESERVED_ENTRY_KEYS}
    for item in sorted(items, key=lambda i: i.atlas_id):
        gl_account = item_gl_account(
            item=item, counterparty=counterparty, defaults=control_accounts, fits=account_fits
        )
        references: dict[str, Any] = {ENTRY_ORDER_ID: order.atlas_id, ENTRY_ITEM_ID: item.atlas_id}
        if item.deal_id is not None:
            references[ENTRY_DEAL_ID] = item.deal_id
        entry_values = {**custom, **references}
        for role, account, normal_side, amount in _item_amounts(
            item=item, gl_account=gl_account, control=control_accounts
        ):
            if amount == 0 and not zero_amount_entries:
                continue
            correction = amount < 0
            item_lines.append(
                LineDraft(
                    role=role,
                    side=normal_side.opposite if correction else normal_side,
                    gl_account=(account or "").strip(),
                    amount=-amount if correction else amount,
                    currency=order.currency,
                    billing_account_num=mapping_code,
                    description=_describe(order=order, item=item, role=role, correction=correction),
                    entry_values=dict(entry_values),
                    occurred_on=occurred_on,
                    event_date=occurred_on,
                    item_atlas_id=item.atlas_id,
                    item_pk=item.pk,
                    correction=correction,
                )
            )
    net_gross = sum((item.gross_amount for item in items), Decimal("0.00"))
    if net_gross == 0 and not zero_amount_entries:
        return item_lines
    role = order_control_role(items=items, net_gross=net_gross)
    correction = (net_gross < 0) == (role is LineRole.RECEIVABLES)
    only = items[0] if len(items) == 1 else None
    if only is not None:
        # One item: the open item is that item's, and says so (description and references).
        description = _describe(order=order, item=only, role=role, correction=correction)
        control_values = {**custom, ENTRY_ORDER_ID: order.atlas_id, ENTRY_ITEM_ID: only.atlas_id}
        if only.deal_id is not None:
            control_values[ENTRY_DEAL_ID] = only.deal_id
    else:
        description = _describe_control(order=order, role=role, correction=correction)
        control_values = {**custom, ENTRY_ORDER_ID: order.atlas_id}
    control = LineDraft(
        role=role,
        side=Side.DEBIT if net_gross >= 0 else Side.CREDIT,
        gl_account=(control_accounts.for_role(role) or "").strip(),
        amount=abs(net_gross),
        currency=order.currency,
        billing_account_num=mapping_code,
        description=description,
        entry_values=control_values,
        occurred_on=occurred_on,
        event_date=occurred_on,
        item_atlas_id=only.atlas_id if only is not None else None,
        item_pk=only.pk if only is not None else None,
        correction=correction,
    )
    return [control, *item_lines] if role is LineRole.RECEIVABLES else [*item_lines, control]


def lines_totals(lines: Iterable[LineDraft]) -> tuple[Decimal, Decimal]:
    """(total debit, total credit)."""
    debit = credit = Decimal("0.00")
    for line in lines:
        if line.side is Side.DEBIT:
            debit += line.amount
        else:
            credit += line.amount
    return debit, credit


def control_balance(lines: Iterable[LineDraft]) -> Decimal:
    """Receivables minus payables as the lines book them (debit - credit on those accounts):
    equals the order's signed gross total for a correct journal."""
    return sum(
        (
            line.signed_amount
            for line in lines
            if line.role in (LineRole.RECEIVABLES, LineRole.PAYABLES)
        ),
        Decimal("0.00"),
    )


@dataclass(frozen=True)
class JournalProblem:
    """Why an order cannot be journalled: the reason, a sentence for a person, where to fix it."""

    reason: str
    message: str
    fix_url: str = ""


def _money(amount: Decimal, currency: str) -> str:
    return f"{amount:,.2f} {currency}".strip()


# Order-history notes and messages are read by accountants: ATLAS's item statuses by their names
# (0 Calculated, 1 Edited, 2 In order), never their numbers or the wire's field names.
ALL_IN_ORDER = "every item In order"


def items_counted(count: int) -> str:
    return f"{count:,} item" if count == 1 else f"{count:,} items"


def waiting_note(item_ids: Sequence[int]) -> str:
    listed = ", ".join(str(item_id) for item_id in item_ids)
    return f"waiting for ATLAS items {listed}: still Calculated or Edited, not yet In order"


def selected_note(order: Order) -> str:
    return f"selected (ATLAS status “{order.status}”, no ERP document code yet)"


def _has_cents_only(amount: Decimal) -> bool:
    return amount.is_finite() and amount == amount.quantize(CENT)


def journal_lines_problems(
    *, order: OrderFacts, items: Sequence[ItemFacts], lines: Sequence[LineDraft]
) -> list[JournalProblem]:
    """The checks that need nothing but the values: amounts, currency, totals, balance.

    Every journal with no problem here balances to the cent and books receivables minus
    payables equal to the order's signed gross total (tests/…/test_journal_properties.py).
    """
    problems: list[JournalProblem] = []
    reference = order.document_reference or f"ATLAS order {order.atlas_id}"
    for item in items:
        for name, amount in (("netAmount", item.net_amount), ("vatAmount", item.vat_amount)):
            if not _has_cents_only(amount) or abs(amount) > MAX_AMOUNT:
                problems.append(
                    JournalProblem(
                        BlockedReason.INVALID_RECORD,
                        f"Item {item.atlas_id} of order {reference} has {name} {amount}, which "
                        "is not an amount in cents a journal can carry; correct it in ATLAS.",
                    )
                )
    if not _has_cents_only(order.total_amount):
        problems.append(
            JournalProblem(
                BlockedReason.INVALID_RECORD,
                f"Order {reference} has totalAmount {order.total_amount}, which is not an "
                "amount in cents; correct it in ATLAS.",
            )
        )
    currency = order.currency or ""
    if currency not in LEDGER_CURRENCIES:
        problems.append(
            JournalProblem(
                BlockedReason.CURRENCY_MISMATCH,
                f"Order {reference} is in currency {currency or '(none)'!r}, which is not an ISO "
                "4217 code the AR Ledger accepts; correct the order's currency in ATLAS.",
            )
        )
    odd_currency = sorted({line.currency for line in lines if line.currency != currency})
    if odd_currency:
        problems.append(
            JournalProblem(
                BlockedReason.CURRENCY_MISMATCH,
                f"Order {reference} is in {currency} but lines are in {', '.join(odd_currency)}.",
            )
        )
    items_gross = sum((item.gross_amount for item in items), Decimal("0.00"))
    if items_gross != order.total_amount:
        problems.append(
            JournalProblem(
                BlockedReason.TOTALS_DISAGREE,
                f"Order {reference} has totalAmount {_money(order.total_amount, currency)}, but "
                f"its {items_counted(len(items))} In order add up to "
                f"{_money(items_gross, currency)} (net + VAT, signed); the difference is "
                f"{_money(order.total_amount - items_gross, currency)}. Correct the order or "
                "its items in ATLAS; the next sync and rebuild pick it up.",
            )
        )
    problems.extend(vat_problems(order=order, items=items))
    debit, credit = lines_totals(lines)
    if debit != credit:
        problems.append(
            JournalProblem(
                BlockedReason.UNBALANCED,
                f"The journal of order {reference} does not balance: debits "
                f"{_money(debit, currency)}, credits {_money(credit, currency)} (difference "
                f"{_money(debit - credit, currency)}).",
            )
        )
    elif any(line.amount > MAX_AMOUNT for line in lines):
        problems.append(
            JournalProblem(
                BlockedReason.INVALID_RECORD,
                f"A line of order {reference} exceeds {_money(MAX_AMOUNT, currency)}.",
            )
        )
    return problems


def vat_expected(item: ItemFacts) -> Decimal | None:
    """netAmount x vatRate / 100, exact (not rounded); None when the item has no rate."""
    if item.vat_rate is None:
        return None
    return item.net_amount * item.vat_rate / Decimal(100)


def vat_problems(*, order: OrderFacts, items: Sequence[ItemFacts]) -> list[JournalProblem]:
    """Items whose vatAmount differs from netAmount x vatRate by more than one cent (rounding
    of the product is allowed for; anything more is a wrong VAT booked to the tax accounts)."""
    problems = []
    reference = order.document_reference or f"ATLAS order {order.atlas_id}"
    for item in sorted(items, key=lambda i: i.atlas_id):
        expected = vat_expected(item)
        if expected is None or abs(item.vat_amount - expected) <= CENT:
            continue
        assert item.vat_rate is not None
        problems.append(
            JournalProblem(
                BlockedReason.VAT_MISMATCH,
                f"Item {item.atlas_id} of order {reference} has vatAmount "
                f"{_money(item.vat_amount, order.currency)}, but netAmount "
                f"{_money(item.net_amount, order.currency)} x vatRate "
                f"{item.vat_rate.normalize():f}% is {_money(expected, order.currency)} "
                f"(difference {_money(item.vat_amount - expected, order.currency)}); correct "
                "the item's VAT amount or rate in ATLAS.",
            )
        )
    return problems


__all__ = [
    "CENT",
    "CONTROL_ROLES",
    "CONTROL_ROLE_FIELDS",
    "ENTRY_DEAL_ID",
    "ENTRY_ITEM_ID",
    "ENTRY_ORDER_ID",
    "LEDGER_CURRENCIES",
    "MANUAL_ONLY_REASONS",
    "MAX_AMOUNT",
    "RESERVED_ENTRY_KEYS",
    "AccountFits",
    "Cashflow",
    "ControlAccounts",
    "CounterpartyFacts",
    "ItemFacts",
    "JournalProblem",
    "LineDraft",
    "LineRole",
    "OrderFacts",
    "Side",
    "build_journal_lines",
    "control_balance",
    "item_gl_account",
    "item_role",
    "journal_lines_problems",
    "lines_totals",
    "order_control_role",
    "source_transaction_reference",
    "vat_expected",
    "vat_problems",
]
