"""Factories for the order pipeline (OrderSync, transitions, journals, lines) and a helper that
sets up everything a journal is validated against, so a test changes only what it is about."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import factory
from django.conf import settings
from django.utils import timezone

from ledger_sync.models import (
    AccountingPeriod,
    Counterparty,
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
)
from tests.factories.atlas import CounterpartyFactory, OrderFactory, OrderItemFactory
from tests.factories.parties import CounterpartyMappingFactory
from tests.factories.reference import (
    LedgerFactory,
    PostingSettingsFactory,
    monthly_periods,
    sandbox_chart,
)


class OrderSyncFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = OrderSync

    order = factory.SubFactory(OrderFactory)
    state = OrderState.READY


class OrderTransitionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = OrderTransition

    order_sync = factory.SubFactory(OrderSyncFactory)
    from_state = OrderState.MIRRORED
    to_state = OrderState.READY
    actor = "system:test"
    at = factory.LazyFunction(timezone.now)


class JournalFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Journal

    order_sync = factory.SubFactory(OrderSyncFactory)
    revision = 1
    kind = Journal.Kind.POSTING
    status = Journal.Status.BUILT
    source_transaction_reference = factory.LazyAttribute(
        lambda o: f"ATLAS-ORDER-{o.order_sync.order.atlas_id}-R{o.revision}"
    )
    workflow = Journal.Workflow.REVIEW
    currency = "EUR"
    total_debit = Decimal("100.00")
    total_credit = Decimal("100.00")
    occurred_on = date(2026, 4, 1)
    event_date = date(2026, 4, 1)


class JournalLineFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = JournalLine

    journal = factory.SubFactory(JournalFactory)
    position = factory.Sequence(lambda n: n + 1)
    side = JournalLine.Side.DEBIT
    gl_account = "1200"
    amount = Decimal("100.00")
    currency = "EUR"
    billing_account_num = "BA-100001"
    description = "SO-2026-04-0001 · Baseload power 2026-03 · receivable"
    entry_values = factory.LazyFunction(dict)


@dataclass
class JournalWorld:
    """The mirrored reference data a journal is validated against."""

    ledger: Ledger
    periods: list[AccountingPeriod]
    chart: dict[str, GLAccount]
    posting_settings: PostingSettings

    def period_of_month(self, month: int) -> AccountingPeriod:
        return next(p for p in self.periods if p.start_date.month == month)


def journal_world(
    *,
    closed_months: tuple[int, ...] = (),
    closed_period_policy: str = "block",
    journal_workflow: str = "review",
    create_zero_amount_entries: bool = False,
    year: int = 2026,
) -> JournalWorld:
    """The configured ledger with 12 monthly periods, the sandbox chart, posting settings."""
    ledger = LedgerFactory(
        gotransverse_id=int(settings.GOTRANSVERSE_LEDGER_ID),
        create_zero_amount_entries=create_zero_amount_entries,
    )
    periods = monthly_periods(ledger=ledger, year=year, closed_months=closed_months)
    chart = sandbox_chart()
    posting_settings = PostingSettingsFactory(
        closed_period_policy=closed_period_policy, journal_workflow=journal_workflow
    )
    return JournalWorld(
        ledger=ledger, periods=periods, chart=chart, posting_settings=posting_settings
    )


def mapped_counterparty(*, erp_code: str = "BA-100001", **kwargs: Any) -> Counterparty:
    """An ATLAS counterparty with an approved mapping to `erp_code`."""
    counterparty = CounterpartyFactory(**kwargs)
    CounterpartyMappingFactory(
        counterparty=counterparty, erp_party__code=erp_code, erp_code=erp_code
    )
    return counterparty


def order_with_items(
    *,
    items: list[dict[str, Any]] | None = None,
    counterparty: Any = "mapped",
    total_amount: Decimal | None = None,
    **order_kwargs: Any,
) -> Order:
    """An ATLAS order with its items; totalAmount is the items' signed gross sum unless given.

    Each dict in `items` overrides OrderItemFactory fields (default: one Active item).
    `counterparty`: a mapped one by default; None for an order whose counterparty is not in the
    mirror (then pass counterparty_atlas_id).
    """
    specs = items if items is not None else [{}]
    if counterparty == "mapped":
        counterparty = mapped_counterparty()
    order_kwargs["counterparty"] = counterparty
    order = OrderFactory(total_amount=Decimal("0.00"), **order_kwargs)
    created: list[OrderItem] = [OrderItemFactory(order=order, **spec) for spec in specs]
    if total_amount is None:
        total_amount = sum(
            (
                item.net_amount + item.vat_amount
                for item in created
                if item.status == OrderItem.Status.IN_ORDER
            ),
            Decimal("0.00"),
        )
    order.total_amount = total_amount
    order.save(update_fields=["total_amount"])
    return order
