"""After a fix, the affected orders are re-checked at once (queued after the fix commits), not at
the next scheduled cycle; running the re-check releases what the fix unblocked."""

from __future__ import annotations

import pytest
from django.utils import timezone

from ledger_sync.models import (
    BlockedReason,
    Journal,
    OrderState,
    OrderSync,
    SyncRun,
)
from ledger_sync.services import rechecks
from ledger_sync.services.custom_fields import custom_field_mapping_set
from ledger_sync.services.journals import order_build_journal
from ledger_sync.services.matching import counterparty_create_erp_party, match_proposal_approve
from ledger_sync.services.posting_settings import posting_settings_update
from ledger_sync.services.rechecks import orders_recheck_after_reference_sync
from ledger_sync.tasks import orders_recheck_task
from tests.factories.atlas import CounterpartyFactory, CustomFieldDefinitionFactory
from tests.factories.journals import OrderSyncFactory, journal_world, order_with_items
from tests.factories.parties import MatchProposalFactory, finance_lead
from tests.ledger_sync.services.posting_support import (
    ledger_fixture,  # noqa: F401 - the `ledger` fixture
)

pytestmark = pytest.mark.django_db
S = OrderState


@pytest.fixture
def queued(monkeypatch) -> list[tuple]:
    calls: list[tuple] = []
    monkeypatch.setattr(
        rechecks, "async_task", lambda func, *args, **kwargs: calls.append((func, *args))
    )
    return calls


def blocked(counterparty, *, reason: str = BlockedReason.UNMATCHED_COUNTERPARTY) -> OrderSync:
    return OrderSyncFactory(
        order=order_with_items(counterparty=counterparty),
        state=S.BLOCKED,
        blocked_reason=reason,
        blocked_message="blocked for the test",
    )


def test_approving_a_match_queues_that_counterpartys_blocked_and_ready_orders(
    queued, django_capture_on_commit_callbacks
):
    counterparty = CounterpartyFactory()
    mine = blocked(counterparty)
    ready = OrderSyncFactory(order=order_with_items(counterparty=counterparty), state=S.READY)
    blocked(counterparty, reason=BlockedReason.REMOTE_REJECTION)  # a person's rebuild only
    blocked(CounterpartyFactory())  # another counterparty's
    proposal = MatchProposalFactory(counterparty=counterparty)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        match_proposal_approve(proposals=[proposal], user=finance_lead(), write_back=False)
        assert queued == []  # nothing before the approval commits
    for callback in callbacks:
        callback()

    assert queued == [
        ("ledger_sync.tasks.orders_recheck_task", sorted([mine.pk, ready.pk]), "match approved")
    ]


def test_creating_an_erp_party_queues_the_counterpartys_orders(
    queued, django_capture_on_commit_callbacks
):
    counterparty = CounterpartyFactory()
    mine = blocked(counterparty)

    with django_capture_on_commit_callbacks(execute=True):
        counterparty_create_erp_party(
            counterparty=counterparty, user=finance_lead(), write_back=False
        )

    assert queued == [("ledger_sync.tasks.orders_recheck_task", [mine.pk], "ERP party created")]


@pytest.mark.parametrize("fix", ["mapping", "settings"])
def test_a_mapping_or_settings_change_queues_every_blocked_order(
    fix, queued, django_capture_on_commit_callbacks
):
    world = journal_world()
    orders = [blocked(CounterpartyFactory()) for _ in range(3)]
    OrderSyncFactory(state=S.READY)  # not blocked: the cycle builds it anyway
    user = finance_lead()

    with django_capture_on_commit_callbacks(execute=True):
        if fix == "mapping":
            custom_field_mapping_set(
                definition=CustomFieldDefinitionFactory(), user=user, target_key="cost_centre"
            )
        else:
            assert world.posting_settings.journal_workflow == "review"
            posting_settings_update(user=user, journal_workflow="auto")

    assert [call[1] for call in queued] == [sorted(o.pk for o in orders)]


def test_the_recheck_is_queued_in_batches(queued, settings, monkeypatch):
    monkeypatch.setattr(rechecks, "BATCH_SIZE", 2)
    orders = [blocked(CounterpartyFactory()) for _ in range(5)]

    assert rechecks.orders_recheck_queue(reason="test") == 3

    assert [call[1] for call in queued] == [
        [orders[0].pk, orders[1].pk],
        [orders[2].pk, orders[3].pk],
        [orders[4].pk],
    ]


def test_nothing_is_queued_when_no_order_is_affected(queued, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        counterparty_create_erp_party(
            counterparty=CounterpartyFactory(), user=finance_lead(), write_back=False
        )

    assert queued == []


def _run(**counts) -> SyncRun:
    return SyncRun(
        system=SyncRun.System.GOTRANSVERSE,
        trigger=SyncRun.Trigger.SCHEDULE,
        status=SyncRun.Status.SUCCEEDED,
        started_at=timezone.now(),
        counts={"GLAccount": {"created": 0, "updated": 0, "unchanged": 10, **counts}},
    )


def test_a_reference_pass_that_changed_something_queues_the_blocked_orders(
    queued, django_capture_on_commit_callbacks
):
    order = blocked(CounterpartyFactory(), reason=BlockedReason.UNKNOWN_GL_ACCOUNT)

    with django_capture_on_commit_callbacks(execute=True):
        orders_recheck_after_reference_sync(run=_run())  # nothing changed
        assert queued == []
        orders_recheck_after_reference_sync(run=_run(created=1))

    assert queued == [
        ("ledger_sync.tasks.orders_recheck_task", [order.pk], "reference data synced")
    ]


def test_approving_the_match_releases_the_blocked_order_and_sends_it_at_once(
    ledger, django_capture_on_commit_callbacks
):
    """End to end, the task run in-process (django-q2 sync mode): blocked → posted."""
    journal_world(journal_workflow="auto")
    counterparty = CounterpartyFactory()
    order_sync = OrderSyncFactory(order=order_with_items(counterparty=counterparty), state=S.READY)
    assert order_build_journal(order_sync=order_sync, actor="system:test") is None
    order_sync.refresh_from_db()
    assert order_sync.blocked_reason == BlockedReason.UNMATCHED_COUNTERPARTY
    proposal = MatchProposalFactory(counterparty=counterparty)

    with django_capture_on_commit_callbacks(execute=True):
        match_proposal_approve(proposals=[proposal], user=finance_lead(), write_back=False)

    order_sync.refresh_from_db()
    assert order_sync.state == S.POSTED
    journal = Journal.objects.get(order_sync=order_sync)
    assert journal.status == Journal.Status.POSTED
    sent = [
        transaction["source_transaction_reference"]
        for call in ledger.bulk_creates()
        for transaction in call.body
    ]
    assert sent == [journal.source_transaction_reference]


def test_the_task_leaves_an_order_that_is_still_blocked_blocked_with_the_current_reason(ledger):
    journal_world()
    order_sync = blocked(CounterpartyFactory())

    result = orders_recheck_task([order_sync.pk], "test")

    order_sync.refresh_from_db()
    assert order_sync.state == S.BLOCKED
    assert order_sync.blocked_reason == BlockedReason.UNMATCHED_COUNTERPARTY
    assert result["still_blocked"] == 1 and result["sent"] == 0
    assert ledger.bulk_creates() == []


def test_the_task_skips_orders_no_longer_blocked_or_ready(ledger):
    journal_world()
    posted = OrderSyncFactory(state=S.POSTED)

    result = orders_recheck_task([posted.pk], "test")

    posted.refresh_from_db()
    assert posted.state == S.POSTED
    assert result["outcomes"] == {}
