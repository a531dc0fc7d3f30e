"""The dashboard's charts. Amounts are drawn server-side as SVG by pygal (a pinned PyPI
package; nothing is fetched by the browser, no chart code is copied into the repo); the order
pipeline is plain HTML bars, each a link to the orders in that state.

Figures are converted to float only to be drawn; the labels show the Decimal amounts with
thousands separators and their currency."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Any

import pygal
from django.urls import reverse
from django.utils.safestring import SafeString, mark_safe
from pygal.style import Style

from ledger_sync.models import OrderState
from ledger_sync.selectors.dashboard import CashflowMonth, PeriodAmount, Pipeline

_STYLE = Style(
    background="transparent",
    plot_background="transparent",
    foreground="#333",
    foreground_strong="#222",
    foreground_subtle="#bbb",
    colors=("#417690", "#c0792b", "#5b8a3a", "#8a3a6f", "#3a5b8a"),
    font_family="system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif",
    label_font_size=11,
    major_label_font_size=11,
    legend_font_size=12,
    value_font_size=10,
    tooltip_font_size=12,
)
_LABELS = dict(OrderState.choices)
# States an order leaves the happy path by: shown apart, in the colours of a problem.
_OFF_PATH = {OrderState.BLOCKED, OrderState.FAILED, OrderState.PROCESSED_ELSEWHERE}


def money(amount: Decimal, currency: str = "") -> str:
    text = f"{amount:,.2f}"
    return f"{text} {currency}".strip()


def pipeline_funnel(pipeline: Pipeline) -> list[dict[str, Any]]:
    """One row per state in pipeline order: label, count, width (% of the largest), link."""
    largest = max(pipeline.by_state.values(), default=0) or 1
    base = reverse("admin:ledger_sync_ordersync_changelist")
    return [
        {
            "state": state,
            "label": _LABELS.get(state, state),
            "count": count,
            "width": round(100 * count / largest, 1),
            "url": f"{base}?state__exact={state}",
            "off_path": state in _OFF_PATH,
        }
        for state, count in pipeline.by_state.items()
    ]


def _chart(chart_type: type, *, title: str, x_labels: list[str]) -> Any:
    chart = chart_type(
        style=_STYLE,
        js=[],  # pygal's interactive JS would be fetched from its site: none
        disable_xml_declaration=True,
        width=640,
        height=300,
        explicit_size=False,
        legend_at_bottom=True,
        legend_at_bottom_columns=4,
        print_values=False,
        show_y_guides=True,
        x_label_rotation=30 if len(x_labels) > 6 else 0,
        truncate_label=-1,
        margin=12,
        title=title,
        # The axis reads as the amounts do: 1,400,000, not 1400000.
        value_formatter=lambda value: f"{value:,.0f}",
    )
    chart.x_labels = x_labels
    return chart


def _render(chart: Any) -> SafeString:
    # pygal escapes labels and values itself; the SVG is inlined in the page.
    return mark_safe(chart.render(is_unicode=True))  # noqa: S308


def posted_per_period_chart(rows: list[PeriodAmount]) -> dict[str, Any]:
    """Bars per accounting period, one series per currency."""
    periods = list(dict.fromkeys(row.period for row in rows))
    by_currency: dict[str, dict[str, Decimal]] = defaultdict(dict)
    for row in rows:
        by_currency[row.currency][row.period] = row.amount
    chart = _chart(pygal.Bar, title="Posted to the AR Ledger per period", x_labels=periods)
    for currency, amounts in sorted(by_currency.items()):
        chart.add(
            currency,
            [
                {"value": float(amounts[p]), "label": money(amounts[p], currency)}
                if p in amounts
                else None
                for p in periods
            ],
            formatter=lambda value, currency=currency: money(Decimal(str(value)), currency),
        )
    totals = [
        {"currency": currency, "amount": money(sum(amounts.values(), Decimal("0.00")), currency)}
        for currency, amounts in sorted(by_currency.items())
    ]
    return {"svg": _render(chart) if rows else "", "totals": totals, "empty": not rows}


def cashflow_chart(rows: list[CashflowMonth]) -> dict[str, Any]:
    """Receivable against payable per due month, a pair of series per currency."""
    months = sorted({row.month for row in rows})
    labels = [f"{month:%b %Y}" for month in months]
    chart = _chart(pygal.Bar, title="Cashflow of posted orders by due month", x_labels=labels)
    currencies = sorted({row.currency for row in rows})
    index = {(row.month, row.currency): row for row in rows}
    for currency in currencies:
        for side, label in (("receivable", "Receivable"), ("payable", "Payable")):
            values = []
            for month in months:
                row = index.get((month, currency))
                amount = getattr(row, side) if row else None
                values.append(
                    None
                    if amount is None
                    else {"value": float(amount), "label": money(amount, currency)}
                )
            chart.add(
                f"{label} {currency}" if len(currencies) > 1 else label,
                values,
                formatter=lambda value, currency=currency: money(Decimal(str(value)), currency),
            )
    totals = [
        {
            "currency": currency,
            "receivable": money(
                sum((r.receivable for r in rows if r.currency == currency), Decimal("0.00")),
                currency,
            ),
            "payable": money(
                sum((r.payable for r in rows if r.currency == currency), Decimal("0.00")),
                currency,
            ),
        }
        for currency in currencies
    ]
    return {"svg": _render(chart) if rows else "", "totals": totals, "empty": not rows}
