"""The ATLAS mirror against the ATLAS sandbox over real HTTP on loopback."""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection, connections
from django.utils import timezone

from integration.atlas.client import AtlasClient
from integration.atlas.errors import AtlasServerError
from ledger_sync.models import (
    Counterparty,
    CounterpartyCustomFieldValue,
    CustomFieldDefinition,
    CustomFieldType,
    Invoice,
    Order,
    OrderItem,
    Payment,
    RecordChange,
    SyncRun,
    SyncRunError,
    SyncState,
)
from ledger_sync.services.atlas_mirror import (
    AtlasMirrorAlreadyRunning,
    atlas_mirror_records,
    atlas_mirror_run,
)
from ledger_sync.services.mirror_records import ATLAS_ENTITIES as ENTITIES

pytestmark = pytest.mark.django_db

MIRRORED = (
    CustomFieldType,
    CustomFieldDefinition,
    Counterparty,
    Order,
    OrderItem,
    Invoice,
    Payment,
)


def client_for(sandbox, **options) -> AtlasClient:
    options.setdefault("max_retries", 0)
    return AtlasClient(
        base_url=sandbox.url,
        username=sandbox.username,
        password="sandbox-password",
        sleep=lambda seconds: None,
        **options,
    )


def mirror(sandbox, **options) -> SyncRun:
    return atlas_mirror_run(client=client_for(sandbox, **options), trigger="command")


@pytest.fixture
def dataset(atlas_sandbox):
    return atlas_sandbox.app.dataset


@pytest.fixture
def broken_order_id(dataset) -> int:
    return dataset.broken["order_missing_due_date"][0]


def test_first_pass_mirrors_every_entity_with_exact_amounts_and_links(
    atlas_sandbox, dataset, broken_order_id
):
    run = mirror(atlas_sandbox)

    assert CustomFieldType.objects.count() == len(dataset.custom_field_types)
    assert CustomFieldDefinition.objects.count() == len(dataset.counterparty_custom_fields)
    assert Counterparty.objects.count() == len(dataset.counterparties)
    assert Order.objects.count() == len(dataset.orders) - 1  # the malformed one
    assert OrderItem.objects.count() == len(dataset.order_items)
    assert Invoice.objects.count() == len(dataset.invoices)
    assert Payment.objects.count() == len(dataset.payments)
    assert run.counts["Order"] == {
        "created": len(dataset.orders) - 1,
        "updated": 0,
        "unchanged": 0,
        "failed": 1,
    }
    for raw in dataset.orders.values():
        if raw["id"] == broken_order_id:
            continue
        order = Order.objects.select_related("counterparty").get(atlas_id=raw["id"])
        assert order.total_amount == raw["totalAmount"]
        assert isinstance(order.total_amount, Decimal)
        assert order.counterparty.atlas_id == raw["counterpartyId"]
        assert order.erp_code == raw["erpCode"]
    for raw in dataset.order_items.values():
        item = OrderItem.objects.get(atlas_id=raw["id"])
        assert (item.net_amount, item.vat_amount) == (raw["netAmount"], raw["vatAmount"])
        assert item.order_atlas_id == raw["orderId"]
        expected_order = None if raw["orderId"] == broken_order_id else raw["orderId"]
        assert (item.order.atlas_id if item.order else None) == expected_order
    for raw in dataset.payments.values():
        payment = Payment.objects.select_related("invoice", "order").get(atlas_id=raw["id"])
        assert payment.amount == raw["amount"]
        assert payment.invoice.atlas_id == raw["invoiceId"]
        assert payment.order.atlas_id == raw["orderId"]
    for raw in dataset.counterparties.values():
        values = {
            v.custom_field_atlas_id: v
            for v in CounterpartyCustomFieldValue.objects.filter(counterparty__atlas_id=raw["id"])
        }
        assert set(values) == {v["customFieldId"] for v in raw["customFieldValues"]}
        for v in raw["customFieldValues"]:
            assert values[v["customFieldId"]].value == v["value"]
            assert values[v["customFieldId"]].definition.atlas_id == v["customFieldId"]


def test_first_pass_records_api_calls_and_raw_json(atlas_sandbox, dataset):
    run = mirror(atlas_sandbox)

    assert run.api_calls == len(atlas_sandbox.app.calls)
    assert run.rate_limited == 0
    some_order = next(iter(dataset.orders.values()))
    assert Order.objects.get(atlas_id=some_order["id"]).raw == some_order


def test_full_pass_reads_each_entity_in_one_call(atlas_sandbox):
    mirror(atlas_sandbox)

    paths = [call.path for call in atlas_sandbox.app.calls]
    assert paths == [
        "/api/token",
        "/api/CustomFields/GetTypes",
        "/api/CustomFields/Counterparties/GetByCounterpartyTypeIds",
        "/api/Counterparty/GetByIds",
        "/api/Order/GetByIds",
        "/api/OrderItem/GetByIds",
        "/api/Invoice/GetByIds",
        "/api/Payment/GetByInvoiceIds",
    ]


def test_second_pass_writes_nothing(atlas_sandbox, dataset):
    first = mirror(atlas_sandbox)
    updated_at = {
        model: dict(model.objects.values_list("atlas_id", "updated_at")) for model in MIRRORED
    }
    value_ids = set(CounterpartyCustomFieldValue.objects.values_list("pk", flat=True))

    second = mirror(atlas_sandbox)

    for entity, counts in second.counts.items():
        assert counts["created"] == 0, entity
        assert counts["updated"] == 0, entity
        assert counts["unchanged"] == first.counts[entity]["created"], entity
        assert counts["failed"] == first.counts[entity]["failed"], entity
    assert not RecordChange.objects.exists()
    for model in MIRRORED:
        assert dict(model.objects.values_list("atlas_id", "updated_at")) == updated_at[model]
    assert set(CounterpartyCustomFieldValue.objects.values_list("pk", flat=True)) == value_ids


def test_second_pass_refreshes_last_seen_at(atlas_sandbox, time_machine):
    time_machine.move_to(timezone.now())
    mirror(atlas_sandbox)
    time_machine.shift(timedelta(minutes=15))

    mirror(atlas_sandbox)

    assert not Order.objects.filter(last_seen_at__lt=timezone.now() - timedelta(minutes=1)).exists()


def test_changed_record_is_updated_and_its_history_kept(atlas_sandbox, dataset):
    first = mirror(atlas_sandbox)
    raw = next(o for o in dataset.orders.values() if o["erpCode"] is None and "dueDate" in o)
    before_total = raw["totalAmount"]
    raw["erpCode"] = "ERP-DOC-1"
    raw["totalAmount"] = before_total + Decimal("0.01")

    second = mirror(atlas_sandbox)

    assert second.counts["Order"]["updated"] == 1
    assert second.counts["Order"]["unchanged"] == first.counts["Order"]["created"] - 1
    order = Order.objects.get(atlas_id=raw["id"])
    assert (order.erp_code, order.total_amount) == ("ERP-DOC-1", before_total + Decimal("0.01"))
    change = RecordChange.objects.get()
    assert (change.system, change.entity, change.remote_id) == ("atlas", "Order", str(raw["id"]))
    assert change.sync_run_id == second.pk
    assert change.changes == {
        "erpCode": [None, "ERP-DOC-1"],
        "totalAmount": [str(before_total), str(before_total + Decimal("0.01"))],
    }


def test_changed_counterparty_replaces_its_custom_field_values(atlas_sandbox, dataset):
    mirror(atlas_sandbox)
    raw = next(c for c in dataset.counterparties.values() if c["customFieldValues"])
    field_id = raw["customFieldValues"][0]["customFieldId"]
    raw["customFieldValues"] = [{"customFieldId": field_id, "name": "x", "value": "CC-999"}]

    mirror(atlas_sandbox)

    values = CounterpartyCustomFieldValue.objects.filter(counterparty__atlas_id=raw["id"])
    assert [(v.custom_field_atlas_id, v.value) for v in values] == [(field_id, "CC-999")]


def test_malformed_order_fails_alone_with_its_reason(atlas_sandbox, broken_order_id):
    run = mirror(atlas_sandbox)

    assert run.status == SyncRun.Status.COMPLETED_WITH_ERRORS
    error = SyncRunError.objects.get(sync_run=run)
    assert (error.entity, error.remote_id, error.field) == (
        "Order",
        str(broken_order_id),
        "dueDate",
    )
    assert "missing" in error.message
    assert not Order.objects.filter(atlas_id=broken_order_id).exists()
    assert run.total("created") > 0


def test_amount_with_more_than_two_decimals_fails_and_is_never_rounded(atlas_sandbox, dataset):
    raw = next(iter(dataset.order_items.values()))
    raw["netAmount"] = Decimal("1000.005")

    run = mirror(atlas_sandbox)

    assert run.counts["OrderItem"]["failed"] == 1
    error = SyncRunError.objects.get(sync_run=run, entity="OrderItem")
    assert (error.remote_id, error.field) == (str(raw["id"]), "netAmount")
    assert "more than 2 decimal places" in error.message
    assert not OrderItem.objects.filter(atlas_id=raw["id"]).exists()


def test_record_that_breaks_later_becomes_invalid_and_keeps_last_good_values(
    atlas_sandbox, dataset
):
    mirror(atlas_sandbox)
    raw = next(o for o in dataset.orders.values() if "dueDate" in o)
    good_total = raw["totalAmount"]
    raw["totalAmount"] = "not a number"

    run = mirror(atlas_sandbox)

    order = Order.objects.get(atlas_id=raw["id"])
    assert order.sync_state == SyncState.INVALID
    assert "totalAmount" in order.sync_error
    assert order.total_amount == good_total
    assert run.counts["Order"]["failed"] == 2

    raw["totalAmount"] = good_total
    third = mirror(atlas_sandbox)

    order.refresh_from_db()
    assert (order.sync_state, order.sync_error) == (SyncState.SYNCED, "")
    assert third.counts["Order"]["updated"] == 1


def test_disappeared_record_becomes_missing_and_returns(atlas_sandbox, dataset):
    mirror(atlas_sandbox)
    atlas_id = next(o["id"] for o in dataset.orders.values() if "dueDate" in o)
    raw = dataset.orders.pop(atlas_id)

    mirror(atlas_sandbox)

    assert Order.objects.get(atlas_id=atlas_id).sync_state == SyncState.MISSING
    assert Order.objects.filter(sync_state=SyncState.MISSING).count() == 1

    dataset.orders[atlas_id] = raw
    run = mirror(atlas_sandbox)

    assert Order.objects.get(atlas_id=atlas_id).sync_state == SyncState.SYNCED
    assert run.counts["Order"]["updated"] == 1


def test_atlas_down_fails_the_run_with_the_reason(atlas_sandbox):
    atlas_sandbox.server.stop()

    run = mirror(atlas_sandbox)

    assert run.status == SyncRun.Status.FAILED
    assert "ATLAS /api/token failed" in run.error_message
    assert run.finished_at is not None
    assert not Order.objects.exists()


class ItemsFailingClient(AtlasClient):
    """ATLAS answering everything but the order items (5xx after the client's retries)."""

    def get_order_items(self, ids=None):
        raise AtlasServerError(
            "Service unavailable", endpoint="/api/OrderItem/GetByIds", status=503
        )


def test_atlas_failing_mid_pass_keeps_what_was_mirrored_and_marks_nothing_missing(
    atlas_sandbox, dataset
):
    mirror(atlas_sandbox)
    dataset.orders[next(iter(dataset.orders))]["status"] = "Settled"
    client = ItemsFailingClient(
        base_url=atlas_sandbox.url, username=atlas_sandbox.username, password="sandbox-password"
    )

    run = atlas_mirror_run(client=client, trigger="schedule")

    assert run.status == SyncRun.Status.FAILED
    assert run.error_message == (
        "ATLAS /api/OrderItem/GetByIds failed (HTTP 503): Service unavailable"
    )
    assert run.counts["Order"]["updated"] == 1  # what came before the failure is kept
    assert "OrderItem" not in run.counts
    for model in MIRRORED:
        assert (
            not model.objects.exclude(sync_state=SyncState.SYNCED)
            .exclude(atlas_id=dataset.broken["order_missing_due_date"][0])
            .exists()
        )


def test_rate_limited_answers_are_counted_on_the_run(atlas_sandbox):
    atlas_sandbox.faults.burst_429(2, retry_after=1)

    run = mirror(atlas_sandbox, max_retries=3)

    assert run.rate_limited == 2
    assert run.api_calls == len(atlas_sandbox.app.calls)
    assert run.status == SyncRun.Status.COMPLETED_WITH_ERRORS  # only the malformed order


def test_progress_is_reported_for_every_entity(atlas_sandbox, dataset):
    seen: dict[str, tuple[int, int]] = {}

    atlas_mirror_run(
        client=client_for(atlas_sandbox),
        trigger="command",
        progress=lambda entity, done, total: seen.__setitem__(entity, (done, total)),
    )

    assert list(seen) == list(ENTITIES)
    assert seen["OrderItem"] == (len(dataset.order_items), len(dataset.order_items))


def test_values_a_column_cannot_hold_fail_alone(atlas_sandbox, dataset):
    counterparty = next(iter(dataset.counterparties.values()))
    counterparty["name"] = "X" * 300
    item = next(iter(dataset.order_items.values()))
    item["dealId"] = 2**70

    run = mirror(atlas_sandbox)

    errors = {(e.entity, e.field): e.message for e in SyncRunError.objects.filter(sync_run=run)}
    assert "300 characters" in errors[("Counterparty", "name")]
    assert "64-bit" in errors[("OrderItem", "dealId")]
    assert Counterparty.objects.count() == len(dataset.counterparties) - 1
    assert OrderItem.objects.count() == len(dataset.order_items) - 1


def running_full_pass(**fields) -> SyncRun:
    fields.setdefault("started_at", timezone.now())
    return SyncRun.objects.create(
        system=SyncRun.System.ATLAS,
        trigger="schedule",
        counts={entity: {"created": 0} for entity in ENTITIES},
        **fields,
    )


def test_running_pass_announces_itself_as_a_full_pass(atlas_sandbox):
    counts_while_running: list[dict] = []

    def progress(entity: str, done: int, total: int) -> None:
        if not counts_while_running:
            counts_while_running.append(SyncRun.objects.get().counts)

    atlas_mirror_run(client=client_for(atlas_sandbox), trigger="command", progress=progress)

    assert set(counts_while_running[0]) == set(ENTITIES)


def test_second_concurrent_pass_is_skipped(atlas_sandbox):
    running = running_full_pass()

    with pytest.raises(AtlasMirrorAlreadyRunning, match=f"run {running.pk}"):
        mirror(atlas_sandbox)

    assert atlas_sandbox.app.calls == []
    assert SyncRun.objects.count() == 1


def test_a_running_resync_does_not_block_a_full_pass(atlas_sandbox):
    SyncRun.objects.create(
        system=SyncRun.System.ATLAS, trigger="webhook", started_at=timezone.now()
    )

    run = mirror(atlas_sandbox)

    assert run.status == SyncRun.Status.COMPLETED_WITH_ERRORS


def test_abandoned_running_pass_does_not_block_forever(atlas_sandbox):
    abandoned = running_full_pass(started_at=timezone.now() - timedelta(hours=2))

    run = mirror(atlas_sandbox)

    abandoned.refresh_from_db()
    assert abandoned.status == SyncRun.Status.FAILED
    assert "Abandoned" in abandoned.error_message
    assert run.status == SyncRun.Status.COMPLETED_WITH_ERRORS


def test_resync_refetches_only_the_chosen_records(atlas_sandbox, dataset):
    mirror(atlas_sandbox)
    atlas_sandbox.app.reset_calls()
    ids = [o["id"] for o in dataset.orders.values() if "dueDate" in o][:2]
    for atlas_id in ids:
        dataset.orders[atlas_id]["status"] = "Settled"

    run = atlas_mirror_records(
        client=client_for(atlas_sandbox), entity="Order", atlas_ids=ids, trigger="admin"
    )

    calls = [c for c in atlas_sandbox.app.calls if c.path != "/api/token"]
    assert [(c.path, c.body) for c in calls] == [("/api/Order/GetByIds", {"data": sorted(ids)})]
    assert run.counts == {"Order": {"created": 0, "updated": 2, "unchanged": 0, "failed": 0}}
    assert set(Order.objects.filter(status="Settled").values_list("atlas_id", flat=True)) >= set(
        ids
    )


def test_resync_of_orders_with_items_refreshes_their_items(atlas_sandbox, dataset):
    mirror(atlas_sandbox)
    atlas_sandbox.app.reset_calls()
    order_id = next(o["id"] for o in dataset.orders.values() if "dueDate" in o)
    first, second, *_ = dataset.items_of(order_id)
    first["status"] = 1
    # ATLAS deleted the item (the sandbox has no delete call: drop it and its index entry).
    dataset.order_items.pop(second["id"])
    atlas_sandbox.app._unindex("order_items", second)

    run = atlas_mirror_records(
        client=client_for(atlas_sandbox),
        entity="Order",
        atlas_ids=[order_id],
        trigger="webhook",
        with_items=True,
    )

    calls = [(c.path, c.body) for c in atlas_sandbox.app.calls if c.path != "/api/token"]
    assert calls == [
        ("/api/Order/GetByIds", {"data": [order_id]}),
        ("/api/OrderItem/GetByOrderIds", {"data": [order_id]}),
    ]
    assert run.counts["OrderItem"]["updated"] == 1
    assert OrderItem.objects.get(atlas_id=first["id"]).status == 1
    assert OrderItem.objects.get(atlas_id=second["id"]).sync_state == SyncState.MISSING
    assert OrderItem.objects.filter(sync_state=SyncState.MISSING).count() == 1


def test_resync_of_payments_asks_by_their_invoices(atlas_sandbox, dataset):
    mirror(atlas_sandbox)
    atlas_sandbox.app.reset_calls()
    payment = next(iter(dataset.payments.values()))

    run = atlas_mirror_records(
        client=client_for(atlas_sandbox),
        entity="Payment",
        atlas_ids=[payment["id"]],
        trigger="admin",
    )

    calls = [c for c in atlas_sandbox.app.calls if c.path != "/api/token"]
    assert [(c.path, c.body) for c in calls] == [
        ("/api/Payment/GetByInvoiceIds", {"data": [payment["invoiceId"]]})
    ]
    assert run.counts["Payment"]["unchanged"] == 1


def test_item_mirrored_before_its_order_is_linked_on_the_next_pass(atlas_sandbox, dataset):
    item = next(iter(dataset.order_items.values()))
    atlas_mirror_records(
        client=client_for(atlas_sandbox),
        entity="OrderItem",
        atlas_ids=[item["id"]],
        trigger="admin",
    )
    assert OrderItem.objects.get(atlas_id=item["id"]).order is None

    mirror(atlas_sandbox)

    linked = OrderItem.objects.select_related("order").get(atlas_id=item["id"])
    assert linked.order.atlas_id == item["orderId"]


@pytest.mark.django_db(transaction=True)
def test_racing_resyncs_of_the_same_records_write_each_row_once(atlas_sandbox, dataset):
    if connection.vendor != "postgresql":
        pytest.skip("concurrent writers need PostgreSQL")
    ids = sorted(dataset.orders)[:8]
    barrier = threading.Barrier(3)
    failures: list[BaseException] = []

    def resync() -> None:
        try:
            barrier.wait(timeout=10)
            atlas_mirror_records(
                client=client_for(atlas_sandbox), entity="Order", atlas_ids=ids, trigger="admin"
            )
        except BaseException as exc:
            failures.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=resync) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert failures == []
    broken = dataset.broken["order_missing_due_date"][0]
    assert sorted(Order.objects.values_list("atlas_id", flat=True)) == [
        i for i in ids if i != broken
    ]


@pytest.mark.django_db(transaction=True)
def test_two_full_passes_started_together_run_once(atlas_sandbox):
    if connection.vendor != "postgresql":
        pytest.skip("concurrent workers need PostgreSQL")
    barrier = threading.Barrier(2)
    outcomes: list[object] = []

    def full_pass() -> None:
        try:
            barrier.wait(timeout=10)
            outcomes.append(mirror(atlas_sandbox).status)
        except AtlasMirrorAlreadyRunning as skipped:
            outcomes.append(skipped)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=full_pass) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len(outcomes) == 2
    assert sum(isinstance(o, AtlasMirrorAlreadyRunning) for o in outcomes) == 1
    assert SyncRun.Status.COMPLETED_WITH_ERRORS in outcomes


def test_a_record_without_a_readable_id_marks_nothing_missing(atlas_sandbox, dataset):
    """A record whose id cannot be read may be any stored row: none is taken for deleted."""
    mirror(atlas_sandbox)
    raw = next(o for o in dataset.orders.values() if "dueDate" in o)
    atlas_id = raw["id"]
    raw["id"] = "not an id"

    run = mirror(atlas_sandbox)

    assert run.counts["Order"]["failed"] == 2  # it, and the deliberately broken one
    assert SyncRunError.objects.filter(sync_run=run, entity="Order", field="id").exists()
    assert not Order.objects.filter(sync_state=SyncState.MISSING).exists()
    assert Order.objects.get(atlas_id=atlas_id).sync_state == SyncState.SYNCED
    assert (
        "no order was marked missing"
        in " ".join(
            SyncRunError.objects.filter(sync_run=run).values_list("message", flat=True)
        ).lower()
    )

    raw["id"] = atlas_id
    dataset.orders.pop(atlas_id)
    mirror(atlas_sandbox)

    assert Order.objects.get(atlas_id=atlas_id).sync_state == SyncState.MISSING
