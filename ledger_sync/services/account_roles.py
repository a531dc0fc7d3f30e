"""Which Gotransverse GL accounts may carry which journal line: the account roles.

The mirrored chart carries each account's `type` (ASSET, LIABILITY, REVENUE, EXPENSE, …) and
`designation` (ACCOUNTS_RECEIVABLE, ACCOUNTS_PAYABLE, TAX, CASH, REVENUE, EXPENSE, …). A line is
booked only on an account of its role:

| role | the account must be |
|---|---|
| revenue | of type REVENUE (or INCOME) |
| expense | of type EXPENSE (or COST, COST_OF_SALES) |
| receivables | designated receivable (ACCOUNTS_RECEIVABLE) |
| payables | designated payable (ACCOUNTS_PAYABLE) |
| output VAT, input VAT | designated tax (TAX, VAT, SALES_TAX, …) — one VAT account may serve both |
| bank | designated cash or bank (CASH, BANK) |

The AR Ledger API does not pin the designation values (GET /accounts/designations lists a
tenant's own), so matching is on the normalised words (upper case, spaces and hyphens as
underscores), and a designation containing RECEIVABLE / PAYABLE / TAX / VAT / CASH / BANK counts.
An account carrying neither type nor designation cannot be told and is refused, naming the fix.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ROLE_WORDS",
    "account_role_fits",
    "account_role_problem",
    "role_requirement",
]

ROLE_WORDS: dict[str, str] = {
    "receivables": "receivable",
    "payables": "payable",
    "output_vat": "output VAT",
    "input_vat": "input VAT",
    "revenue": "revenue",
    "expense": "expense",
    "bank": "bank",
}
_REVENUE_TYPES = frozenset({"REVENUE", "INCOME", "SALES"})
_EXPENSE_TYPES = frozenset({"EXPENSE", "COST", "COST_OF_SALES", "COST_OF_GOODS_SOLD"})
# Role -> words of which one must appear in the designation.
_DESIGNATION_WORDS: dict[str, tuple[str, ...]] = {
    "receivables": ("RECEIVABLE",),
    "payables": ("PAYABLE",),
    "output_vat": ("TAX", "VAT", "GST"),
    "input_vat": ("TAX", "VAT", "GST"),
    "bank": ("CASH", "BANK"),
}
_REQUIREMENTS: dict[str, str] = {
    "revenue": "of type REVENUE",
    "expense": "of type EXPENSE",
    "receivables": "designated ACCOUNTS_RECEIVABLE",
    "payables": "designated ACCOUNTS_PAYABLE",
    "output_vat": "designated TAX",
    "input_vat": "designated TAX",
    "bank": "designated CASH",
}


def _norm(value: Any) -> str:
    return str(value or "").strip().upper().replace(" ", "_").replace("-", "_")


def role_requirement(role: str) -> str:
    """What an account of `role` must be, in words ("of type REVENUE")."""
    return _REQUIREMENTS[str(role)]


def account_role_fits(*, role: str, account_type: Any, designation: Any) -> bool:
    """Whether an account of this type and designation may carry a line of `role`."""
    role = str(role)
    kind, designated = _norm(account_type), _norm(designation)
    if role == "revenue":
        return kind in _REVENUE_TYPES or (not kind and designated in _REVENUE_TYPES)
    if role == "expense":
        return kind in _EXPENSE_TYPES or (not kind and designated in _EXPENSE_TYPES)
    words = _DESIGNATION_WORDS[role]
    if role in ("output_vat", "input_vat") and designated.startswith("ACCOUNTS_"):
        return False  # ACCOUNTS_PAYABLE is a trade account; TAX_PAYABLE is a VAT account
    if role in ("receivables", "payables") and any(w in designated for w in ("TAX", "VAT")):
        return False
    return any(word in designated for word in words)


def account_role_problem(*, role: str, account: Any) -> str | None:
    """Why the mirrored GL `account` cannot carry a line of `role`, or None when it can.

    The sentence names the account, what it is, what the role needs and the fix.
    """
    if account_role_fits(role=role, account_type=account.type, designation=account.designation):
        return None
    what = ", ".join(
        part
        for part in (
            f"type {account.type}" if account.type else "",
            f"designation {account.designation}" if account.designation else "",
        )
        if part
    )
    what = what or "no type and no designation"
    return (
        f"GL account {account.number} ({account.name}) has {what}, so it cannot carry a "
        f"{ROLE_WORDS[str(role)]} line, which needs an account {role_requirement(role)}; "
        "choose an account of that role (or correct the account in Gotransverse, then sync)."
    )
