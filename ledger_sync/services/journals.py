"""From ATLAS orders to validated journals: selection, the pure builder, validation, blocking.

Three stages, each safe to re-run:

1. `orders_select_candidates` — which mirrored orders are candidates (trigger status, erpCode
   null), which wait for items still under review (status 0/1), which arrived already processed
   elsewhere (erpCode set). It creates and moves OrderSync rows; a second run changes nothing.
2. `build_journal_lines` — the pure double-entry rules over plain values (no database), so they
   can be property-tested: one accounting transaction per order, lines per item.
3. `order_build_journal` / `orders_build_ready` — validate everything the AR Ledger would need
   (chart of accounts, control accounts, mapping, open period, totals, balance), then store the
   Journal and its lines with their `source_transaction_reference` — or block the order with a
   reason a person understands and the admin page that fixes it. Nothing is sent from here;
   posting (services/posting.py) only ever sends what was stored here.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Prefetch, Q
from django.utils import timezone

from integration import wire
from ledger_sync.errors import ApplicationError, InvalidTransition
from ledger_sync.models import (
    BlockedReason,
    ClosedPeriodPolicy,
    Counterparty,
    CustomFieldMapping,
    GLAccount,
    Journal,
    JournalLine,
    Ledger,
    Order,
    OrderItem,
    OrderState,
    OrderSync,
    OrderTransition,
    PostingSettings,
    SyncState,
)
from ledger_sync.selectors.reference import PeriodLanding, gl_account_check, period_landing
from ledger_sync.services.account_roles import account_role_problem
from ledger_sync.services.admin_links import (
    fix_url_counterparty,
    fix_url_counterparty_matching,
    fix_url_gl_account,
    fix_url_order,
    fix_url_periods,
    fix_url_posting_settings,
)
from ledger_sync.services.order_states import (
    BUILDABLE_STATES,
    PRE_SEND_STATES,
    order_syncs_move_bulk,
    order_transition_apply,
    order_transitions_record,
)

logger = logging.getLogger(__name__)

S = OrderState
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


# --------------------------------------------------------------------------------------------
# The pure builder: plain values in, line drafts out. No database.
# --------------------------------------------------------------------------------------------


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
_ROLE_WORDS: dict[LineRole, str] = {
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
    role_text = _ROLE_WORDS[role]
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
    role_text = _ROLE_WORDS[role] + (" (correction)" if correction else "")
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
                f"its {len(items)} item(s) in status 2 add up to "
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


# --------------------------------------------------------------------------------------------
# Building with the database: context loaded once per batch, a plan per order.
# --------------------------------------------------------------------------------------------


class BuildContext:
    """What every order of a batch is validated against, loaded once: posting settings, the
    ledger, the custom-field mappings; GL account checks and period landings are cached."""

    def __init__(self) -> None:
        self.posting_settings = PostingSettings.load()
        self.ledger = Ledger.objects.filter(
            gotransverse_id=_int_or_none(settings.GOTRANSVERSE_LEDGER_ID)
        ).first()
        self.custom_field_keys: dict[int, str] = dict(
            CustomFieldMapping.objects.filter(ignored=False)
            .exclude(target_key="")
            .values_list("definition_id", "target_key")
        )
        # Orders whose BUILT journal the poster looked up and did not find in the ledger: safe
        # to supersede although an attempt to send it was interrupted.
        self.confirmed_not_in_ledger: set[int] = set()
        self._gl_checks: dict[str, tuple[GLAccount | None, str | None]] = {}
        self._landings: dict[date, PeriodLanding] = {}

    @property
    def control_accounts(self) -> ControlAccounts:
        s = self.posting_settings
        return ControlAccounts(
            receivables=(s.receivables_account or "").strip(),
            payables=(s.payables_account or "").strip(),
            output_vat=(s.output_vat_account or "").strip(),
            input_vat=(s.input_vat_account or "").strip(),
            default_revenue=(s.default_revenue_account or "").strip(),
            default_expense=(s.default_expense_account or "").strip(),
        )

    def account_fits(self, number: str, role: LineRole) -> bool:
        """Whether `number` is a usable account of the chart with the type/designation of
        `role` (the builder's fallback test for a counterparty's account)."""
        account, problem = self.gl_check(number)
        return (
            account is not None
            and problem is None
            and account_role_problem(role=role, account=account) is None
        )

    @property
    def zero_amount_entries(self) -> bool:
        return bool(self.ledger and self.ledger.create_zero_amount_entries)

    def gl_check(self, number: str) -> tuple[GLAccount | None, str | None]:
        if number not in self._gl_checks:
            self._gl_checks[number] = gl_account_check(number)
        return self._gl_checks[number]

    def landing(self, on: date) -> PeriodLanding:
        assert self.ledger is not None
        if on not in self._landings:
            self._landings[on] = period_landing(ledger=self.ledger, on=on)
        return self._landings[on]


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _as_date(value: datetime | date | None) -> date | None:
    """The calendar date of an ATLAS date. ATLAS dates carry no zone and are stored as UTC,
    so the date is taken in UTC, whatever the server's zone."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC).date() if timezone.is_aware(value) else value.date()
    return value


def order_facts(order: Order) -> OrderFacts:
    return OrderFacts(
        atlas_id=order.atlas_id,
        currency=(order.currency or "").strip().upper(),
        registration_date=_as_date(order.registration_date),
        total_amount=order.total_amount,
        document_reference=order.document_reference or "",
        period_from=_as_date(order.period_from),
        period_to=_as_date(order.period_to),
    )


def item_facts(item: OrderItem) -> ItemFacts:
    return ItemFacts(
        atlas_id=item.atlas_id,
        cashflow=item.cashflow,
        net_amount=item.net_amount,
        vat_amount=item.vat_amount,
        description=item.description or "",
        deal_id=item.deal_id,
        gl_account=item.gl_account or "",
        vat_rate=item.vat_rate,
        period_from=_as_date(item.period_from),
        period_to=_as_date(item.period_to),
        pk=item.pk,
    )


def counterparty_erp_code(counterparty: Counterparty) -> str:
    """The ERP code (the billing_account_num) of `counterparty`, or "" when it is not mapped.

    The same rule as selectors.parties.counterparty_erp_code, over the joined mapping instead of
    a query per order: ATLAS's externalId wins (CONTRACT.md: it is the stable key, and a code
    the ERP register does not know is flagged for a person but still used); otherwise the
    approved mapping's code, written back to ATLAS or not yet.
    """
    external_id = (counterparty.external_id or "").strip()
    if external_id:
        return external_id
    try:
        mapping = counterparty.erp_mapping
    except Counterparty.erp_mapping.RelatedObjectDoesNotExist:
        return ""
    return (mapping.erp_code or "").strip()


def counterparty_entry_values(counterparty: Counterparty, *, keys: Mapping[int, str]) -> dict:
    """The counterparty's custom field values under their mapped entry_values keys."""
    values: dict[str, Any] = {}
    prefetched = getattr(counterparty, "prefetched_custom_field_values", None)
    for value in prefetched if prefetched is not None else counterparty.custom_field_values.all():
        key = keys.get(value.definition_id) if value.definition_id else None
        if key:
            values[key] = value.value
    return values


@dataclass
class JournalPlan:
    """What building an order would store — or why it cannot (problem) or must wait."""

    order_sync: OrderSync
    # Every problem found, most important first (the order validation runs in).
    problems: list[JournalProblem] = field(default_factory=list)
    waiting_on: list[int] = field(default_factory=list)
    lines: list[LineDraft] = field(default_factory=list)
    facts: OrderFacts | None = None
    landed_period: str = ""

    @property
    def problem(self) -> JournalProblem | None:
        """The first problem: the order's blocked_reason (for filtering)."""
        return self.problems[0] if self.problems else None

    def problems_json(self) -> list[dict[str, str]]:
        return [
            {"reason": str(p.reason), "message": p.message, "fix_url": p.fix_url}
            for p in self.problems
        ]

    @property
    def fingerprint(self) -> tuple[Any, ...]:
        assert self.facts is not None
        return (
            self.facts.currency,
            self.facts.registration_date,
            tuple(line.fingerprint() for line in self.lines),
        )


def _live_items(order: Order) -> list[OrderItem]:
    prefetched = getattr(order, "prefetched_items", None)
    items = prefetched if prefetched is not None else order.items.all()
    return [item for item in items if item.sync_state != SyncState.MISSING]


def _gl_problem(
    *, number: str, line: LineDraft, ctx: BuildContext, item_id: Any
) -> JournalProblem | None:
    account, problem = ctx.gl_check(number)
    where = f"Item {item_id} ({_ROLE_WORDS[line.role]})"
    if problem is None and account is not None:
        role_problem = account_role_problem(role=line.role, account=account)
        if role_problem is None:
            return None
        return JournalProblem(
            BlockedReason.WRONG_ACCOUNT_ROLE,
            f"{where}: {role_problem} Set the item's glAccount in ATLAS to an account of that "
            "role (or request a master-data correction of the counterparty's), then sync.",
            fix_url_gl_account(number),
        )
    if account is None:
        reason = BlockedReason.UNKNOWN_GL_ACCOUNT
    elif not account.is_posting_account:
        reason = BlockedReason.NON_POSTING_GL_ACCOUNT
    else:
        reason = BlockedReason.INACTIVE_GL_ACCOUNT
    return JournalProblem(reason, f"{where}: {problem}", fix_url_gl_account(number))


def _missing_item_account_problem(
    *,
    line: LineDraft,
    item: OrderItem | None,
    counterparty: Counterparty | None,
    reference: str,
    ctx: BuildContext,
) -> JournalProblem:
    """Why an item has no revenue/expense account, naming what was looked at and the fix."""
    role = line.role
    setting = "default_revenue_account" if role is LineRole.REVENUE else "default_expense_account"
    variable = (
        "LEDGER_ACCOUNT_DEFAULT_REVENUE"
        if role is LineRole.REVENUE
        else "LEDGER_ACCOUNT_DEFAULT_EXPENSE"
    )
    fallback = ((counterparty.gl_account if counterparty else "") or "").strip()
    who = (
        f"its counterparty {counterparty.name} (ATLAS {counterparty.atlas_id})"
        if counterparty is not None
        else "its counterparty"
    )
    if fallback:
        account, problem = ctx.gl_check(fallback)
        why = problem or (
            account_role_problem(role=role, account=account) if account is not None else None
        )
        return JournalProblem(
            BlockedReason.WRONG_ACCOUNT_ROLE,
            f"Item {line.item_atlas_id} of order {reference} has no GL account of its own, and "
            f"the account {fallback} of {who} cannot take its {_ROLE_WORDS[role]} line"
            f"{': ' + why if why else ''} Set glAccount on the item in ATLAS, or set the "
            f"default {_ROLE_WORDS[role]} account ({setting}, initially {variable}) in the "
            "posting settings.",
            fix_url_posting_settings(),
        )
    return JournalProblem(
        BlockedReason.MISSING_GL_ACCOUNT,
        f"Item {line.item_atlas_id} of order {reference} has no GL account, and neither has "
        f"{who}; set glAccount on the item or the counterparty in ATLAS (or request a "
        f"master-data correction), or set the default {_ROLE_WORDS[role]} account "
        f"({setting}) in the posting settings, then sync.",
        fix_url_counterparty(counterparty) if counterparty is not None else "",
    )


def journal_plan(*, order_sync: OrderSync, ctx: BuildContext) -> JournalPlan:
    """Everything that decides the journal of one order, without writing anything.

    Validation reports every problem of the order at once (plan.problems), most important
    first: a person fixes them in one go instead of meeting them one per cycle. Only what makes
    the rest meaningless stops it early: items still under review (the order waits), no item
    to book.
    """
    plan = JournalPlan(order_sync=order_sync)
    order = order_sync.order
    reference = order.document_reference or f"ATLAS order {order.atlas_id}"
    problems = plan.problems

    def add(reason: str, message: str, fix_url: str = "") -> None:
        if all(p.message != message for p in problems):
            problems.append(JournalProblem(reason, message, fix_url))

    if order.sync_state == SyncState.INVALID:
        add(
            BlockedReason.INVALID_RECORD,
            f"Order {reference} no longer reads correctly from ATLAS: {order.sync_error}",
            fix_url_order(order),
        )
    items = _live_items(order)
    plan.waiting_on = sorted(
        item.atlas_id
        for item in items
        if item.status in (OrderItem.Status.CALCULATED, OrderItem.Status.EDITED)
    )
    if plan.waiting_on:
        plan.problems = []
        return plan
    bookable = [item for item in items if item.status == OrderItem.Status.IN_ORDER]
    for item in bookable:
        if item.sync_state == SyncState.INVALID:
            add(
                BlockedReason.INVALID_RECORD,
                f"Item {item.atlas_id} of order {reference} no longer reads correctly from "
                f"ATLAS: {item.sync_error}",
                fix_url_order(order),
            )
    if not bookable:
        add(
            BlockedReason.NO_BOOKABLE_ITEMS,
            f"Order {reference} has no item in status 2 (In Order); there is nothing to book. "
            "Put its items in the order in ATLAS, or move the order out of the trigger status.",
            fix_url_order(order),
        )
        return plan
    for item in bookable:
        if item.cashflow not in (Cashflow.ACTIVE, Cashflow.PASSIVE):
            add(
                BlockedReason.INVALID_RECORD,
                f"Item {item.atlas_id} of order {reference} has cashflow {item.cashflow}; only "
                "0 (Active) and 1 (Passive) can be booked.",
                fix_url_order(order),
            )
    bookable = [i for i in bookable if i.cashflow in (Cashflow.ACTIVE, Cashflow.PASSIVE)]
    counterparty = order.counterparty
    erp_code = ""
    if counterparty is None:
        add(
            BlockedReason.UNKNOWN_COUNTERPARTY,
            f"Order {reference} belongs to ATLAS counterparty {order.counterparty_atlas_id}, "
            "which is not in the mirror; sync ATLAS (sync_atlas) so the counterparty is read.",
            fix_url_order(order),
        )
    else:
        erp_code = counterparty_erp_code(counterparty)
        if not erp_code:
            add(
                BlockedReason.UNMATCHED_COUNTERPARTY,
                f"Counterparty {counterparty.name} (ATLAS {counterparty.atlas_id}) of order "
                f"{reference} is not mapped to an ERP customer/vendor code; approve a match or "
                "create the ERP party on the counterparty matching page.",
                fix_url_counterparty_matching(counterparty),
            )
    facts = order_facts(order)
    plan.facts = facts
    if (
        ctx.ledger is not None
        and (ctx.ledger.convert_currency or "").upper() == "NONE"
        and ctx.ledger.conversion_currency
        and facts.currency != ctx.ledger.conversion_currency
    ):
        add(
            BlockedReason.CURRENCY_MISMATCH,
            f"Order {reference} is in {facts.currency}, but AR Ledger {ctx.ledger} books in "
            f"{ctx.ledger.conversion_currency} and does not convert currencies.",
            fix_url_order(order),
        )
    items_facts = [item_facts(item) for item in bookable]
    counterparty_facts = (
        CounterpartyFacts(
            atlas_id=counterparty.atlas_id,
            name=counterparty.name,
            gl_account=counterparty.gl_account or "",
        )
        if counterparty is not None
        else CounterpartyFacts(atlas_id=order.counterparty_atlas_id or 0)
    )
    lines = build_journal_lines(
        order=facts,
        items=items_facts,
        counterparty=counterparty_facts,
        mapping_code=erp_code,
        control_accounts=ctx.control_accounts,
        custom_field_values=(
            counterparty_entry_values(counterparty, keys=ctx.custom_field_keys)
            if counterparty is not None
            else {}
        ),
        zero_amount_entries=ctx.zero_amount_entries,
        account_fits=ctx.account_fits,
    )
    plan.lines = lines
    for problem in journal_lines_problems(order=facts, items=items_facts, lines=lines):
        add(problem.reason, problem.message, problem.fix_url or fix_url_order(order))
    if not lines:
        add(
            BlockedReason.NO_BOOKABLE_ITEMS,
            f"Every amount of order {reference} is zero and the AR Ledger does not create "
            "zero-amount entries; there is nothing to book.",
            fix_url_order(order),
        )
    # Control accounts first: one fix in the posting settings clears every order.
    for line in lines:
        if line.role not in CONTROL_ROLES:
            continue
        setting = CONTROL_ROLE_FIELDS[line.role]
        if not line.gl_account:
            add(
                BlockedReason.MISSING_CONTROL_ACCOUNT,
                f"The {_ROLE_WORDS[line.role]} control account is not set in the posting "
                f"settings ({setting}); order {reference} needs it.",
                fix_url_posting_settings(),
            )
            continue
        account, problem = ctx.gl_check(line.gl_account)
        if problem is None and account is not None:
            problem = account_role_problem(role=line.role, account=account)
        if problem:
            add(
                BlockedReason.MISSING_CONTROL_ACCOUNT,
                f"The {_ROLE_WORDS[line.role]} control account of the posting settings "
                f"({setting}) cannot be used: {problem}",
                fix_url_posting_settings(),
            )
    items_by_id = {item.atlas_id: item for item in bookable}
    for line in lines:
        if line.role in CONTROL_ROLES:
            continue
        if not line.gl_account:
            problem = _missing_item_account_problem(
                line=line,
                item=items_by_id.get(line.item_atlas_id),
                counterparty=counterparty,
                reference=reference,
                ctx=ctx,
            )
            add(problem.reason, problem.message, problem.fix_url)
            continue
        problem = _gl_problem(
            number=line.gl_account,
            line=line,
            ctx=ctx,
            item_id=line.item_atlas_id,
        )
        if problem:
            add(problem.reason, f"Order {reference}: {problem.message}", problem.fix_url)
    return _plan_period(plan=plan, ctx=ctx, reference=reference)


def _plan_period(*, plan: JournalPlan, ctx: BuildContext, reference: str) -> JournalPlan:
    assert plan.facts is not None
    on = plan.facts.registration_date
    if ctx.ledger is None:
        plan.problems.append(
            JournalProblem(
                BlockedReason.NO_OPEN_PERIOD,
                f"AR Ledger {settings.GOTRANSVERSE_LEDGER_ID} (GOTRANSVERSE_LEDGER_ID) is not in "
                "the mirror, so no accounting period is known; sync the Gotransverse reference "
                "data (sync_gotransverse).",
                fix_url_periods(ledger=None),
            )
        )
        return plan
    landing = ctx.landing(on)
    if landing.landing is None:
        plan.problems.append(
            JournalProblem(
                BlockedReason.NO_OPEN_PERIOD,
                f"Order {reference}: {landing.problem}",
                fix_url_periods(
                    ledger=ctx.ledger, period_pk=landing.period.pk if landing.period else None
                ),
            )
        )
        return plan
    if landing.rolled_forward:
        if ctx.posting_settings.closed_period_policy != ClosedPeriodPolicy.ROLL_FORWARD:
            assert landing.period is not None
            plan.problems.append(
                JournalProblem(
                    BlockedReason.CLOSED_PERIOD,
                    f"Order {reference} is dated {on:%Y-%m-%d}, in the closed accounting "
                    f"period {landing.period.name}. Reopen the period in Gotransverse (then "
                    "sync), or set the closed-period policy to roll forward in the posting "
                    f"settings so it is posted into {landing.landing.name}.",
                    fix_url_periods(ledger=ctx.ledger, period_pk=landing.period.pk),
                )
            )
            return plan
        plan.landed_period = landing.landing.name
        return plan
    plan.landed_period = landing.landing.name
    return plan


# --------------------------------------------------------------------------------------------
# Storing journals and moving orders.
# --------------------------------------------------------------------------------------------


def journal_fingerprint(journal: Journal) -> tuple[Any, ...]:
    """The stored journal's content in the form of JournalPlan.fingerprint."""
    prefetched = getattr(journal, "prefetched_lines", None)
    lines = sorted(
        prefetched if prefetched is not None else journal.lines.all(),
        key=lambda line: line.position,
    )
    return (
        journal.currency,
        journal.occurred_on,
        tuple(
            (
                line.side,
                line.gl_account,
                line.amount,
                line.currency,
                line.billing_account_num,
                line.description,
                wire.canonical(line.entry_values),
                (line.entry_values or {}).get(ENTRY_ITEM_ID),
            )
            for line in lines
        ),
    )


def journal_may_have_been_sent(journal: Journal) -> bool:
    """Whether the AR Ledger may hold this journal, so that it must never be superseded.

    DRAFT, POSTED and REVERSED were sent. REJECTED (refused, or its draft deleted) and
    SUPERSEDED are not in the ledger. A BUILT journal is judged by the order's history since
    it was built: its last posting attempt ended with the ledger refusing it (POSTING →
    BLOCKED) — not sent; an attempt that failed, or never ended (a crash between the ledger's
    answer and our record) — possibly sent; no attempt — not sent, unless a request or a
    ledger id was stored for it anyway.
    """
    if journal.status in (Journal.Status.REJECTED, Journal.Status.SUPERSEDED):
        return False
    if journal.status != Journal.Status.BUILT or journal.ledger_transaction_id:
        return True
    last_attempt = (
        OrderTransition.objects.filter(
            order_sync_id=journal.order_sync_id, at__gte=journal.created_at
        )
        .filter(Q(to_state__in=[S.POSTING, S.AWAITING_REVIEW]) | Q(from_state=S.POSTING))
        .order_by("-at", "-id")
        .first()
    )
    if last_attempt is None:
        return bool(journal.request_json)
    refused = last_attempt.from_state == S.POSTING and last_attempt.to_state == S.BLOCKED
    return not refused


def _posting_journals(order_sync: OrderSync) -> list[Journal]:
    prefetched = getattr(order_sync, "prefetched_posting_journals", None)
    if prefetched is not None:
        return list(prefetched)
    return list(order_sync.journals.filter(kind=Journal.Kind.POSTING))


def _current_posting_journal(order_sync: OrderSync, journals: list[Journal]) -> Journal | None:
    for journal in journals:
        if journal.kind == Journal.Kind.POSTING and journal.revision == order_sync.revision:
            return journal
    return None


class Outcome(StrEnum):
    BUILT = "built"  # a new journal (first revision, or after a rejection/reversal)
    REBUILT = "rebuilt"  # a BUILT journal superseded because the order changed
    UNCHANGED = "unchanged"  # the stored BUILT journal is still right
    BLOCKED = "blocked"
    STILL_BLOCKED = "still_blocked"  # same reason and message as before: nothing written
    WAITING = "waiting"
    KEPT_POSSIBLY_SENT = "kept_possibly_sent"
    ALREADY_SENT = "already_sent"
    SKIPPED = "skipped"  # not in a state the builder acts on (another worker moved it)


@dataclass
class _Move:
    """The state changes one order makes in a batch: steps (to_state, note) in order, and the
    fields written with the last step."""

    order_sync: OrderSync
    steps: list[tuple[str, str]] = field(default_factory=list)
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass
class _BatchWrites:
    moves: dict[int, _Move] = field(default_factory=dict)
    journals: list[tuple[Journal, JournalPlan]] = field(default_factory=list)
    superseded: list[int] = field(default_factory=list)
    outcomes: dict[int, tuple[Outcome, Journal | None]] = field(default_factory=dict)


def _load_for_build(pks: Sequence[int]) -> list[OrderSync]:
    # Lock the rows first (PostgreSQL): a worker claiming JOURNAL_BUILT orders for posting
    # skips them, and this batch sees any claim that committed before it.
    locked = list(
        OrderSync.objects.select_for_update().filter(pk__in=pks).values_list("pk", flat=True)
    )
    # Prefetched into plain lists (to_attr): a related manager per order and relation costs
    # more than the rest of the plan at 10,000 orders.
    return list(
        OrderSync.objects.filter(pk__in=locked)
        .select_related("order", "order__counterparty", "order__counterparty__erp_mapping")
        .prefetch_related(
            Prefetch(
                "order__items",
                queryset=OrderItem.objects.only(*_ITEM_FIELDS),
                to_attr="prefetched_items",
            ),
            Prefetch(
                "order__counterparty__custom_field_values",
                to_attr="prefetched_custom_field_values",
            ),
            Prefetch(
                "journals",
                queryset=Journal.objects.filter(kind=Journal.Kind.POSTING).prefetch_related(
                    Prefetch("lines", to_attr="prefetched_lines")
                ),
                to_attr="prefetched_posting_journals",
            ),
        )
        .order_by("pk")
    )


# What building reads of an item (the rest of the mirrored row is not loaded).
_ITEM_FIELDS: tuple[str, ...] = (
    "id",
    "order_id",
    "atlas_id",
    "status",
    "sync_state",
    "sync_error",
    "cashflow",
    "net_amount",
    "vat_amount",
    "vat_rate",
    "description",
    "deal_id",
    "gl_account",
    "period_from",
    "period_to",
)


def _move(
    writes: _BatchWrites,
    order_sync: OrderSync,
    to_state: str,
    *,
    actor: str,
    user: Any,
    note: str,
    **fields: Any,
) -> None:
    """Plan a state change; `_store` makes it. The order's state is left as read until then,
    so every decision of the batch is taken on what was read under the lock."""
    move = writes.moves.setdefault(order_sync.pk, _Move(order_sync=order_sync))
    move.steps.append((to_state, note))
    move.fields.update(fields)


def _apply_plan(
    *, plan: JournalPlan, ctx: BuildContext, writes: _BatchWrites, actor: str, user: Any
) -> None:
    order_sync = plan.order_sync
    pk = order_sync.pk
    if order_sync.state not in BUILDABLE_STATES:
        writes.outcomes[pk] = (Outcome.SKIPPED, None)
        return
    if plan.waiting_on or plan.problem is not None:
        current = _current_posting_journal(order_sync, _posting_journals(order_sync))
        if current is not None and current.status in (Journal.Status.DRAFT, Journal.Status.POSTED):
            # In the ledger: waiting or blocking it would hide it from the poster and the
            # reviewer; only a rejection (draft) or a reversal (posted) may follow.
            writes.outcomes[pk] = (Outcome.ALREADY_SENT, current)
            return
        if (
            current is not None
            and current.status == Journal.Status.BUILT
            and current.request_json
            and pk not in ctx.confirmed_not_in_ledger
            and journal_may_have_been_sent(current)
        ):
            # An interrupted send: the ledger may hold it. Parked as WAITING or BLOCKED,
            # nobody would look it up; the poster does that first (JOURNAL_BUILT).
            _arrive_built(
                writes,
                order_sync,
                actor=actor,
                user=user,
                note=(
                    f"{'items back under review' if plan.waiting_on else plan.problem.message}"
                    f" — but {current.source_transaction_reference} may already be in the AR "
                    "Ledger; kept for the poster to look it up"
                )[:2000],
            )
            writes.outcomes[pk] = (Outcome.KEPT_POSSIBLY_SENT, current)
            return
    if plan.waiting_on:
        _move(
            writes,
            order_sync,
            S.WAITING,
            actor=actor,
            user=user,
            note=f"waiting for items {plan.waiting_on} (status 0/1 in ATLAS)",
            waiting_on_items=plan.waiting_on,
        )
        writes.outcomes[pk] = (Outcome.WAITING, None)
        return
    if plan.problem is not None:
        problem = plan.problem
        problems = plan.problems_json()
        same = (
            order_sync.state == S.BLOCKED
            and order_sync.blocked_reason == problem.reason
            and order_sync.blocked_message == problem.message
            and order_sync.blocked_fix_url == problem.fix_url
            and (order_sync.blocked_problems or []) == problems
        )
        if same:
            writes.outcomes[pk] = (Outcome.STILL_BLOCKED, None)
            return
        _move(
            writes,
            order_sync,
            S.BLOCKED,
            actor=actor,
            user=user,
            note=_blocked_note(plan),
            blocked_reason=problem.reason,
            blocked_message=problem.message,
            blocked_fix_url=problem.fix_url,
            blocked_problems=problems,
        )
        writes.outcomes[pk] = (Outcome.BLOCKED, None)
        return

    journals = _posting_journals(order_sync)
    current = _current_posting_journal(order_sync, journals)
    revision = order_sync.revision
    outcome = Outcome.BUILT
    if current is not None:
        if current.status in (Journal.Status.DRAFT, Journal.Status.POSTED):
            # Already in the ledger: only a reversal and a new revision may follow. The poster
            # owns that; the builder never makes a second journal for a sent revision.
            logger.error(
                "journal already sent; not rebuilding",
                extra={"order_sync": pk, "journal": current.source_transaction_reference},
            )
            writes.outcomes[pk] = (Outcome.ALREADY_SENT, current)
            return
        if current.status == Journal.Status.BUILT:
            if journal_fingerprint(current) == plan.fingerprint:
                _keep_built(current, plan=plan, ctx=ctx)
                _arrive_built(writes, order_sync, actor=actor, user=user, note="re-validated")
                writes.outcomes[pk] = (Outcome.UNCHANGED, current)
                return
            if pk not in ctx.confirmed_not_in_ledger and journal_may_have_been_sent(current):
                # The ledger may hold it: superseding could post the order twice. Keep it; the
                # poster asks the ledger for its reference before any resend.
                _arrive_built(
                    writes,
                    order_sync,
                    actor=actor,
                    user=user,
                    note=(
                        f"order changed in ATLAS, but {current.source_transaction_reference} "
                        "may already be in the AR Ledger; kept unchanged"
                    ),
                )
                writes.outcomes[pk] = (Outcome.KEPT_POSSIBLY_SENT, current)
                return
            writes.superseded.append(current.pk)
            outcome = Outcome.REBUILT
        revision = max(j.revision for j in journals) + 1
    journal = _new_journal(plan=plan, ctx=ctx, revision=revision)
    writes.journals.append((journal, plan))
    note = (
        f"journal {journal.source_transaction_reference} built"
        if outcome == Outcome.BUILT
        else f"order changed in ATLAS: {current.source_transaction_reference} superseded by "
        f"{journal.source_transaction_reference}"
    )
    fields: dict[str, Any] = {"revision": revision} if revision != order_sync.revision else {}
    _arrive_built(writes, order_sync, actor=actor, user=user, note=note, force=True, **fields)
    writes.outcomes[pk] = (outcome, journal)


def _blocked_note(plan: JournalPlan) -> str:
    """The history note of a block: the first problem, and how many more there are."""
    first = plan.problems[0].message
    more = len(plan.problems) - 1
    return first if not more else f"{first} (and {more} more problem{'s' if more > 1 else ''})"


def _arrive_built(
    writes: _BatchWrites,
    order_sync: OrderSync,
    *,
    actor: str,
    user: Any,
    note: str,
    force: bool = False,
    **fields: Any,
) -> None:
    """Bring the order to JOURNAL_BUILT by the recorded path (BLOCKED → READY → BUILT)."""
    if order_sync.state == S.BLOCKED:
        _move(writes, order_sync, S.READY, actor=actor, user=user, note="cause fixed; rebuilding")
    elif order_sync.state == S.JOURNAL_BUILT:
        if not force:
            return
        _move(writes, order_sync, S.READY, actor=actor, user=user, note="rebuilding")
    _move(writes, order_sync, S.JOURNAL_BUILT, actor=actor, user=user, note=note, **fields)


def _keep_built(journal: Journal, *, plan: JournalPlan, ctx: BuildContext) -> None:
    """Same lines; keep the journal and its reference, refresh what may change meanwhile
    (the workflow chosen, the period it lands in)."""
    workflow = ctx.posting_settings.journal_workflow
    if journal.workflow != workflow or journal.landed_period != plan.landed_period:
        journal.workflow = workflow
        journal.landed_period = plan.landed_period
        Journal.objects.filter(pk=journal.pk, status=Journal.Status.BUILT).update(
            workflow=workflow, landed_period=plan.landed_period
        )


def _new_journal(*, plan: JournalPlan, ctx: BuildContext, revision: int) -> Journal:
    assert plan.facts is not None
    debit, credit = lines_totals(plan.lines)
    return Journal(
        order_sync=plan.order_sync,
        revision=revision,
        kind=Journal.Kind.POSTING,
        status=Journal.Status.BUILT,
        source_transaction_reference=source_transaction_reference(
            atlas_order_id=plan.facts.atlas_id, revision=revision
        ),
        workflow=ctx.posting_settings.journal_workflow,
        currency=plan.facts.currency,
        total_debit=debit,
        total_credit=credit,
        occurred_on=plan.facts.registration_date,
        event_date=plan.facts.registration_date,
        landed_period=plan.landed_period,
    )


def _store(writes: _BatchWrites, *, actor: str, user: Any) -> None:
    transitions = _store_moves(writes, actor=actor, user=user)
    if writes.superseded:
        Journal.objects.filter(pk__in=writes.superseded, status=Journal.Status.BUILT).update(
            status=Journal.Status.SUPERSEDED
        )
    if writes.journals:
        Journal.objects.bulk_create([journal for journal, _ in writes.journals], batch_size=500)
        _lines_insert(writes.journals)
    order_transitions_record(transitions)


def _store_moves(writes: _BatchWrites, *, actor: str, user: Any) -> list[OrderTransition]:
    """Make the planned state changes: one compare-and-set UPDATE per group of orders moving
    the same way (the common case: READY → JOURNAL_BUILT), one per order that also writes
    fields (a block, a new revision, the waiting list)."""
    transitions: list[OrderTransition] = []
    groups: dict[tuple[str, tuple[str, ...]], list[_Move]] = {}
    for move in writes.moves.values():
        path = tuple(to_state for to_state, _ in move.steps)
        if move.fields or S.BLOCKED in path:
            for index, (to_state, note) in enumerate(move.steps):
                last = index == len(move.steps) - 1
                transitions.append(
                    order_transition_apply(
                        order_sync=move.order_sync,
                        to_state=to_state,
                        actor=actor,
                        user=user,
                        note=note,
                        **(move.fields if last else {}),
                    )
                )
            continue
        groups.setdefault((move.order_sync.state, path), []).append(move)
    for (_, path), moves in groups.items():
        transitions += order_syncs_move_bulk(
            order_syncs=[move.order_sync for move in moves],
            path=path,
            notes=[[note for _, note in move.steps] for move in moves],
            actor=actor,
            user=user,
        )
    return transitions


_LINE_COLUMNS: tuple[str, ...] = (
    "journal",
    "position",
    "side",
    "gl_account",
    "amount",
    "currency",
    "billing_account_num",
    "description",
    "entry_values",
    "order_item",
)


def _lines_insert(journals: Sequence[tuple[Journal, JournalPlan]]) -> None:
    """Insert the lines of freshly created journals with one executemany.

    A journal of five items has fifteen lines: a cycle over 10,000 orders inserts 150,000 rows,
    and bulk_create's per-row model and SQL work would dominate the whole build. Values are
    adapted by the fields themselves, so every backend gets what the ORM would send.
    """
    meta = JournalLine._meta
    fields = [meta.get_field(name) for name in _LINE_COLUMNS]
    quote = connection.ops.quote_name
    # Table and column names come from the model, every value is a parameter.
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) "  # noqa: S608
        f"VALUES ({', '.join(['%s'] * len(fields))})"
    )
    adapt_amount = connection.ops.adapt_decimalfield_value
    values_field = meta.get_field("entry_values")
    rows = [
        (
            journal.pk,
            position,
            str(line.side),
            line.gl_account,
            adapt_amount(line.amount, 18, 2),
            line.currency,
            line.billing_account_num,
            line.description,
            values_field.get_db_prep_value(line.entry_values, connection),
            line.item_pk,
        )
        for journal, plan in journals
        for position, line in enumerate(plan.lines, start=1)
    ]
    with connection.cursor() as cursor:
        for start in range(0, len(rows), 5000):
            cursor.executemany(sql, rows[start : start + 5000])


@transaction.atomic
def _order_syncs_build(
    *, pks: Sequence[int], actor: str, user: Any, ctx: BuildContext
) -> dict[int, tuple[Outcome, Journal | None]]:
    writes = _BatchWrites()
    for order_sync in _load_for_build(pks):
        plan = journal_plan(order_sync=order_sync, ctx=ctx)
        _apply_plan(plan=plan, ctx=ctx, writes=writes, actor=actor, user=user)
    _store(writes, actor=actor, user=user)
    return writes.outcomes


def order_build_journal(*, order_sync: OrderSync, actor: str, user: Any = None) -> Journal | None:
    """Build, validate and store the journal of one order; or block it, or send it back to
    WAITING. Returns the journal to post (status BUILT), or None when there is none.

    Idempotent: an unchanged order keeps its BUILT journal and reference. A changed one gets a
    new revision and the old BUILT journal is SUPERSEDED — unless it may already be in the AR
    Ledger, in which case it is kept for the poster to resolve. A DRAFT or POSTED journal is
    never rebuilt (ApplicationError).
    """
    if order_sync.state not in (S.READY, S.JOURNAL_BUILT):
        raise InvalidTransition(
            f"Order {order_sync.order_id} is {order_sync.state}; a journal is built from "
            f"{S.READY} (or re-validated in {S.JOURNAL_BUILT}). Use order_rebuild for a "
            "blocked order.",
            details={"order_sync": order_sync.pk, "from": order_sync.state},
        )
    return _build_one(order_sync=order_sync, actor=actor, user=user)


def _build_one(
    *, order_sync: OrderSync, actor: str, user: Any, confirmed_not_in_ledger: bool = False
) -> Journal | None:
    ctx = BuildContext()
    if confirmed_not_in_ledger:
        ctx.confirmed_not_in_ledger.add(order_sync.pk)
    outcomes = _order_syncs_build(pks=[order_sync.pk], actor=actor, user=user, ctx=ctx)
    order_sync.refresh_from_db()
    outcome, journal = outcomes.get(order_sync.pk, (Outcome.SKIPPED, None))
    if outcome == Outcome.ALREADY_SENT:
        assert journal is not None
        way_out = (
            "reject the draft (which deletes it in the ledger), then rebuild"
            if journal.status == Journal.Status.DRAFT
            else "correct it with a reversal, not a rebuild"
        )
        raise ApplicationError(
            f"Order {order_sync.order_id}: journal {journal.source_transaction_reference} is "
            f"already {journal.status} in the AR Ledger; {way_out}.",
            details={"order_sync": order_sync.pk, "journal": journal.pk},
        )
    if outcome in (Outcome.BUILT, Outcome.REBUILT, Outcome.UNCHANGED, Outcome.KEPT_POSSIBLY_SENT):
        return journal
    return None


def order_rebuild(
    *,
    order_sync: OrderSync,
    actor: str,
    user: Any = None,
    confirmed_not_in_ledger: bool = False,
) -> Journal | None:
    """Re-evaluate an order after its cause was fixed ("rebuild" in the admin): BLOCKED (any
    reason, including a remote rejection), FAILED, READY or JOURNAL_BUILT → READY → build.

    The same path the next cycle takes; it unblocks only when the cause is really gone, else
    the order stays blocked (with the current reason). `confirmed_not_in_ledger`: the caller
    has just asked the AR Ledger for the current journal's reference and it is not there, so a
    changed order may supersede it even though an earlier attempt to send it was interrupted.
    """
    if order_sync.state == S.FAILED:
        with transaction.atomic():
            order_transition_apply(
                order_sync=order_sync, to_state=S.READY, actor=actor, user=user, note="rebuild"
            ).save()
    if order_sync.state not in BUILDABLE_STATES:
        raise InvalidTransition(
            f"Order {order_sync.order_id} is {order_sync.state}; only a blocked, failed, ready "
            "or built order can be rebuilt.",
            details={"order_sync": order_sync.pk, "from": order_sync.state},
        )
    return _build_one(
        order_sync=order_sync,
        actor=actor,
        user=user,
        confirmed_not_in_ledger=confirmed_not_in_ledger,
    )


def orders_build_ready(
    *,
    actor: str = "system:run_cycle",
    batch_size: int = 500,
    order_sync_ids: Iterable[int] | None = None,
) -> dict[str, int]:
    """The cycle's build stage: every READY order, every JOURNAL_BUILT one (re-validated, so a
    period closed or an order changed since is caught before sending) and every order blocked
    for a cause that may have been fixed meanwhile. Returns counts per Outcome.

    `order_sync_ids` narrows it to those orders (the re-check after a fix, services/rechecks.py).
    """
    rebuildable = OrderSync.objects.filter(
        Q(state__in=[S.READY, S.JOURNAL_BUILT])
        | (Q(state=S.BLOCKED) & ~Q(blocked_reason__in=MANUAL_ONLY_REASONS))
    )
    if order_sync_ids is not None:
        rebuildable = rebuildable.filter(pk__in=list(order_sync_ids))
    pks = list(rebuildable.order_by("pk").values_list("pk", flat=True))
    counts: Counter[str] = Counter()
    ctx = BuildContext()
    for start in range(0, len(pks), batch_size):
        outcomes = _order_syncs_build(
            pks=pks[start : start + batch_size], actor=actor, user=None, ctx=ctx
        )
        counts.update(str(outcome) for outcome, _ in outcomes.values())
    return dict(counts)


# --------------------------------------------------------------------------------------------
# Selection.
# --------------------------------------------------------------------------------------------


@dataclass
class SelectionResult:
    created: int = 0  # OrderSync rows created (candidates and processed-elsewhere arrivals)
    ready: int = 0  # moved to READY
    waiting: int = 0  # moved to WAITING, or its list of holding items changed
    processed_elsewhere: int = 0
    released: int = 0  # left the trigger status before anything was sent: back to MIRRORED
    unchanged: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)

    def add(self, other: SelectionResult) -> None:
        for name, value in other.as_dict().items():
            setattr(self, name, getattr(self, name) + value)

    @property
    def changed(self) -> int:
        return self.created + self.ready + self.waiting + self.processed_elsewhere + self.released


def trigger_statuses_setting() -> list[str]:
    value = settings.ATLAS_TRIGGER_STATUS
    if isinstance(value, str):
        value = [value]
    return [status.strip() for status in value if status and status.strip()]


_ERP_CODE_EMPTY = Q(erp_code__isnull=True) | Q(erp_code="")


def _waiting_items(order: Order) -> list[int]:
    return sorted(
        item.atlas_id
        for item in _live_items(order)
        if item.status in (OrderItem.Status.CALCULATED, OrderItem.Status.EDITED)
    )


def orders_select_candidates(
    *,
    trigger_statuses: Sequence[str] | None = None,
    actor: str = "system:select_candidates",
    batch_size: int = 1000,
    order_ids: Sequence[int] | None = None,
) -> SelectionResult:
    """Examine the mirrored orders and move their OrderSync rows (creating them on first sight).

    - in a trigger status with erpCode null: a candidate — WAITING (with the ids of the items in
      status 0/1) until every item is in status 2, then READY; never booked in part;
    - in a trigger status with erpCode set and never ours: PROCESSED_ELSEWHERE, never posted;
    - an order not sent yet that leaves the trigger status (or ATLAS) goes back to MIRRORED;
      one that gets an erpCode we did not write is PROCESSED_ELSEWHERE.
    A second run with nothing changed in the mirror writes nothing.

    `order_ids` (ATLAS order ids) limits every part of the selection to those orders, so that a
    webhook about one order never moves another one; None examines every mirrored order.
    """
    statuses = list(trigger_statuses) if trigger_statuses is not None else None
    statuses = statuses or trigger_statuses_setting()
    result = SelectionResult()
    orders = Order.objects.all()
    syncs = OrderSync.objects.all()
    if order_ids is not None:
        atlas_ids = sorted({int(atlas_id) for atlas_id in order_ids})
        orders = orders.filter(atlas_id__in=atlas_ids)
        syncs = syncs.filter(order__atlas_id__in=atlas_ids)
    live = orders.exclude(sync_state=SyncState.MISSING).filter(status__in=statuses)

    candidate_pks = list(live.filter(_ERP_CODE_EMPTY).order_by("pk").values_list("pk", flat=True))
    for start in range(0, len(candidate_pks), batch_size):
        _batch_with_retry(
            _select_batch, pks=candidate_pks[start : start + batch_size], actor=actor, into=result
        )

    arrived_done = list(
        live.exclude(_ERP_CODE_EMPTY)
        .filter(sync__isnull=True)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    for start in range(0, len(arrived_done), batch_size):
        _batch_with_retry(
            _processed_elsewhere_create,
            pks=arrived_done[start : start + batch_size],
            actor=actor,
            into=result,
        )

    stale = list(
        syncs.filter(state__in=PRE_SEND_STATES)
        .filter(
            ~_erp_code_empty_on_order()
            | (
                ~Q(state=S.MIRRORED)
                & (~Q(order__status__in=statuses) | Q(order__sync_state=SyncState.MISSING))
            )
        )
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    for start in range(0, len(stale), batch_size):
        _release_batch(pks=stale[start : start + batch_size], actor=actor, result=result)
    return result


def _batch_with_retry(step: Any, *, pks: Sequence[int], actor: str, into: SelectionResult) -> None:
    """Run one selection batch; once more if another selection run created the same OrderSync
    rows meanwhile (the unique order key refuses the second insert, the batch rolls back, and
    the retry finds and locks the rows the other run made)."""
    for attempt in (1, 2):
        partial = SelectionResult()
        try:
            step(pks=pks, actor=actor, result=partial)
        except IntegrityError:
            if attempt == 2:
                raise
            logger.info("order selection raced another run; retrying the batch")
            continue
        into.add(partial)
        return


def _erp_code_empty_on_order() -> Q:
    return Q(order__erp_code__isnull=True) | Q(order__erp_code="")


@transaction.atomic
def _select_batch(*, pks: Sequence[int], actor: str, result: SelectionResult) -> None:
    orders = list(
        Order.objects.filter(pk__in=pks)
        .only("pk", "status")
        .prefetch_related(
            Prefetch(
                "items",
                queryset=OrderItem.objects.only(
                    "pk", "order_id", "atlas_id", "status", "sync_state"
                ),
                to_attr="prefetched_items",
            )
        )
    )
    existing_pks = list(
        OrderSync.objects.select_for_update().filter(order_id__in=pks).values_list("pk", flat=True)
    )
    existing = {sync.order_id: sync for sync in OrderSync.objects.filter(pk__in=existing_pks)}
    now = timezone.now()
    new_syncs: list[OrderSync] = []
    new_notes: list[str] = []
    transitions: list[OrderTransition] = []
    for order in orders:
        waiting = _waiting_items(order)
        sync = existing.get(order.pk)
        if sync is None:
            state = S.WAITING if waiting else S.READY
            new_syncs.append(
                OrderSync(order=order, state=state, waiting_on_items=waiting, updated_at=now)
            )
            new_notes.append(
                f"selected (status {order.status!r}, erpCode null); "
                + (f"waiting for items {waiting}" if waiting else "every item in status 2")
            )
            result.created += 1
            if waiting:
                result.waiting += 1
            else:
                result.ready += 1
            continue
        if waiting:
            if sync.state == S.WAITING:
                if sync.waiting_on_items != waiting:
                    OrderSync.objects.filter(pk=sync.pk).update(
                        waiting_on_items=waiting, updated_at=now
                    )
                    result.waiting += 1
                else:
                    result.unchanged += 1
            elif sync.state in (S.READY, S.JOURNAL_BUILT, S.BLOCKED) and (
                _current_journal_may_have_been_sent(sync)
            ):
                # Its journal may already be in the AR Ledger (an interrupted send, a draft):
                # parked as WAITING, nobody would look it up or record it. The poster resolves
                # it first; what ATLAS changed meanwhile is a reversal's business.
                result.unchanged += 1
            elif sync.state in (S.MIRRORED, S.READY, S.JOURNAL_BUILT, S.BLOCKED):
                transitions.append(
                    order_transition_apply(
                        order_sync=sync,
                        to_state=S.WAITING,
                        actor=actor,
                        note=f"waiting for items {waiting} (status 0/1 in ATLAS)",
                        at=now,
                        waiting_on_items=waiting,
                    )
                )
                result.waiting += 1
            else:
                result.unchanged += 1
        elif sync.state in (S.MIRRORED, S.WAITING):
            transitions.append(
                order_transition_apply(
                    order_sync=sync,
                    to_state=S.READY,
                    actor=actor,
                    note=f"selected (status {order.status!r}, erpCode null); every item in "
                    "status 2",
                    at=now,
                )
            )
            result.ready += 1
        else:
            result.unchanged += 1
    if new_syncs:
        OrderSync.objects.bulk_create(new_syncs, batch_size=500)
        transitions.extend(
            OrderTransition(
                order_sync=sync,
                from_state=S.MIRRORED,
                to_state=sync.state,
                actor=actor,
                note=note,
                at=now,
            )
            for sync, note in zip(new_syncs, new_notes, strict=True)
        )
    order_transitions_record(transitions)


def _current_journal_may_have_been_sent(sync: OrderSync) -> bool:
    """Whether the posting journal of the order's current revision may be in the AR Ledger."""
    journal = (
        sync.journals.filter(kind=Journal.Kind.POSTING, revision=sync.revision)
        .exclude(status__in=[Journal.Status.REJECTED, Journal.Status.SUPERSEDED])
        .order_by("-id")
        .first()
    )
    return journal is not None and journal_may_have_been_sent(journal)


@transaction.atomic
def _processed_elsewhere_create(*, pks: Sequence[int], actor: str, result: SelectionResult) -> None:
    rows = list(
        Order.objects.filter(pk__in=pks, sync__isnull=True)
        .exclude(_ERP_CODE_EMPTY)
        .values_list("pk", "erp_code")
    )
    now = timezone.now()
    syncs = [
        OrderSync(order_id=order_pk, state=S.PROCESSED_ELSEWHERE, updated_at=now)
        for order_pk, _ in rows
    ]
    OrderSync.objects.bulk_create(syncs, batch_size=500)
    order_transitions_record(
        OrderTransition(
            order_sync=sync,
            from_state=S.MIRRORED,
            to_state=S.PROCESSED_ELSEWHERE,
            actor=actor,
            note=f"arrived with erpCode {erp_code!r} set by another system; never posted",
            at=now,
        )
        for sync, (_, erp_code) in zip(syncs, rows, strict=True)
    )
    result.created += len(syncs)
    result.processed_elsewhere += len(syncs)


@transaction.atomic
def _release_batch(*, pks: Sequence[int], actor: str, result: SelectionResult) -> None:
    locked = list(
        OrderSync.objects.select_for_update().filter(pk__in=pks).values_list("pk", flat=True)
    )
    syncs = (
        OrderSync.objects.filter(pk__in=locked, state__in=PRE_SEND_STATES)
        .select_related("order")
        .prefetch_related("journals")
    )
    now = timezone.now()
    transitions: list[OrderTransition] = []
    superseded: list[int] = []
    for sync in syncs:
        journals = list(sync.journals.all())
        if any(journal_may_have_been_sent(journal) for journal in journals):
            # Something of ours may be in the ledger: the poster resolves it, not selection.
            result.unchanged += 1
            continue
        order = sync.order
        erp_code = (order.erp_code or "").strip()
        if erp_code and erp_code != sync.erp_code:
            superseded += [j.pk for j in journals if j.status == Journal.Status.BUILT]
            transitions.append(
                order_transition_apply(
                    order_sync=sync,
                    to_state=S.PROCESSED_ELSEWHERE,
                    actor=actor,
                    note=f"erpCode {erp_code!r} set by another system before we sent anything; "
                    "never posted",
                    at=now,
                )
            )
            result.processed_elsewhere += 1
        elif sync.state != S.MIRRORED and not erp_code:
            why = (
                "no longer in ATLAS"
                if order.sync_state == SyncState.MISSING
                else f"status changed to {order.status!r}, not a trigger status"
            )
            transitions.append(
                order_transition_apply(
                    order_sync=sync,
                    to_state=S.MIRRORED,
                    actor=actor,
                    note=f"released: {why}",
                    at=now,
                    waiting_on_items=[],
                )
            )
            result.released += 1
        else:
            result.unchanged += 1
    if superseded:
        Journal.objects.filter(pk__in=superseded, status=Journal.Status.BUILT).update(
            status=Journal.Status.SUPERSEDED
        )
    order_transitions_record(transitions)


__all__ = [
    "MANUAL_ONLY_REASONS",
    "BuildContext",
    "Cashflow",
    "ControlAccounts",
    "CounterpartyFacts",
    "ItemFacts",
    "JournalPlan",
    "JournalProblem",
    "LineDraft",
    "LineRole",
    "OrderFacts",
    "Outcome",
    "SelectionResult",
    "Side",
    "build_journal_lines",
    "control_balance",
    "counterparty_erp_code",
    "journal_lines_problems",
    "journal_may_have_been_sent",
    "journal_plan",
    "lines_totals",
    "order_build_journal",
    "order_rebuild",
    "orders_build_ready",
    "orders_select_candidates",
    "source_transaction_reference",
]
