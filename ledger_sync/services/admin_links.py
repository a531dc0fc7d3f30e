"""Admin links: the back-office page where a person fixes what a record is blocked on.

Stored on blocks and problems, so they are built without a request; no domain imports."""

from __future__ import annotations

from typing import Any

from django.urls import NoReverseMatch, reverse

from ledger_sync.models import (
    Counterparty,
    Journal,
    Ledger,
    Order,
    PostingSettings,
)


def admin_url(model: str, *, pk: Any = None, query: str = "") -> str:
    """The admin page of `model` (change page when pk, else the list), `query` appended.

    Falls back to Django's URL pattern when the admin for the model is not registered, so a
    stored link stays right once it is.
    """
    name = f"admin:ledger_sync_{model}_{'change' if pk is not None else 'changelist'}"
    try:
        url = reverse(name, args=[pk] if pk is not None else [])
    except NoReverseMatch:
        url = f"/admin/ledger_sync/{model}/" + (f"{pk}/change/" if pk is not None else "")
    return f"{url}?{query}" if query else url


def fix_url_counterparty(counterparty: Counterparty) -> str:
    return admin_url("counterparty", pk=counterparty.pk)


def fix_url_order(order: Order) -> str:
    return admin_url("order", pk=order.pk)


def fix_url_gl_account(number: str) -> str:
    return admin_url("glaccount", query=f"number__exact={number}")


def fix_url_posting_settings() -> str:
    return admin_url("postingsettings", pk=PostingSettings.SINGLETON_PK)


def fix_url_periods(*, ledger: Ledger | None, period_pk: int | None = None) -> str:
    if period_pk is not None:
        return admin_url("accountingperiod", pk=period_pk)
    if ledger is not None:
        return admin_url("accountingperiod", query=f"ledger__id__exact={ledger.pk}")
    return admin_url("ledger")


def fix_url_counterparty_matching(counterparty: Counterparty) -> str:
    """The matching page narrowed to this counterparty: approve a candidate or create a party."""
    # The exact row (a search for the ATLAS id would also match names containing its digits).
    return admin_url("counterpartymatching", query=f"id__exact={counterparty.pk}")


def journal_admin_url(journal: Journal) -> str:
    """The journal's review page: its lines, the request sent, the ledger's answer and the
    actions (reject the draft, rebuild) that clear a block the ledger caused."""
    return admin_url("journal", pk=journal.pk)


def admin_change_url(app_label: str, model: str, pk: Any) -> str:
    """The admin change page of one record: the exact record, never a search."""
    try:
        return reverse(f"admin:{app_label}_{model}_change", args=[pk])
    except NoReverseMatch:
        return f"/admin/{app_label}/{model}/{pk}/change/"


__all__ = [
    "admin_change_url",
    "admin_url",
    "fix_url_counterparty",
    "fix_url_counterparty_matching",
    "fix_url_gl_account",
    "fix_url_order",
    "fix_url_periods",
    "fix_url_posting_settings",
    "journal_admin_url",
]
