"""The home page costs a fixed number of SQL queries, whatever the number of orders: at most 15
with 10,000 orders (and their items, journals, proposals and failures) in the database."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from ledger_sync.models import (
    BlockedReason,
    Counterparty,
    Journal,
    MatchProposal,
    Order,
    OrderItem,
    OrderState,
    OrderSync,
    SyncState,
)
from tests.factories.parties import ErpPartyFactory, accountant, finance_lead
from tests.factories.reconciliation import ReconciliationRunFactory

pytestmark = pytest.mark.django_db

ORDERS = 10_000
MAX_QUERIES = 15
NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
STATES = [
    OrderState.POSTED,
    OrderState.PAID,
    OrderState.INVOICED,
    OrderState.AWAITING_REVIEW,
    OrderState.BLOCKED,
    OrderState.READY,
    OrderState.FAILED,
    OrderState.WAITING,
]
REASONS = [BlockedReason.UNMATCHED_COUNTERPARTY, BlockedReason.CLOSED_PERIOD]


def _mirrored(**fields):
    return {
        "raw_json": "{}",
        "content_hash": "0" * 64,
        "first_seen_at": NOW,
        "last_seen_at": NOW,
        "last_changed_at": NOW,
        **fields,
    }


@pytest.fixture
def ten_thousand_orders():
    counterparties = Counterparty.objects.bulk_create(
        Counterparty(
            **_mirrored(
                atlas_id=1000 + n,
                name=f"Trader {n}",
                legal_name=f"Trader {n} GmbH",
                counterparty_type_id=1,
                sync_state=SyncState.INVALID if n % 25 == 0 else SyncState.SYNCED,
            )
        )
        for n in range(100)
    )
    party = ErpPartyFactory()
    MatchProposal.objects.bulk_create(
        MatchProposal(counterparty=c, erp_party=party, score=80, proposed_at=NOW)
        for c in counterparties[:40]
    )
    orders = Order.objects.bulk_create(
        Order(
            **_mirrored(
                atlas_id=100_000 + n,
                counterparty=counterparties[n % 100],
                counterparty_atlas_id=1000 + n % 100,
                status="Approved order by ETRM",
                document_reference=f"SO-{n}",
                currency="EUR" if n % 10 else "USD",
                registration_date=NOW,
                due_date=NOW + timedelta(days=30 * (n % 12)),
                total_amount=Decimal("119.00"),
            )
        )
        for n in range(ORDERS)
    )
    syncs = OrderSync.objects.bulk_create(
        OrderSync(
            order=order,
            state=STATES[n % len(STATES)],
            blocked_reason=REASONS[n % 2] if STATES[n % len(STATES)] == OrderState.BLOCKED else "",
        )
        for n, order in enumerate(orders)
    )
    OrderItem.objects.bulk_create(
        OrderItem(
            **_mirrored(
                atlas_id=1_000_000 + 2 * n + side,
                order=order,
                order_atlas_id=order.atlas_id,
                net_amount=Decimal("100.00") if side == 0 else Decimal("-40.00"),
                vat_amount=Decimal("19.00") if side == 0 else Decimal("-7.60"),
                cashflow=side,
                status=OrderItem.Status.IN_ORDER,
            )
        )
        for n, order in enumerate(orders)
        for side in (0, 1)
    )
    Journal.objects.bulk_create(
        Journal(
            order_sync=sync,
            revision=1,
            status=Journal.Status.POSTED
            if sync.state != OrderState.AWAITING_REVIEW
            else Journal.Status.DRAFT,
            source_transaction_reference=f"ATLAS-ORDER-{sync.order.atlas_id}-R1",
            workflow=Journal.Workflow.REVIEW,
            currency=sync.order.currency,
            total_debit=Decimal("119.00"),
            total_credit=Decimal("119.00"),
            occurred_on=date(2026, 1 + n % 12, 1),
            event_date=date(2026, 1 + n % 12, 1),
            landed_period=f"2026-{1 + n % 12:02d}",
        )
        for n, sync in enumerate(syncs)
        if sync.state
        in (OrderState.POSTED, OrderState.PAID, OrderState.INVOICED, OrderState.AWAITING_REVIEW)
    )
    return orders


def test_the_dashboard_renders_in_at_most_15_queries_at_10000_orders(
    client, ten_thousand_orders, django_assert_max_num_queries
):
    ReconciliationRunFactory(difference_count=3)  # the "Last reconciliation" card has a run
    # Both roles on one set of 10,000 orders (building it is the slow part of this test).
    for user in (finance_lead(), accountant()):
        client.force_login(user)

        with django_assert_max_num_queries(MAX_QUERIES):
            response = client.get("/admin/")

        assert response.status_code == 200
        html = response.content.decode()
        # The page did show the figures it was asked for, not an empty shell.
        assert f'<span class="n">{ORDERS // len(STATES)}</span>' in html
        assert "Drafts to review" in html
        assert "3 differences found" in html
