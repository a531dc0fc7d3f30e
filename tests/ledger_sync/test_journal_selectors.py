"""Reads for the admin: orders by state and reason, waiting orders, journals with totals."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from ledger_sync.models import BlockedReason, Journal, OrderItem, OrderState
from ledger_sync.selectors.journals import (
    journal_detail,
    journal_totals,
    journals_list,
    order_sync_counts_by_blocked_reason,
    order_sync_counts_by_state,
    order_sync_current_journal,
    order_sync_history,
    order_syncs_list,
    orders_waiting,
)
from ledger_sync.services.order_selection import orders_select_candidates
from ledger_sync.services.order_states import order_transition
from tests.factories.journals import (
    JournalFactory,
    JournalLineFactory,
    OrderSyncFactory,
    order_with_items,
)

pytestmark = pytest.mark.django_db
S = OrderState
D = Decimal


def test_orders_filter_by_state_and_reason():
    blocked = OrderSyncFactory(
        state=S.BLOCKED,
        blocked_reason=BlockedReason.CLOSED_PERIOD,
        blocked_message="closed",
    )
    OrderSyncFactory(state=S.BLOCKED, blocked_reason=BlockedReason.UNKNOWN_GL_ACCOUNT)
    OrderSyncFactory(state=S.READY)

    assert list(order_syncs_list(blocked_reason=BlockedReason.CLOSED_PERIOD)) == [blocked]
    assert order_syncs_list(state=S.BLOCKED).count() == 2
    assert order_sync_counts_by_state()[S.BLOCKED] == 2
    assert order_sync_counts_by_state()[S.PAID] == 0
    assert order_sync_counts_by_blocked_reason() == {
        "closed_period": 1,
        "unknown_gl_account": 1,
    }


def test_waiting_orders_come_with_the_items_that_hold_them():
    order = order_with_items(
        items=[
            {"status": OrderItem.Status.IN_ORDER},
            {"status": OrderItem.Status.EDITED},
        ]
    )
    orders_select_candidates()

    (waiting,) = orders_waiting()

    assert waiting.order_sync.order == order
    assert [item.status for item in waiting.holding_items] == [OrderItem.Status.EDITED]


def test_journal_detail_totals_come_from_the_lines():
    journal = JournalFactory(total_debit=D("999.00"))
    JournalLineFactory(journal=journal, position=1, side="debit", amount=D("119.00"))
    JournalLineFactory(journal=journal, position=2, side="credit", amount=D("100.00"))
    JournalLineFactory(journal=journal, position=3, side="credit", amount=D("19.00"))

    detail = journal_detail(journal_id=journal.pk)

    assert [line.position for line in detail.lines] == [1, 2, 3]
    assert (detail.total_debit, detail.total_credit, detail.balanced) == (
        D("119.00"),
        D("119.00"),
        True,
    )
    assert journal_totals(journal_ids=[journal.pk]) == {journal.pk: (D("119.00"), D("119.00"))}


def test_journal_list_costs_one_query_whatever_its_length():
    for _ in range(5):
        JournalFactory()

    with CaptureQueriesContext(connection) as queries:
        rows = [
            (j.order_sync.order.atlas_id, j.order_sync.order.counterparty.name)
            for j in journals_list()
        ]

    assert len(rows) == 5
    assert len(queries) == 1


def test_journal_list_filters_by_order_state_and_journal_status():
    built = JournalFactory(order_sync__state=S.JOURNAL_BUILT)
    JournalFactory(order_sync__state=S.POSTED, status=Journal.Status.POSTED)

    assert list(journals_list(state=S.JOURNAL_BUILT)) == [built]
    assert journals_list(status=Journal.Status.POSTED).count() == 1


def test_current_journal_and_history():
    order_sync = OrderSyncFactory(state=S.READY, revision=2)
    JournalFactory(order_sync=order_sync, revision=1, status=Journal.Status.REVERSED)
    current = JournalFactory(order_sync=order_sync, revision=2)
    order_transition(order_sync=order_sync, to_state=S.JOURNAL_BUILT, actor="system:test")

    assert order_sync_current_journal(order_sync=order_sync) == current
    assert [t.to_state for t in order_sync_history(order_sync=order_sync)] == [S.JOURNAL_BUILT]
