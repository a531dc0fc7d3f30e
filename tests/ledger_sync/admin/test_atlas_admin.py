"""The read-only back office of the ATLAS mirror and of sync runs."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from ledger_sync.models import RecordChange, SyncRun, SyncRunError
from tests.factories.atlas import (
    CounterpartyCustomFieldValueFactory,
    CounterpartyFactory,
    CustomFieldDefinitionFactory,
    CustomFieldTypeFactory,
    InvoiceFactory,
    OrderFactory,
    OrderItemFactory,
    PaymentFactory,
)

pytestmark = pytest.mark.django_db

MODELS = ("customfieldtype", "customfielddefinition", "counterparty", "order", "orderitem")
MODELS += ("invoice", "payment")
# Session, user, the page's rows, one COUNT for the paginator, DISTINCT values of a few
# filters: a list page costs the same whatever the number of rows.
LIST_QUERY_BUDGET = 12


def populate(n: int) -> None:
    for _ in range(n):
        payment = PaymentFactory()
        OrderItemFactory.create_batch(2, order=payment.order)
        CounterpartyCustomFieldValueFactory(counterparty=payment.order.counterparty)
        CustomFieldTypeFactory()


def changelist(model: str) -> str:
    return reverse(f"admin:ledger_sync_{model}_changelist")


def queries_for(client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200, url
    return len(queries)


@pytest.mark.parametrize("model", MODELS)
def test_changelist_costs_the_same_queries_for_few_and_many_rows(admin_client, model):
    populate(3)
    few = queries_for(admin_client, changelist(model))
    populate(30)

    many = queries_for(admin_client, changelist(model))

    assert many == few
    assert many <= LIST_QUERY_BUDGET


@pytest.mark.parametrize(
    ("model", "query"),
    [
        ("counterparty", "q=DE129273398"),
        ("counterparty", "q=Energy"),
        ("order", "q=SO-2026&status=Approved+order+by+ETRM&has_erp_code=no&currency=EUR"),
        ("order", "counterparty_atlas_id=1000&sync_state__exact=synced"),
        ("orderitem", "cashflow__exact=0&status__exact=2&counterparty_atlas_id=1000"),
        ("invoice", "q=INV-2026-0000"),
        ("payment", "q=PAY-2026-0000"),
        ("order", "counterparty_atlas_id=not-a-number"),
    ],
)
def test_changelist_searches_and_filters_within_budget(
    admin_client, model, query, django_assert_max_num_queries
):
    populate(5)

    with django_assert_max_num_queries(LIST_QUERY_BUDGET):
        response = admin_client.get(f"{changelist(model)}?{query}")

    assert response.status_code == 200


def test_order_search_by_document_reference_finds_it(admin_client):
    wanted = OrderFactory(document_reference="SO-2026-04-9999")
    OrderFactory.create_batch(3)

    response = admin_client.get(f"{changelist('order')}?q=SO-2026-04-9999")

    assert list(response.context["cl"].result_list) == [wanted]


def test_numeric_search_matches_ids_exactly(admin_client):
    wanted = OrderFactory(atlas_id=777)
    OrderFactory(atlas_id=7770)
    OrderFactory(counterparty=CounterpartyFactory(atlas_id=778))

    by_order = admin_client.get(f"{changelist('order')}?q=777")
    by_counterparty = admin_client.get(f"{changelist('order')}?q=778")

    assert list(by_order.context["cl"].result_list) == [wanted]
    assert [o.counterparty.atlas_id for o in by_counterparty.context["cl"].result_list] == [778]


def test_counterparty_filter_narrows_orders(admin_client):
    counterparty = CounterpartyFactory(atlas_id=4242)
    mine = OrderFactory(counterparty=counterparty)
    OrderFactory.create_batch(2)

    response = admin_client.get(f"{changelist('order')}?counterparty_atlas_id=4242")

    assert list(response.context["cl"].result_list) == [mine]
    assert b'name="counterparty_atlas_id" value="4242"' in response.content


@pytest.mark.parametrize(
    "factory",
    [
        CustomFieldTypeFactory,
        CustomFieldDefinitionFactory,
        CounterpartyFactory,
        OrderFactory,
        OrderItemFactory,
        InvoiceFactory,
        PaymentFactory,
    ],
)
def test_detail_page_shows_the_record_read_only(
    admin_client, factory, django_assert_max_num_queries
):
    record = factory()
    url = reverse(f"admin:ledger_sync_{record._meta.model_name}_change", args=[record.pk])

    with django_assert_max_num_queries(25):
        response = admin_client.get(url)

    assert response.status_code == 200
    content = response.content.decode()
    assert "Raw JSON (as ATLAS last sent it)" in content
    assert f"&quot;id&quot;: {record.atlas_id}" in content
    assert 'name="_save"' not in content  # nothing to save: it is read-only


def test_order_detail_links_its_items_invoices_payments_and_counterparty(admin_client):
    payment = PaymentFactory()
    order = payment.order
    item = OrderItemFactory(order=order)

    response = admin_client.get(reverse("admin:ledger_sync_order_change", args=[order.pk]))

    content = response.content.decode()
    assert reverse("admin:ledger_sync_orderitem_change", args=[item.pk]) in content
    assert reverse("admin:ledger_sync_invoice_change", args=[payment.invoice.pk]) in content
    assert reverse("admin:ledger_sync_payment_change", args=[payment.pk]) in content
    assert reverse("admin:ledger_sync_counterparty_change", args=[order.counterparty.pk]) in content


def test_counterparty_detail_shows_custom_field_values(admin_client):
    value = CounterpartyCustomFieldValueFactory(value="CC-777")

    response = admin_client.get(
        reverse("admin:ledger_sync_counterparty_change", args=[value.counterparty.pk])
    )

    assert "CC-777" in response.content.decode()
    assert value.definition.name in response.content.decode()


def test_detail_shows_the_change_history_as_a_diff(admin_client):
    order = OrderFactory()
    run = SyncRun.objects.create(system="atlas", trigger="schedule", started_at=timezone.now())
    RecordChange.objects.create(
        system="atlas",
        entity="Order",
        remote_id=str(order.atlas_id),
        sync_run=run,
        changed_at=timezone.now(),
        changes={"erpCode": [None, "ERP-DOC-7"], "totalAmount": ["100.00", "100.01"]},
    )

    response = admin_client.get(reverse("admin:ledger_sync_order_change", args=[order.pk]))

    content = response.content.decode()
    assert "<td><code>erpCode</code></td><td><del>null</del></td><td><ins>ERP-DOC-7</ins>" in (
        content
    )
    assert "<td><del>100.00</del></td><td><ins>100.01</ins></td>" in content
    assert reverse("admin:ledger_sync_syncrun_change", args=[run.pk]) in content


@pytest.mark.parametrize("model", MODELS)
def test_mirrored_records_cannot_be_added_changed_or_deleted(admin_client, model):
    populate(1)
    record = OrderFactory() if model == "order" else None
    assert admin_client.get(reverse(f"admin:ledger_sync_{model}_add")).status_code == 403
    if record is not None:
        change_url = reverse("admin:ledger_sync_order_change", args=[record.pk])
        response = admin_client.post(change_url, {"status": "Settled"})
        assert response.status_code == 403
        delete_url = reverse("admin:ledger_sync_order_delete", args=[record.pk])
        assert admin_client.post(delete_url, {"post": "yes"}).status_code == 403
        record.refresh_from_db()
        assert record.status != "Settled"


def test_resync_action_enqueues_after_commit_without_calling_atlas(
    admin_client, admin_user, atlas_sandbox, django_capture_on_commit_callbacks
):
    dataset = atlas_sandbox.app.dataset
    raw = next(o for o in dataset.orders.values() if "dueDate" in o)
    order = OrderFactory(atlas_id=raw["id"], total_amount=Decimal("1.00"))

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = admin_client.post(
            changelist("order"),
            {"action": "resync_selected", "_selected_action": [order.pk]},
            follow=True,
        )

    assert response.status_code == 200
    assert "Queued a resync of 1 Order record" in response.content.decode()
    assert atlas_sandbox.app.calls == []  # ATLAS is not called in the request
    assert len(callbacks) == 1

    callbacks[0]()  # the worker's turn (tasks run in-process in the test settings)

    assert [c.body for c in atlas_sandbox.app.calls if c.path == "/api/Order/GetByIds"] == [
        {"data": [raw["id"]]}
    ]
    order.refresh_from_db()
    assert order.total_amount == raw["totalAmount"]
    run = SyncRun.objects.get()
    assert (run.trigger, run.triggered_by) == ("admin", admin_user)


def test_sync_run_list_and_detail_show_counts_and_errors(
    admin_client, django_assert_max_num_queries
):
    run = SyncRun.objects.create(
        system="atlas",
        trigger="schedule",
        status=SyncRun.Status.COMPLETED_WITH_ERRORS,
        started_at=timezone.now(),
        finished_at=timezone.now(),
        counts={"Order": {"created": 3, "updated": 1, "unchanged": 7, "failed": 1}},
        api_calls=8,
        rate_limited=2,
    )
    SyncRunError.objects.create(
        sync_run=run,
        entity="Order",
        remote_id="214",
        field="dueDate",
        message="Order 214: field 'dueDate' is missing",
    )

    with django_assert_max_num_queries(LIST_QUERY_BUDGET):
        listing = admin_client.get(reverse("admin:ledger_sync_syncrun_changelist"))
    detail = admin_client.get(reverse("admin:ledger_sync_syncrun_change", args=[run.pk]))

    assert listing.status_code == detail.status_code == 200
    assert "Completed with errors" in listing.content.decode()
    content = detail.content.decode()
    assert "<tr><td>Order</td><td>3</td><td>1</td><td>7</td><td>1</td></tr>" in content
    assert "Order 214: field &#x27;dueDate&#x27; is missing" in content


def test_failed_records_of_a_run_are_listed(admin_client):
    run = SyncRun.objects.create(system="atlas", trigger="schedule", started_at=timezone.now())
    other = SyncRun.objects.create(system="atlas", trigger="schedule", started_at=timezone.now())
    SyncRunError.objects.create(sync_run=run, entity="Order", remote_id="1", message="mine")
    SyncRunError.objects.create(sync_run=other, entity="Order", remote_id="2", message="theirs")

    response = admin_client.get(
        f"{reverse('admin:ledger_sync_syncrunerror_changelist')}?sync_run__id__exact={run.pk}"
    )

    assert [e.message for e in response.context["cl"].result_list] == ["mine"]


def test_django_q_failed_tasks_stay_listed(admin_client):
    assert admin_client.get(reverse("admin:django_q_failure_changelist")).status_code == 200


@pytest.mark.parametrize("model", ["syncrunerror", "recordchange"])
def test_audit_lists_never_scan_the_table_for_filter_choices(admin_client, model):
    """These tables grow with every pass: a filter must not SELECT DISTINCT over them."""
    run = SyncRun.objects.create(system="atlas", trigger="schedule", started_at=timezone.now())
    SyncRunError.objects.create(sync_run=run, entity="Order", remote_id="1", message="bad")
    RecordChange.objects.create(
        system="atlas",
        entity="Order",
        remote_id="1",
        sync_run=run,
        changed_at=timezone.now(),
        changes={"status": ["a", "b"]},
    )

    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(changelist(model))

    assert response.status_code == 200
    assert not [q["sql"] for q in queries if "DISTINCT" in q["sql"].upper()]
    assert "?entity=Order" in response.content.decode()
