"""Claims: two workers never hold (nor post) the same order."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from ledger_sync.models import OrderState, OrderSync
from ledger_sync.services import claims, posting
from ledger_sync.services.claims import (
    _claim_compare_and_set,
    orders_claim,
    orders_claimable,
    orders_release,
)
from ledger_sync.services.posting import journals_post
from tests.concurrency import race
from tests.ledger_sync.services.posting_support import (
    built_journal,
    ledger_fixture,  # noqa: F401 - the `ledger` fixture
)

BUILT = (OrderState.JOURNAL_BUILT,)


def _built(count: int) -> list[int]:
    return [built_journal().order_sync_id for _ in range(count)]


@pytest.mark.django_db
def test_a_claimed_order_is_not_claimed_by_another_worker():
    ids = _built(4)

    first = orders_claim(states=BUILT, limit=3, worker_id="worker-a")
    second = orders_claim(states=BUILT, limit=10, worker_id="worker-b")

    assert [o.pk for o in first] == ids[:3]
    assert [o.pk for o in second] == ids[3:]
    assert set(OrderSync.objects.values_list("claimed_by", flat=True)) == {"worker-a", "worker-b"}


@pytest.mark.django_db
def test_compare_and_set_leaves_rows_another_worker_claimed_in_between():
    ids = _built(3)
    now = timezone.now()
    claimable = orders_claimable(states=BUILT, now=now)
    candidates = list(claimable.order_by("pk").values_list("pk", flat=True))
    # Worker B wins the middle order between A's read and A's update.
    OrderSync.objects.filter(pk=ids[1]).update(claimed_by="worker-b", claimed_at=now)

    won = _claim_compare_and_set(claimable, candidate_ids=candidates, worker_id="a", now=now)

    assert won == [ids[0], ids[2]]
    assert OrderSync.objects.get(pk=ids[1]).claimed_by == "worker-b"


@pytest.mark.django_db
def test_a_stale_claim_can_be_taken_over_and_a_fresh_one_cannot(settings):
    (pk,) = _built(1)
    now = timezone.now()
    OrderSync.objects.filter(pk=pk).update(claimed_by="dead", claimed_at=now - timedelta(seconds=5))

    assert orders_claim(states=BUILT, limit=1, worker_id="b", now=now) == []

    later = now + timedelta(seconds=settings.LEDGER_CLAIM_TIMEOUT_SECONDS)
    assert [o.pk for o in orders_claim(states=BUILT, limit=1, worker_id="b", now=later)] == [pk]


@pytest.mark.django_db
def test_a_failed_order_is_claimed_only_after_its_backoff():
    (pk,) = _built(1)
    now = timezone.now()
    OrderSync.objects.filter(pk=pk).update(
        state=OrderState.FAILED, next_attempt_at=now + timedelta(minutes=5)
    )
    failed = (OrderState.FAILED,)

    assert orders_claim(states=failed, limit=1, worker_id="w", now=now) == []
    claimed = orders_claim(states=failed, limit=1, worker_id="w", now=now + timedelta(minutes=6))
    assert [o.pk for o in claimed] == [pk]


@pytest.mark.django_db
def test_release_gives_back_only_our_own_claims():
    a, b = _built(2)
    orders_claim(states=BUILT, limit=1, worker_id="w1")
    orders_claim(states=BUILT, limit=1, worker_id="w2")

    assert orders_release(order_sync_ids=[a, b], worker_id="w1") == 1
    assert OrderSync.objects.get(pk=a).claimed_by == ""
    assert OrderSync.objects.get(pk=b).claimed_by == "w2"


@pytest.mark.django_db(transaction=True)
def test_sqlite_compare_and_set_path_is_used_where_skip_locked_is_missing(monkeypatch):
    ids = _built(2)
    monkeypatch.setattr(connection.features, "has_select_for_update_skip_locked", False)
    calls = []
    real = claims._claim_compare_and_set
    monkeypatch.setattr(
        claims, "_claim_compare_and_set", lambda *a, **k: calls.append(1) or real(*a, **k)
    )

    assert [o.pk for o in orders_claim(states=BUILT, limit=5, worker_id="w")] == ids
    assert calls == [1]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_workers_racing_on_postgresql_never_claim_the_same_order():
    if connection.vendor != "postgresql":
        pytest.skip("row locks with SKIP LOCKED need PostgreSQL")
    ids = _built(60)

    def claim_all(index: int) -> list[int]:
        mine = []
        while True:
            claimed = orders_claim(states=BUILT, limit=7, worker_id=f"worker-{index}")
            if not claimed:
                return mine
            mine.extend(o.pk for o in claimed)

    results = race(4, claim_all)

    every = [pk for mine in results for pk in mine]
    assert sorted(every) == sorted(ids)  # each order claimed exactly once


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_workers_racing_on_postgresql_post_each_order_once(ledger, settings):
    if connection.vendor != "postgresql":
        pytest.skip("row locks with SKIP LOCKED need PostgreSQL")
    settings.LEDGER_POST_BATCH_SIZE = 5
    journals = [built_journal() for _ in range(40)]

    reports = race(4, lambda i: journals_post(client=ledger.client(), worker_id=f"w{i}"))

    assert sum(r.posted for r in reports) == 40
    for journal in journals:
        assert (
            len(ledger.app.transactions_with_reference(journal.source_transaction_reference)) == 1
        )
    assert len(ledger.app.transactions) == 40
    assert set(OrderSync.objects.values_list("state", flat=True)) == {OrderState.POSTED}


@pytest.mark.django_db(transaction=True)
def test_a_worker_whose_claim_was_taken_over_does_not_send(ledger, monkeypatch):
    journal = built_journal()
    real_refresh = posting._claims_refresh

    def stalled_then_refresh(items, *, worker_id):
        # This worker stalled past the claim timeout; another one took the order over.
        OrderSync.objects.filter(pk=journal.order_sync_id).update(claimed_by="worker-b")
        return real_refresh(items, worker_id=worker_id)

    monkeypatch.setattr(posting, "_claims_refresh", stalled_then_refresh)

    report = journals_post(client=ledger.client(), worker_id="worker-a")

    assert report.sent == 0
    assert ledger.bulk_creates() == []
    assert OrderSync.objects.get(pk=journal.order_sync_id).claimed_by == "worker-b"
