"""Template filters for the back office: `{{ amount|money:currency }}`, `{{ date|when }}`,
`{{ number|gl_account:names }}` (ledger_sync.admin.display does the work)."""

from __future__ import annotations

from typing import Any

from django import template

from ledger_sync.admin import display

register = template.Library()


@register.filter
def money(amount: Any, currency: str = "") -> Any:
    return display.money(amount, currency or "")


@register.filter
def when(value: Any) -> str:
    return display.when(value)


@register.filter
def gl_account(number: str, names: dict[str, str]) -> Any:
    return display.gl_account(number, names or {})
