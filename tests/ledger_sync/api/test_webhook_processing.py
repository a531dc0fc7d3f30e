"""The webhook's task: re-fetch the order from ATLAS (never trusting the payload) and run the
journal pipeline for it, on both sandboxes over loopback."""

from __future__ import annotations

import pytest
from django.utils import timezone

from integration.gotransverse.client import GotransverseClient
from ledger_sync.models import InboundDelivery, Journal, OrderState, OrderSync
from ledger_sync.services.gotransverse_mirror import gotransverse_mirror_run
from ledger_sync.services.inbound import inbound_delivery_replay, inbound_sweep
from tests.ledger_sync.api.conftest import order_event

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


def _clean_ready_order(dataset) -> int:
    broken = {oid for ids in dataset.broken.values() for oid in ids}
    with_invoice = {invoice["orderId"] for invoice in dataset.invoices.values()}
    for order_id, order in sorted(dataset.orders.items()):
        items = [i for i in dataset.order_items.values() if i["orderId"] == order_id]
        if (
            order["status"] == TRIGGER
            and not order["erpCode"]
            and order_id not in broken
            and order_id not in with_invoice
            and items
            and all(item["status"] == 2 for item in items)
            and all(item["cashflow"] == 0 for item in items)
        ):
            return order_id
    raise AssertionError("the sandbox has no clean order in the trigger status")


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
        ("/api/Order/GetByIds", {"data": [order_id]}),
        # Not mirrored yet: read, then the order again so that it links to it.
        ("/api/Counterparty/GetByIds", {"data": [counterparty_id]}),
        ("/api/Order/GetByIds", {"data": [order_id]}),
        ("/api/OrderItem/GetByOrderIds", {"data": [order_id]}),
        (
            "/api/OrderItem/GetByIds",
            {
                "data": sorted(
                    i["id"]
                    for i in atlas.app.dataset.order_items.values()
                    if i["orderId"] == order_id
                )
            },
        ),
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
