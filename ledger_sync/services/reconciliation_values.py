"""The plain values reconciliation compares (journal lines, ledger transactions, ATLAS orders
now, periods) and the Finding each difference becomes before it is stored. No database, no
HTTP: services/reconciliation_checks.py compares them, selectors/reconciliation.py loads ours.
Amounts are signed debit-positive (a debit adds, a credit subtracts).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

ZERO = Decimal("0.00")
OUR_PREFIXES: tuple[str, ...] = ("ATLAS-ORDER-", "ATLAS-PAYMENT-")

ORDER_CHANGED = "order_changed_after_posting"
MISSING_IN_LEDGER = "missing_in_ledger"
LEDGER_EDITED = "ledger_transaction_edited"
DUPLICATE_REFERENCE = "duplicate_reference"
STRAY_TRANSACTION = "stray_transaction"
ACCOUNT_BALANCE = "account_balance"
COUNTERPARTY_BALANCE = "counterparty_balance"


@dataclass(frozen=True)
class Line:
    """One journal line or ledger entry."""

    account: str
    credit: bool
    amount: Decimal
    currency: str
    billing: str = ""
    item_atlas_id: int | None = None

    @property
    def signed(self) -> Decimal:
        return -self.amount if self.credit else self.amount

    @property
    def fingerprint(self) -> tuple[str, bool, Decimal, str, str]:
        return (self.account, self.credit, self.amount, self.currency, self.billing)


@dataclass
class OurJournal:
    pk: int
    reference: str
    kind: str
    currency: str
    period_id: int | None  # the accounting period (Gotransverse id) it landed in
    ledger_transaction_id: str
    lines: list[Line]
    order_pk: int | None = None
    order_atlas_id: int | None = None
    is_current_posting: bool = False  # the order's posting journal now in force


@dataclass
class LedgerTransaction:
    id: int
    reference: str
    lines: list[Line]
    period_ids: tuple[int | None, ...]  # per line, as the ledger booked each entry

    @property
    def period_id(self) -> int | None:
        return self.period_ids[0] if self.period_ids else None


@dataclass(frozen=True)
class AtlasOrderNow:
    pk: int
    atlas_id: int
    label: str
    currency: str
    total_amount: Decimal | None  # None: ATLAS no longer returns the order
    item_gross: Mapping[int, Decimal]  # status-2 items still in ATLAS: atlas id → net + VAT


@dataclass(frozen=True)
class PeriodFacts:
    id: int
    name: str
    start: date
    end: date


@dataclass
class Finding:
    """One difference, before it is stored as a ReconciliationDifference."""

    level: int
    kind: str
    key: str
    label: str
    currency: str
    amount: Decimal
    cause: str
    atlas: Decimal | None = None
    ours: Decimal | None = None
    ledger: Decimal | None = None
    ledger_balance: Decimal | None = None
    period: str = ""
    gl_account: str = ""
    billing: str = ""
    reference: str = ""
    ledger_ids: list[int] = field(default_factory=list)
    journal_pk: int | None = None
    order_pk: int | None = None
    details: dict[str, Any] = field(default_factory=dict)
    # What this level-1 finding moves at levels 2 and 3 (ledger - ours), to explain them.
    account_effect: dict[tuple[int | None, str, str], Decimal] = field(default_factory=dict)
    billing_effect: dict[tuple[str, str], Decimal] = field(default_factory=dict)


def is_ours(reference: str | None) -> bool:
    return bool(reference) and str(reference).startswith(OUR_PREFIXES)


def money(amount: Decimal | None, currency: str) -> str:
    """1,234,567.89 EUR (the figures people read in causes)."""
    if amount is None:
        return "none"
    return f"{amount:,.2f} {currency}".strip()
