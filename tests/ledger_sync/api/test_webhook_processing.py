"""The webhook's task: re-fetch the order from ATLAS (never trusting the payload) and run the
journal pipeline for it, on both sandboxes over loopback."""

from __future__ import annotations

import pytest
from django.utils import timezone

from integration.gotransverse.client import GotransverseClient
from ledger_sync.models import (
    InboundDelivery,
    Journal,
    OrderState,
    OrderSync,
    OrderTransition,
)
from ledger_sync.services.atlas_mirror import atlas_mirror_records
from ledger_sync.services.gotransverse_mirror import gotransverse_mirror_run
from ledger_sync.services.inbound import inbound_delivery_replay
from ledger_sync.services.journals import order_build_journal
from ledger_sync.services.matching import counterparty_propose_matches
from ledger_sync.services.order_selection import orders_select_candidates
from ledger_sync.services.sweep import inbound_sweep
from tests.ledger_sync.api.conftest import order_event
from tests.ledger_sync.api.payment_support import atlas_client_for

pytestmark = pytest.mark.django_db(transaction=True)

TRIGGER = "Approved order by ETRM"


@pytest.fixture
def world(atlas_sandbox, gotransverse_sandbox, settings):
    """Both sandboxes, the AR Ledger's reference data mirrored, every counterparty mapped by
    its ATLAS externalId, auto posting; returns (atlas, ledger, a clean order's id)."""
    settings.JOURNAL_WORKFLOW = "auto"
    settings.ATLAS_MAX_RETRIES = 0
    settings.GOTRANSVERSE_MAX_RETRIES = 0
    dataset = atlas_sandbox.app.dataset
    for counterparty in dataset.counterparties.values():
        counterparty["externalId"] = counterparty["externalId"] or f"CUST-{counterparty['id']:04d}"
    gotransverse_mirror_run(
        client=GotransverseClient(
            base_url=gotransverse_sandbox.url, api_key=gotransverse_sandbox.api_key
        ),
        ledger_id=settings.GOTRANSVERSE_LEDGER_ID,
        trigger="command",
    )
    order_id = _clean_ready_order(dataset)
    atlas_sandbox.app.reset_calls()
    return atlas_sandbox, gotransverse_sandbox, order_id


def _clean_ready_order(dataset, *, skip: frozenset[int] = frozenset()) -> int:
    broken = {oid for ids in dataset.broken.values() for oid in ids}
    with_invoice = {invoice["orderId"] for invoice in dataset.invoices.values()}
    for order_id, order in sorted(dataset.orders.items()):
        items = [i for i in dataset.order_items.values() if i["orderId"] == order_id]
        if (
            order["status"] == TRIGGER
            and not order["erpCode"]
            and order_id not in broken
            and order_id not in with_invoice
            and order_id not in skip
            and items
            and all(item["status"] == 2 for item in items)
            and all(item["cashflow"] == 0 for item in items)
        ):
            return order_id
    raise AssertionError("the sandbox has no clean order in the trigger status")


def _clone_order(app, order_id: int) -> int:
    """A second clean order in the trigger status: a copy of `order_id` with its own ids."""
    dataset = app.dataset
    new_id = max(dataset.orders) + 1
    dataset.orders[new_id] = {
        **dataset.orders[order_id],
        "id": new_id,
        "documentReference": f"SO-CLONE-{new_id}",
    }
    next_item = max(dataset.order_items) + 1
    for item in [i for i in dataset.order_items.values() if i["orderId"] == order_id]:
        dataset.order_items[next_item] = {**item, "id": next_item, "orderId": new_id}
        next_item += 1
    app._build_indexes()
    return new_id


def _paths(atlas) -> list[str]:
    return [call.path for call in atlas.app.calls if call.path != "/api/token"]


def test_the_task_refetches_the_order_from_atlas_and_runs_the_pipeline(world, post_webhook):
    atlas, ledger, order_id = world

    # The payload names a status only; everything else comes from ATLAS.
    response = post_webhook(order_event(order_id, newStatus=TRIGGER))

    assert response.status_code == 200
    delivery = InboundDelivery.objects.get()
    assert delivery.state == InboundDelivery.State.PROCESSED, delivery.last_error
    reads = [c for c in atlas.app.calls if "/Get" in c.path]
    counterparty_id = atlas.app.dataset.orders[order_id]["counterpartyId"]
    assert [(c.path, c.body) for c in reads[:5]] == [
        # The order and its items in one mirror run: one GetByOrderIds call, no GetByIds.
        ("/api/Order/GetByIds", {"data": [order_id]}),
        ("/api/OrderItem/GetByOrderIds", {"data": [order_id]}),
        # Not mirrored yet: read, then the order again so that it links to it.
        ("/api/Counterparty/GetByIds", {"data": [counterparty_id]}),
        ("/api/Order/GetByIds", {"data": [order_id]}),
        # Then the write-back's own invoice lookup: the re-fetch made four reads.
        ("/api/Invoice/GetByExternalIds", reads[4].body),
    ]
    order_sync = OrderSync.objects.get(order__atlas_id=order_id)
    assert order_sync.state == OrderState.INVOICED, order_sync.blocked_message
    journal = Journal.objects.get(order_sync=order_sync, status=Journal.Status.POSTED)
    assert len(ledger.app.transactions_with_reference(journal.source_transaction_reference)) == 1
    assert atlas.app.dataset.orders[order_id]["erpCode"] == order_sync.erp_code
    assert [c.body["data"][0]["orderId"] for c in atlas.app.calls_to("/api/Invoice/Post")] == [
        order_id
    ]
    assert f"Order {order_id}" in delivery.result and "invoiced" in delivery.result


def test_a_known_counterparty_costs_two_atlas_reads(world, post_webhook):
    atlas, _, order_id = world
    counterparty_id = atlas.app.dataset.orders[order_id]["counterpartyId"]
    atlas_mirror_records(
        client=atlas_client_for(atlas),
        entity="Counterparty",
        atlas_ids=[counterparty_id],
        trigger="command",
    )
    atlas.app.reset_calls()

    post_webhook(order_event(order_id))

    assert InboundDelivery.objects.get().state == InboundDelivery.State.PROCESSED
    reads = [c.path for c in atlas.app.calls if "/Get" in c.path]
    assert reads[:2] == ["/api/Order/GetByIds", "/api/OrderItem/GetByOrderIds"]
    assert "/api/OrderItem/GetByIds" not in reads and "/api/Counterparty/GetByIds" not in reads


def test_the_webhook_posts_only_its_own_order(world, post_webhook):
    """Another order that is postable (built, not yet posted) is left to the cycle: a webhook
    about order A must not send order B's journal to the AR Ledger."""
    atlas, ledger, order_id = world
    third_id = _clone_order(atlas.app, order_id)
    client = atlas_client_for(atlas)
    atlas_mirror_records(
        client=client, entity="Order", atlas_ids=[third_id], trigger="command", with_items=True
    )
    atlas_mirror_records(
        client=client,
        entity="Counterparty",
        atlas_ids=[atlas.app.dataset.orders[third_id]["counterpartyId"]],
        trigger="command",
    )
    atlas_mirror_records(client=client, entity="Order", atlas_ids=[third_id], trigger="command")
    counterparty_propose_matches()
    orders_select_candidates(actor="test")
    waiting = OrderSync.objects.get(order__atlas_id=third_id)
    order_build_journal(order_sync=waiting, actor="test")
    waiting.refresh_from_db()
    assert waiting.state == OrderState.JOURNAL_BUILT, waiting.blocked_message
    transactions_before = len(ledger.app.transactions)

    post_webhook(order_event(order_id))

    assert OrderSync.objects.get(order__atlas_id=order_id).state == OrderState.INVOICED
    waiting.refresh_from_db()
    assert waiting.state == OrderState.JOURNAL_BUILT
    assert len(ledger.app.transactions) == transactions_before + 1


def test_the_webhook_selects_only_its_own_order(world, post_webhook):
    """Another mirrored candidate (trigger status, erpCode null, never selected) is left to the
    cycle: a webhook about order A creates no OrderSync and records no transition for B."""
    atlas, _, order_id = world
    other_id = _clone_order(atlas.app, order_id)
    atlas_mirror_records(
        client=atlas_client_for(atlas),
        entity="Order",
        atlas_ids=[other_id],
        trigger="command",
        with_items=True,
    )

    post_webhook(order_event(order_id))

    assert OrderSync.objects.get(order__atlas_id=order_id).state == OrderState.INVOICED
    assert not OrderSync.objects.filter(order__atlas_id=other_id).exists()
    assert not OrderTransition.objects.exclude(order_sync__order__atlas_id=order_id).exists()
    # The cycle's selection still finds it.
    assert orders_select_candidates(actor="test").as_dict()["created"] == 1
    assert OrderSync.objects.get(order__atlas_id=other_id).state == OrderState.READY


def test_a_duplicate_and_a_replay_book_nothing_twice(world, post_webhook):
    atlas, ledger, order_id = world
    post_webhook(order_event(order_id))
    writes_after_first = [c for c in atlas.app.calls if c.path.endswith("/Post")]
    ledger_transactions = len(ledger.app.transactions)

    duplicate = post_webhook(order_event(order_id))
    calls_after_duplicate = len(atlas.app.calls)
    inbound_delivery_replay(delivery=InboundDelivery.objects.get())

    assert duplicate.json()["status"] == "duplicate"
    assert InboundDelivery.objects.get().state == InboundDelivery.State.PROCESSED
    assert InboundDelivery.objects.get().replays == 1
    # The duplicate made no call at all; the replay re-read ATLAS but wrote nothing.
    assert calls_after_duplicate > 0
    assert [c for c in atlas.app.calls if c.path.endswith("/Post")] == writes_after_first
    assert len(ledger.app.transactions) == ledger_transactions


def test_a_status_that_is_not_a_trigger_is_ignored_without_calling_atlas(world, post_webhook):
    atlas, _, order_id = world

    post_webhook(order_event(order_id, newStatus="Draft"))

    delivery = InboundDelivery.objects.get()
    assert delivery.state == InboundDelivery.State.IGNORED
    assert "not a trigger status" in delivery.result
    assert atlas.app.calls == []
    assert not OrderSync.objects.exists()


def test_atlas_down_records_the_failure_and_the_sweep_retries_it(world, post_webhook, settings):
    atlas, _, order_id = world
    atlas.faults.error_rate = 1.0

    post_webhook(order_event(order_id))

    delivery = InboundDelivery.objects.get()
    assert delivery.state == InboundDelivery.State.FAILED
    assert "ATLAS" in delivery.last_error and "Traceback" in delivery.traceback
    assert delivery.next_attempt_at is not None

    atlas.faults.error_rate = 0.0
    inbound_sweep(now=delivery.next_attempt_at + timezone.timedelta(seconds=1))

    delivery.refresh_from_db()
    assert delivery.state == InboundDelivery.State.PROCESSED
    assert delivery.attempts == 2
    assert OrderSync.objects.get(order__atlas_id=order_id).state == OrderState.INVOICED


def test_the_sandbox_webhook_is_accepted_end_to_end(world, live_server):
    """ATLAS (the sandbox) changes an order's status and sends its signed webhook over HTTP to
    the running app: the signature format agrees, and the order is booked."""
    atlas, _, order_id = world
    atlas.app.dataset.orders[order_id]["status"] = "Draft"
    atlas.app.webhook_url = live_server.url + "/api/webhooks/atlas/"

    delivery = atlas.app.set_order_status(order_id, TRIGGER)

    assert delivery is not None and delivery.status_code == 200, delivery
    stored = InboundDelivery.objects.get()
    assert stored.entity_id == order_id
    assert stored.state == InboundDelivery.State.PROCESSED, stored.last_error
    assert OrderSync.objects.get(order__atlas_id=order_id).state == OrderState.INVOICED
