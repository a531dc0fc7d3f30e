"""POST /api/webhooks/atlas/: signature, storage before the answer, duplicates, bad input."""

from __future__ import annotations

import io
import threading
from datetime import timedelta
from typing import Any

import pytest
from django.core.handlers.asgi import ASGIRequest
from django.db import connection, connections
from django.test import Client
from django.utils import timezone

from integration import wire
from ledger_sync.api.views import AtlasWebhookView
from ledger_sync.models import InboundDelivery
from ledger_sync.services import inbound
from ledger_sync.services.inbound import inbound_delivery_process
from tests.ledger_sync.api.conftest import order_event, sign

pytestmark = pytest.mark.django_db(transaction=True)


def test_signed_webhook_is_stored_then_queued_and_acknowledged(post_webhook, queued):
    payload = order_event(210)

    response = post_webhook(payload, headers={"User-Agent": "ATLAS-Webhooks/1.0"})

    assert response.status_code == 200
    delivery = InboundDelivery.objects.get()
    assert response.json() == {"status": "accepted", "deliveryId": delivery.pk}
    assert delivery.state == InboundDelivery.State.RECEIVED
    assert wire.loads(delivery.raw_body) == payload
    assert (delivery.event_type, delivery.entity_type, delivery.entity_id) == (
        "order.status_changed",
        "Order",
        210,
    )
    assert delivery.new_status == "Approved order by ETRM"
    assert delivery.headers["User-Agent"] == "ATLAS-Webhooks/1.0"
    # The signature is never kept.
    assert not any("signature" in name.lower() for name in delivery.headers)
    assert queued == [delivery.pk]


@pytest.mark.parametrize(
    ("case", "signature", "secret", "tamper"),
    [
        ("missing", None, None, False),
        ("garbage", "sha256=not-a-digest", None, False),
        ("wrong secret", "valid", "someone-elses-secret", False),
        ("body altered after signing", "valid", None, True),
        ("no scheme prefix", "bare", None, False),
    ],
)
def test_bad_signature_is_refused_and_nothing_is_stored(
    post_webhook, queued, settings, caplog, case, signature, secret, tamper
):
    body = wire.dumps(order_event(210)).encode()
    if signature == "valid":
        signature = sign(body, secret or settings.ATLAS_WEBHOOK_SECRET)
    elif signature == "bare":
        signature = sign(body, settings.ATLAS_WEBHOOK_SECRET).removeprefix("sha256=")
    if tamper:
        body = body.replace(b"210", b"211")

    response = post_webhook(body=body, signature=signature)

    assert response.status_code == 401, case
    assert response.json()["error"]["code"] == "invalid_signature"
    assert "Signature" in response["WWW-Authenticate"]
    assert not InboundDelivery.objects.exists()
    assert queued == []
    assert any(r.message == "webhook.signature_rejected" for r in caplog.records)


def test_no_secret_configured_refuses_every_delivery(post_webhook, queued, settings):
    body = wire.dumps(order_event()).encode()
    signature = sign(body, "")
    settings.ATLAS_WEBHOOK_SECRET = ""

    assert post_webhook(body=body, signature=signature).status_code == 401


def test_a_duplicate_is_acknowledged_and_not_processed_twice(post_webhook, queued):
    first = post_webhook(order_event(210))
    second = post_webhook(order_event(210))

    assert first.json()["status"] == "accepted"
    assert second.status_code == 200
    assert second.json() == {"status": "duplicate", "deliveryId": first.json()["deliveryId"]}
    assert InboundDelivery.objects.count() == 1
    assert queued == [first.json()["deliveryId"]]


def test_same_order_with_a_later_timestamp_is_a_new_delivery(post_webhook, queued):
    post_webhook(order_event(210))
    post_webhook(order_event(210, timestamp="2026-04-01T09:00:00Z"))

    assert InboundDelivery.objects.count() == 2
    assert len(queued) == 2


def test_an_unsigned_delivery_id_header_does_not_make_a_copy_new(post_webhook, queued):
    """The signature covers the body only: a replayed copy with another delivery id header is
    still the same event, and a new event is not hidden by reusing an id."""
    post_webhook(order_event(210), headers={"X-Atlas-Delivery-Id": "d-1"})
    replayed = post_webhook(order_event(210), headers={"X-Atlas-Delivery-Id": "d-2"})
    later = post_webhook(
        order_event(210, timestamp="2026-04-01T09:00:00Z"), headers={"X-Atlas-Delivery-Id": "d-1"}
    )

    assert replayed.json()["status"] == "duplicate"
    assert later.json()["status"] == "accepted"
    assert InboundDelivery.objects.count() == 2
    assert InboundDelivery.objects.order_by("pk").first().headers["X-Atlas-Delivery-Id"] == "d-1"


def test_two_copies_arriving_at_the_same_moment_are_stored_once(post_webhook, queued):
    if connection.vendor == "sqlite":
        pytest.skip(
            "the in-memory SQLite test database locks whole tables across threads; the "
            "SQLite race runs against a served file database in test_webhooks_served.py"
        )
    copies = 4
    start = threading.Barrier(copies)
    answers: list[tuple[int, dict]] = []
    errors: list[BaseException] = []

    def deliver() -> None:
        try:
            start.wait(timeout=10)
            response = post_webhook(order_event(210), client=Client())
            answers.append((response.status_code, response.json()))
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=deliver) for _ in range(copies)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not errors
    assert sorted(status for status, _ in answers) == [200] * copies
    outcomes = sorted(body["status"] for _, body in answers)
    assert outcomes == ["accepted"] + ["duplicate"] * (copies - 1)
    delivery = InboundDelivery.objects.get()
    assert {body["deliveryId"] for _, body in answers} == {delivery.pk}
    assert queued == [delivery.pk]


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        (b"{not json", None, "not valid JSON"),
        (b"[1, 2]", None, "JSON object"),
        (b'{"event": "order.status_changed", "entityType": "Order"}', "entityId", "missing"),
        (b'{"event": "order.status_changed", "entityId": "210"}', "entityId", "whole number"),
        (b'{"event": "order.status_changed", "entityId": 0}', "entityId", "whole number"),
        (b'{"event": 5, "entityId": 210}', "event", "must be text"),
    ],
)
def test_malformed_input_is_refused_with_a_clear_message(post_webhook, queued, body, field, words):
    response = post_webhook(body=body)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_payload"
    assert error["field"] == field
    assert words in error["message"]
    assert not InboundDelivery.objects.exists()


def test_an_unknown_event_is_stored_acknowledged_and_ignored(post_webhook, queued):
    response = post_webhook(
        {"event": "counterparty.updated", "entityType": "Counterparty", "entityId": 42}
    )

    assert response.status_code == 200
    assert response.json()["status"] == "ignored"
    delivery = InboundDelivery.objects.get()
    assert delivery.state == InboundDelivery.State.IGNORED
    assert "not handled" in delivery.result
    assert queued == []


def test_a_body_over_the_limit_is_refused_before_anything_else(post_webhook, queued, settings):
    settings.API_MAX_BODY_BYTES = 1024
    payload = order_event(210, padding="x" * 2000)

    response = post_webhook(payload)

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"
    assert not InboundDelivery.objects.exists()


def test_plain_http_is_refused_when_https_is_required(post_webhook, queued, settings):
    settings.API_REQUIRE_HTTPS = True
    body = wire.dumps(order_event(210)).encode()
    signature = {"X-Atlas-Signature": sign(body, settings.ATLAS_WEBHOOK_SECRET)}

    plain = post_webhook(body=body)
    secure = Client().post(
        "/api/webhooks/atlas/",
        data=body,
        content_type="application/json",
        secure=True,
        headers=signature,
    )

    assert plain.status_code == 403
    assert plain.json()["error"]["code"] == "https_required"
    assert secure.status_code == 200
    assert InboundDelivery.objects.count() == 1


def _asgi_request(body: bytes, *, headers: dict[str, str]) -> Any:
    """What an ASGI server hands Django for a chunked upload: the whole body, buffered, and no
    Content-Length header to check it against."""
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/webhooks/atlas/",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
    }
    return ASGIRequest(scope, io.BytesIO(body))


def test_a_body_over_the_limit_without_content_length_is_refused(queued, settings):
    settings.API_MAX_BODY_BYTES = 1024
    body = wire.dumps(order_event(210, padding="x" * 2000)).encode()
    request = _asgi_request(
        body,
        headers={
            "Content-Type": "application/json",
            "X-Atlas-Signature": sign(body, settings.ATLAS_WEBHOOK_SECRET),
        },
    )

    response = AtlasWebhookView.as_view()(request)

    assert response.status_code == 413
    assert not InboundDelivery.objects.exists()
    assert queued == []


def test_a_body_within_the_limit_without_content_length_is_accepted(queued, settings):
    body = wire.dumps(order_event(210)).encode()
    request = _asgi_request(
        body,
        headers={
            "Content-Type": "application/json",
            "X-Atlas-Signature": sign(body, settings.ATLAS_WEBHOOK_SECRET),
        },
    )

    response = AtlasWebhookView.as_view()(request)

    assert response.status_code == 200
    assert InboundDelivery.objects.get().raw_body == body.decode()


@pytest.mark.parametrize("next_attempt_in", [timedelta(minutes=5), None])
def test_a_second_copy_of_the_task_does_not_retry_a_failure_early(next_attempt_in):
    """django-q2 may hand a task out twice: a copy arriving while the delivery waits for its
    backoff (or after it was given up, waiting for a person) does nothing."""
    now = timezone.now()
    delivery = InboundDelivery.objects.create(
        dedup_key="event:x",
        event_type="order.status_changed",
        entity_type="Order",
        entity_id=210,
        new_status="Approved order by ETRM",
        raw_body="{}",
        received_at=now,
        state=InboundDelivery.State.FAILED,
        attempts=1,
        last_error="ATLAS down",
        next_attempt_at=now + next_attempt_in if next_attempt_in else None,
    )

    def fail(*args, **kwargs):
        raise AssertionError("processed again")

    result = inbound_delivery_process(delivery_id=delivery.pk, atlas_client=fail, now=now)

    assert result is not None
    assert (result.state, result.attempts) == (InboundDelivery.State.FAILED, 1)


def test_a_failing_queue_still_acknowledges_a_stored_delivery(post_webhook, monkeypatch):
    """The delivery is stored before the answer; if queueing its task fails, ATLAS still gets
    200 (else it would resend) and the sweep processes the RECEIVED delivery later."""

    def broken_queue(delivery_id: int) -> None:
        raise ConnectionError("broker unavailable")

    monkeypatch.setattr(inbound, "_enqueue_delivery", broken_queue)

    response = post_webhook(order_event(210))

    assert response.status_code == 200
    assert response.json()["status"] == "accepted"
    assert InboundDelivery.objects.get().state == InboundDelivery.State.RECEIVED


@pytest.mark.parametrize("entity_id", [2**63, 10**30])
def test_an_entity_id_beyond_any_atlas_id_is_a_400_not_a_crash(post_webhook, queued, entity_id):
    response = post_webhook(order_event(entity_id))

    assert response.status_code == 400
    assert response.json()["error"]["field"] == "entityId"
    assert not InboundDelivery.objects.exists()


def test_a_nul_character_in_a_text_field_is_a_400_not_a_crash(post_webhook, queued):
    response = post_webhook(order_event(210, newStatus="Approved\u0000"))

    assert response.status_code == 400
    assert response.json()["error"]["field"] == "newStatus"
    assert not InboundDelivery.objects.exists()
