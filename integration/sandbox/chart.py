"""The sandbox chart of accounts, shared by both sandboxes so that their data agree.

ATLAS's sandbox draws GL accounts for counterparties and items from here; the AR Ledger
sandbox seeds its chart from here. On purpose, ATLAS also references a few accounts the ledger
lacks (ATLAS_ONLY_ACCOUNTS) and a non-posting parent or two, so journals can be blocked for them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SandboxAccount:
    number: str
    name: str
    type: str  # ASSET, LIABILITY, REVENUE, EXPENSE
    designation: str
    is_posting_account: bool = True
    parent: str | None = None


LEDGER_ACCOUNTS: tuple[SandboxAccount, ...] = (
    SandboxAccount("1000", "Bank - operating account", "ASSET", "CASH"),
    SandboxAccount("1200", "Trade receivables", "ASSET", "ACCOUNTS_RECEIVABLE"),
    SandboxAccount("1400", "Input VAT", "ASSET", "TAX"),
    SandboxAccount("2000", "Trade payables", "LIABILITY", "ACCOUNTS_PAYABLE"),
    SandboxAccount("2200", "Output VAT", "LIABILITY", "TAX"),
    SandboxAccount("4000", "Energy revenue", "REVENUE", "REVENUE", is_posting_account=False),
    SandboxAccount("4001", "Power sales", "REVENUE", "REVENUE", parent="4000"),
    SandboxAccount("4002", "Gas sales", "REVENUE", "REVENUE", parent="4000"),
    SandboxAccount("4003", "Capacity revenue", "REVENUE", "REVENUE", parent="4000"),
    SandboxAccount("4010", "Balancing revenue", "REVENUE", "REVENUE", parent="4000"),
    SandboxAccount("5000", "Energy costs", "EXPENSE", "EXPENSE", is_posting_account=False),
    SandboxAccount("5001", "Power purchases", "EXPENSE", "EXPENSE", parent="5000"),
    SandboxAccount("5002", "Gas purchases", "EXPENSE", "EXPENSE", parent="5000"),
    SandboxAccount("5003", "Transmission and grid fees", "EXPENSE", "EXPENSE", parent="5000"),
    SandboxAccount("5010", "Balancing costs", "EXPENSE", "EXPENSE", parent="5000"),
    SandboxAccount("6000", "Broker fees and commissions", "EXPENSE", "EXPENSE"),
)

CONTROL_ACCOUNTS = {
    "bank": "1000",
    "receivables": "1200",
    "input_vat": "1400",
    "payables": "2000",
    "output_vat": "2200",
}

# Posting accounts ATLAS counterparties and items normally carry.
REVENUE_ACCOUNTS: tuple[str, ...] = ("4001", "4002", "4003", "4010")
EXPENSE_ACCOUNTS: tuple[str, ...] = ("5001", "5002", "5003", "5010", "6000")
# Referenced by a few ATLAS records but absent from the ledger: journals must block on them.
ATLAS_ONLY_ACCOUNTS: tuple[str, ...] = ("4099", "5099")
# In the ledger but not postable: a journal to one of these must block too.
NON_POSTING_ACCOUNTS: tuple[str, ...] = tuple(
    a.number for a in LEDGER_ACCOUNTS if not a.is_posting_account
)
