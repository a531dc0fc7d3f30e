"""Seed data of the AR Ledger sandbox: one EUR ledger, its chart of accounts and its calendar.

The chart is integration/sandbox/chart.py's LEDGER_ACCOUNTS (shared with the ATLAS sandbox so
that their account numbers agree); it deliberately lacks ATLAS_ONLY_ACCOUNTS and keeps the
non-posting parents. The calendar has monthly periods for 2025 and 2026; all of 2025 and
January-February 2026 are closed, the rest open, so a journal dated in a closed month is rolled
into March 2026 (the first open period).
"""

from __future__ import annotations

import calendar as _calendar
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from integration.sandbox.chart import LEDGER_ACCOUNTS

LEDGER_ID = 1
LEDGER_CURRENCY = "EUR"
CALENDAR_ID = 1
CHART_OF_ACCOUNTS_ID = 1
TENANT_ID = 7001
YEARS: tuple[int, ...] = (2025, 2026)
# (year, month) pairs that start closed.
CLOSED_MONTHS: frozenset[tuple[int, int]] = frozenset(
    [(2025, m) for m in range(1, 13)] + [(2026, 1), (2026, 2)]
)

CATEGORY_BY_TYPE = {
    "ASSET": (1, "Assets", "BALANCE_SHEET"),
    "LIABILITY": (2, "Liabilities", "BALANCE_SHEET"),
    "REVENUE": (3, "Revenue", "INCOME_STATEMENT"),
    "EXPENSE": (4, "Expenses", "INCOME_STATEMENT"),
}

DESIGNATIONS: tuple[dict[str, Any], ...] = (
    {"name": "CASH", "label": "Cash", "category": "BALANCE_SHEET", "type": "ASSET"},
    {
        "name": "ACCOUNTS_RECEIVABLE",
        "label": "Accounts Receivable",
        "category": "BALANCE_SHEET",
        "type": "ASSET",
    },
    {
        "name": "ACCOUNTS_PAYABLE",
        "label": "Accounts Payable",
        "category": "BALANCE_SHEET",
        "type": "LIABILITY",
    },
    {"name": "TAX", "label": "Tax", "category": "BALANCE_SHEET", "type": "LIABILITY"},
    {"name": "REVENUE", "label": "Revenue", "category": "INCOME_STATEMENT", "type": "REVENUE"},
    {"name": "EXPENSE", "label": "Expense", "category": "INCOME_STATEMENT", "type": "EXPENSE"},
)


@dataclass
class SeedAccount:
    id: int
    number: str
    name: str
    type: str
    designation: str
    is_posting_account: bool
    parent_number: str | None
    category_id: int
    category_name: str
    designation_category: str
    status: str = "ACTIVE"


@dataclass
class SeedPeriod:
    id: int
    year_id: int
    name: str
    quarter: str
    start_date: date
    end_date: date
    open: bool
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class SeedYear:
    id: int
    name: str
    start_date: date
    end_date: date
    periods: list[SeedPeriod]


def seed_accounts() -> list[SeedAccount]:
    accounts = []
    for index, account in enumerate(LEDGER_ACCOUNTS, start=1):
        category_id, category_name, designation_category = CATEGORY_BY_TYPE[account.type]
        accounts.append(
            SeedAccount(
                id=index,
                number=account.number,
                name=account.name,
                type=account.type,
                designation=account.designation,
                is_posting_account=account.is_posting_account,
                parent_number=account.parent,
                category_id=category_id,
                category_name=category_name,
                designation_category=designation_category,
            )
        )
    return accounts


def seed_categories() -> list[dict[str, Any]]:
    return [
        {"id": cid, "name": name, "type": account_type, "status": "ACTIVE"}
        for account_type, (cid, name, _category) in CATEGORY_BY_TYPE.items()
    ]


def seed_years() -> list[SeedYear]:
    years = []
    for year_index, year in enumerate(YEARS, start=1):
        periods = []
        for month in range(1, 13):
            last_day = _calendar.monthrange(year, month)[1]
            start, end = date(year, month, 1), date(year, month, last_day)
            is_open = (year, month) not in CLOSED_MONTHS
            opened_at = datetime(year, 1, 1, tzinfo=UTC) - timedelta(days=31)
            history = [
                {"open": True, "start_date": opened_at, "end_date": None},
            ]
            if not is_open:
                closed_at = datetime(end.year, end.month, end.day, tzinfo=UTC) + timedelta(days=10)
                history[0]["end_date"] = closed_at
                history.append({"open": False, "start_date": closed_at, "end_date": None})
            periods.append(
                SeedPeriod(
                    id=year_index * 100 + month,
                    year_id=year_index,
                    name=f"{_calendar.month_name[month]} {year}",
                    quarter=f"Q{(month - 1) // 3 + 1}",
                    start_date=start,
                    end_date=end,
                    open=is_open,
                    history=history,
                )
            )
        years.append(
            SeedYear(
                id=year_index,
                name=f"FY{year}",
                start_date=date(year, 1, 1),
                end_date=date(year, 12, 31),
                periods=periods,
            )
        )
    return years


def seed_collectors() -> list[dict[str, Any]]:
    return [
        {
            "name": "BILLING_EVENTS",
            "friendly_name": "Billing events",
            "description": "Collects invoices, adjustments and payments from billing.",
            "group": "BILLING",
            "category": "ACTUALS",
        },
        {
            "name": "REVENUE_RECOGNITION",
            "friendly_name": "Revenue recognition",
            "description": "Collects revenue recognition schedules.",
            "group": "REVENUE",
            "category": "ACTUALS",
        },
    ]
