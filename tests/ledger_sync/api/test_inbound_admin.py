"""The back office of inbound: deliveries with state, error and traceback, replay (queued),
payment confirmations and invoice reports with their ATLAS state and a retry (queued)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils import timezone

from ledger_sync.models import InboundDelivery, PaymentConfirmation
from ledger_sync.models.inbound import CallbackState
from ledger_sync.services import payments

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


def test_payment_retry_action_queues_a_failed_payment(admin_client, monkeypatch):
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
    admin_client.post(
        "/admin/ledger_sync/paymentconfirmation/",
        {"action": "retry_selected", "_selected_action": [confirmation.pk]},
    )

    assert "PAY-1" in listing.content.decode()
    confirmation.refresh_from_db()
    assert confirmation.state == CallbackState.FAILED
    assert confirmation.next_attempt_at is None


@pytest.mark.parametrize(
    "page",
    ["invoicereport", "invoicesettlement", "apiclient", "paymentconfirmation"],
)
def test_inbound_admin_pages_render(admin_client, page):
    assert admin_client.get(f"/admin/ledger_sync/{page}/").status_code == 200
