"""The back office of inbound: deliveries with state, error and traceback, replay (queued),
payment confirmations and invoice reports with their ATLAS state and a retry (queued)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from ledger_sync.models import (
    ApiClient,
    InboundDelivery,
    InvoiceReport,
    InvoiceSettlement,
    PaymentConfirmation,
)
from ledger_sync.models.inbound import CallbackState
from ledger_sync.services import payments
from ledger_sync.services.api_clients import api_client_create

pytestmark = pytest.mark.django_db


def _delivery(**fields) -> InboundDelivery:
    values = {
        "dedup_key": f"event:{InboundDelivery.objects.count()}",
        "event_type": "order.status_changed",
        "entity_type": "Order",
        "entity_id": 210,
        "new_status": "Approved order by ETRM",
        "raw_body": '{"entityId": 210}',
        "received_at": timezone.now(),
        **fields,
    }
    return InboundDelivery.objects.create(**values)


def test_deliveries_list_filters_and_shows_the_traceback(admin_client):
    failed = _delivery(
        state=InboundDelivery.State.FAILED,
        last_error="AtlasServerError: ATLAS /api/Order/GetByIds failed (HTTP 503)",
        traceback="Traceback (most recent call last):\n  ...",
    )
    _delivery(state=InboundDelivery.State.IGNORED, event_type="counterparty.updated")

    listing = admin_client.get("/admin/ledger_sync/inbounddelivery/?state=failed")
    detail = admin_client.get(f"/admin/ledger_sync/inbounddelivery/{failed.pk}/change/")

    assert listing.status_code == 200
    assert "HTTP 503" in listing.content.decode()
    assert [row.pk for row in listing.context["cl"].result_list] == [failed.pk]
    assert "Traceback (most recent call last)" in detail.content.decode()


def test_replay_queues_the_delivery_and_does_not_process_it_in_the_request(admin_client, queued):
    delivery = _delivery(state=InboundDelivery.State.FAILED, attempts=3)

    response = admin_client.post(
        "/admin/ledger_sync/inbounddelivery/",
        {"action": "replay_selected", "_selected_action": [delivery.pk]},
        follow=True,
    )

    assert response.status_code == 200
    delivery.refresh_from_db()
    assert delivery.state == InboundDelivery.State.RECEIVED
    assert delivery.replays == 1
    # The test transaction never commits, so the queued call is still pending: nothing ran.
    assert queued == []


def test_replay_enqueues_the_delivery_once_committed(
    admin_client, queued, django_capture_on_commit_callbacks
):
    delivery = _delivery(state=InboundDelivery.State.FAILED, attempts=3)

    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(
            "/admin/ledger_sync/inbounddelivery/",
            {"action": "replay_selected", "_selected_action": [delivery.pk]},
        )

    assert queued == [delivery.pk]


def test_payment_retry_action_queues_a_failed_payment(
    admin_client, monkeypatch, django_capture_on_commit_callbacks
):
    sent: list[int] = []
    monkeypatch.setattr(payments, "_enqueue", lambda func: sent.append)
    confirmation = PaymentConfirmation.objects.create(
        external_id="PAY-1",
        request_fingerprint="x",
        request_json="{}",
        invoice_reference="INV-1",
        invoice_external_id="INV-1",
        amount=Decimal("10.00"),
        currency="EUR",
        payment_date=timezone.localdate(),
        received_at=timezone.now(),
        state=CallbackState.REJECTED,
        last_error="ATLAS refused it",
    )

    listing = admin_client.get("/admin/ledger_sync/paymentconfirmation/")
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(
            "/admin/ledger_sync/paymentconfirmation/",
            {"action": "retry_selected", "_selected_action": [confirmation.pk]},
        )

    assert "PAY-1" in listing.content.decode()
    # Why it is not in ATLAS is on the list page itself.
    assert "ATLAS refused it" in listing.content.decode()
    confirmation.refresh_from_db()
    assert confirmation.state == CallbackState.FAILED
    assert confirmation.next_attempt_at is None
    assert sent == [confirmation.pk]


def test_settlement_retry_action_queues_a_failed_settlement(
    admin_client, monkeypatch, django_capture_on_commit_callbacks
):
    queued: list[tuple[str, int]] = []
    monkeypatch.setattr(
        payments, "_enqueue", lambda func: lambda pk: queued.append((func.rsplit(".")[-1], pk))
    )
    settlement = InvoiceSettlement.objects.create(
        invoice_atlas_id=88,
        order_atlas_id=210,
        paid_total=Decimal("10.00"),
        invoice_amount=Decimal("10.00"),
        state=InvoiceSettlement.State.FAILED,
        attempts=12,
        last_error="ATLAS /api/Invoice/Post failed (HTTP 503)",
    )

    listing = admin_client.get("/admin/ledger_sync/invoicesettlement/")
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(
            "/admin/ledger_sync/invoicesettlement/",
            {"action": "retry_selected", "_selected_action": [settlement.pk]},
        )

    assert "HTTP 503" in listing.content.decode()
    assert queued == [("invoice_settlement_send_task", settlement.pk)]


def _payment(number: int) -> PaymentConfirmation:
    return PaymentConfirmation.objects.create(
        external_id=f"PAY-{number}",
        request_fingerprint="x",
        request_json="{}",
        invoice_reference="INV-1",
        invoice_external_id="INV-1",
        amount=Decimal("10.00"),
        currency="EUR",
        payment_date=timezone.localdate(),
        received_at=timezone.now(),
        api_client=api_client_create(name=f"bank-{number}", permissions=["payments"]).client,
    )


def _report(number: int) -> InvoiceReport:
    return InvoiceReport.objects.create(
        external_id=f"ERP-{number}",
        request_fingerprint="x",
        request_json="{}",
        order_atlas_id=number,
        invoice_number=f"N-{number}",
        amount=Decimal("10.00"),
        currency="EUR",
        invoice_date=timezone.localdate(),
        due_date=timezone.localdate(),
        received_at=timezone.now(),
    )


def _settlement(number: int) -> InvoiceSettlement:
    return InvoiceSettlement.objects.create(
        invoice_atlas_id=number, paid_total=Decimal("1.00"), invoice_amount=Decimal("1.00")
    )


def _client(number: int) -> ApiClient:
    return api_client_create(name=f"client-{number}", permissions=["payments"]).client


@pytest.mark.parametrize(
    ("page", "make"),
    [
        ("inbounddelivery", lambda n: _delivery(dedup_key=f"event:{n}")),
        ("paymentconfirmation", _payment),
        ("invoicereport", _report),
        ("invoicesettlement", _settlement),
        ("apiclient", _client),
    ],
)
def test_list_pages_cost_the_same_queries_for_1_and_50_rows(admin_client, page, make):
    url = f"/admin/ledger_sync/{page}/"
    make(0)
    with CaptureQueriesContext(connection) as one:
        assert admin_client.get(url).status_code == 200
    for number in range(1, 50):
        make(number)
    with CaptureQueriesContext(connection) as fifty:
        response = admin_client.get(url)

    assert len(response.context["cl"].result_list) == 50
    assert len(fifty) == len(one), [q["sql"] for q in fifty.captured_queries]


@pytest.mark.parametrize(
    "page",
    ["invoicereport", "invoicesettlement", "apiclient", "paymentconfirmation"],
)
def test_inbound_admin_pages_render(admin_client, page):
    assert admin_client.get(f"/admin/ledger_sync/{page}/").status_code == 200


def test_a_settlement_refused_for_good_waits_for_a_person_not_the_sweep():
    now = timezone.now()
    refused = _settlement(1)
    retrying = _settlement(2)
    InvoiceSettlement.objects.filter(pk=refused.pk).update(
        state=InvoiceSettlement.State.FAILED, attempts=1, next_attempt_at=None
    )
    InvoiceSettlement.objects.filter(pk=retrying.pk).update(
        state=InvoiceSettlement.State.FAILED, attempts=1, next_attempt_at=now
    )

    assert payments.settlements_due(now=now, limit=10) == [retrying.pk]
