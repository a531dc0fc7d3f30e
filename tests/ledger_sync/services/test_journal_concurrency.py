"""Selection and building run by several workers at once on PostgreSQL: each order gets one
OrderSync, one journal per revision, and its history records each change once."""

from __future__ import annotations

from collections import Counter

import pytest
from django.db import connection

from ledger_sync.models import Journal, OrderState, OrderSync, OrderTransition
from ledger_sync.services.journals import orders_build_ready
from ledger_sync.services.order_selection import orders_select_candidates
from tests.concurrency import race
from tests.factories.journals import journal_world, order_with_items

S = OrderState


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_selection_and_building_make_each_journal_once():
    if connection.vendor != "postgresql":
        pytest.skip("concurrent writers need PostgreSQL")
    journal_world()
    orders = [order_with_items() for _ in range(30)]

    race(3, lambda i: orders_select_candidates(actor=f"system:w{i}", batch_size=7))
    race(3, lambda i: orders_build_ready(actor=f"system:w{i}", batch_size=4))

    assert OrderSync.objects.count() == len(orders)
    assert set(OrderSync.objects.values_list("state", flat=True)) == {S.JOURNAL_BUILT}
    per_order = Counter(Journal.objects.values_list("order_sync_id", flat=True))
    assert set(per_order.values()) == {1}
    selected = Counter(
        OrderTransition.objects.filter(to_state=S.READY).values_list("order_sync_id", flat=True)
    )
    built = Counter(
        OrderTransition.objects.filter(to_state=S.JOURNAL_BUILT).values_list(
            "order_sync_id", flat=True
        )
    )
    assert set(selected.values()) == {1}
    assert set(built.values()) == {1}
