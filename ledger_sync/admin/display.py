"""How the back office shows money, dates, GL accounts and raw payloads to accountants.

One place, so that every page reads the same: `85,500.00 EUR`, a negative amount in red with
its minus sign, a date without "midnight" when the time is 00:00, a GL account number with its
name from the mirrored chart, and raw JSON only for superusers, folded in a <details> panel.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import ngettext

from integration import wire
from ledger_sync.models import GLAccount, SyncState


def money_text(amount: Decimal | None, currency: str = "") -> str:
    """`85,500.00 EUR`, `-1,234.50 EUR`; an empty string for no amount."""
    if amount is None:
        return ""
    text = f"{Decimal(amount):,.2f}"
    return f"{text} {currency}".strip()


def money(amount: Decimal | None, currency: str = "") -> SafeString | str:
    """The amount for an HTML page: right-aligned figures, a negative one in red."""
    if amount is None:
        return "—"
    css = "amount negative" if Decimal(amount) < 0 else "amount"
    style = "white-space:nowrap;font-variant-numeric:tabular-nums"
    if Decimal(amount) < 0:
        style += ";color:var(--error-fg, #ba2121)"
    return format_html(
        '<span class="{}" style="{}">{}</span>', css, style, money_text(amount, currency)
    )


def when(value: datetime | date | None) -> str:
    """`2026-04-01` when the time is midnight (ATLAS dates carry no time), else with hh:mm."""
    if value is None:
        return "—"
    if not isinstance(value, datetime):
        return value.isoformat()
    if timezone.is_aware(value):
        value = timezone.localtime(value)
    if (value.hour, value.minute, value.second) == (0, 0, 0):
        return f"{value:%Y-%m-%d}"
    return f"{value:%Y-%m-%d %H:%M}"


def gl_account_names(numbers: Iterable[str]) -> dict[str, str]:
    """Number → name of the live mirrored GL accounts among `numbers`, in one query."""
    wanted = {number for number in numbers if number}
    if not wanted:
        return {}
    return dict(
        GLAccount.objects.filter(number__in=wanted)
        .exclude(sync_state=SyncState.MISSING)
        .values_list("number", "name")
    )


def gl_account(number: str, names: dict[str, str]) -> SafeString | str:
    """`1200 Receivables`; an unknown number says so instead of looking valid."""
    if not number:
        return "—"
    name = names.get(number)
    if name is None:
        return format_html('{} <span class="quiet">(not in the chart)</span>', number)
    return format_html("{} <span>{}</span>", number, name)


def pretty_json(value: Any) -> str:
    """Indented JSON from a JSON text or a Python value; the text itself when it is not JSON."""
    if value in (None, "", {}, []):
        return ""
    if isinstance(value, str):
        try:
            value = wire.loads(value)
        except ValueError:
            return value
    return wire.dumps(value, indent=2)


def json_panel(value: Any, *, user: Any, summary: str = "Raw JSON") -> SafeString | str:
    """The payload, pretty-printed and folded, for superusers only; nothing for anyone else."""
    text = pretty_json(value)
    if not text or not getattr(user, "is_superuser", False):
        return ""
    return format_html(
        '<details class="raw-json"><summary>{}</summary>'
        '<pre style="max-height:420px;overflow:auto;white-space:pre-wrap">{}</pre></details>',
        summary,
        text,
    )


def counted(count: int, singular: str, plural: str) -> str:
    """`1 journal`, `3 journals`, `1,200 journals`: admin messages say it as a person would."""
    return f"{count:,} {ngettext(singular, plural, count)}"
