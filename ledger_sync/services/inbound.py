"""Inbound: ATLAS webhooks (verify, store, acknowledge, process). API clients are in
services/api_clients.py, the sweep that re-queues what was left behind in services/sweep.py.

A webhook goes through three steps, after dj-stripe and Zulip:
1. `webhook_signature_valid`: HMAC-SHA256 of the raw body with ATLAS_WEBHOOK_SECRET, compared
   in constant time. A bad or missing signature is refused (401) and logged, nothing stored.
2. `atlas_webhook_receive`: the delivery is stored (raw body, kept headers, dedup key) BEFORE
   the answer; the dedup key is UNIQUE, so a duplicate — also two copies arriving at the same
   moment — meets the database's constraint and is acknowledged as a duplicate. The processing
   task is queued on commit; nothing remote happens inside the request.
3. `inbound_delivery_process` (the task): claims the delivery, dispatches on the event type
   (HANDLED_EVENTS), checks newStatus against the trigger statuses, re-fetches the order, its
   items and its counterparty from ATLAS (the payload is never trusted) and runs the journal
   pipeline for that order (`pipeline.order_pipeline_run`). A failure is recorded on the
   delivery with its traceback; a transient one is retried with backoff by `inbound_sweep`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import traceback
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from integration import wire
from integration.atlas.errors import AtlasError
from ledger_sync.errors import ApplicationError
from ledger_sync.models import (
    InboundDelivery,
)
from ledger_sync.services.background import backoff_delay, task_enqueue
from ledger_sync.services.order_selection import trigger_statuses_setting
from ledger_sync.services.pipeline import InboundProcessingError, order_pipeline_run

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Atlas-Signature"
SIGNATURE_SCHEME = "sha256="
# Optional: when ATLAS (or a proxy) names each delivery, the name is kept for diagnosis (not
# for deduplication: headers are not signed).
DELIVERY_ID_HEADERS = ("X-Atlas-Delivery-Id", "X-Atlas-Delivery")
# Kept on the delivery for diagnosis; the signature and anything like a credential never are.
KEPT_HEADERS = (
    "Content-Type",
    "Content-Length",
    "User-Agent",
    "X-Atlas-Delivery-Id",
    "X-Atlas-Delivery",
    "X-Atlas-Event",
    "X-Forwarded-For",
    "X-Request-Id",
)
EVENT_ORDER_STATUS_CHANGED = "order.status_changed"
# ATLAS ids are stored in 64-bit columns: anything larger is not an ATLAS id (and would not fit).
MAX_ATLAS_ID = 2**63 - 1
ACTOR_WEBHOOK = "system:webhook"


class WebhookPayloadError(ApplicationError):
    """The body is not a webhook we can store: malformed JSON, not an object, no entityId."""


# --- signature -----------------------------------------------------------------------------------


def webhook_signature_expected(*, body: bytes, secret: str) -> str:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_SCHEME}{digest}"


def webhook_signature_valid(*, body: bytes, header: str | None, secret: str | None = None) -> bool:
    """True when `header` is `sha256=<hex HMAC-SHA256 of body>` with the webhook secret.

    Compared with hmac.compare_digest, so the time taken says nothing about how much of a
    forged signature was right. No secret configured: every delivery is refused.
    """
    secret = settings.ATLAS_WEBHOOK_SECRET if secret is None else secret
    if not secret or not header:
        return False
    expected = webhook_signature_expected(body=body, secret=secret)
    return hmac.compare_digest(expected.encode(), header.strip().lower().encode())


# --- receiving -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookReceipt:
    delivery: InboundDelivery
    duplicate: bool


@dataclass(frozen=True)
class WebhookEvent:
    event_type: str
    entity_type: str
    entity_id: int
    new_status: str
    timestamp: str


def webhook_event_parse(body: bytes) -> WebhookEvent:
    """The fields of a webhook body; WebhookPayloadError with a clear message otherwise."""
    try:
        payload = wire.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise WebhookPayloadError(
            f"The body is not valid JSON ({exc}).", details={"field": None}
        ) from None
    if not isinstance(payload, Mapping):
        raise WebhookPayloadError("The body must be a JSON object.", details={"field": None})
    entity_id = payload.get("entityId")
    if entity_id is None:
        raise WebhookPayloadError(
            "entityId is missing: the webhook must name the ATLAS record it is about.",
            details={"field": "entityId"},
        )
    if (
        isinstance(entity_id, bool)
        or not isinstance(entity_id, int)
        or not 1 <= entity_id <= MAX_ATLAS_ID
    ):
        raise WebhookPayloadError(
            f"entityId must be a positive whole number (an ATLAS id), got {entity_id!r}."[:300],
            details={"field": "entityId"},
        )

    def text(name: str, limit: int) -> str:
        value = payload.get(name)
        if value is None:
            return ""
        if not isinstance(value, str):
            raise WebhookPayloadError(
                f"{name} must be text, got {value!r}.", details={"field": name}
            )
        if len(value) > limit:
            raise WebhookPayloadError(
                f"{name} is longer than {limit} characters.", details={"field": name}
            )
        if "\x00" in value:
            # PostgreSQL text cannot hold NUL: refused here rather than failing the insert.
            raise WebhookPayloadError(f"{name} contains a NUL character.", details={"field": name})
        return value

    return WebhookEvent(
        event_type=text("event", 100),
        entity_type=text("entityType", 64),
        entity_id=entity_id,
        new_status=text("newStatus", 255),
        timestamp=text("timestamp", 64),
    )


def webhook_dedup_key(*, event: WebhookEvent, headers: Mapping[str, str]) -> str:
    """A hash of event, entity, new status and timestamp: the same status change sent twice
    has the same key.

    Only signed content counts. A delivery id header (`headers`) is kept on the delivery for
    diagnosis but is not part of the key: the signature covers the body alone, so a replayed
    copy with another header would otherwise pass as new, and a header that differs per
    attempt would defeat deduplication of ATLAS's own retries."""
    fingerprint = wire.canonical(
        [event.event_type, event.entity_type, event.entity_id, event.new_status, event.timestamp]
    )
    return f"event:{hashlib.sha256(fingerprint.encode()).hexdigest()}"


def handled_event_types() -> frozenset[str]:
    return frozenset(HANDLED_EVENTS)


def atlas_webhook_receive(
    *,
    body: bytes,
    headers: Mapping[str, str],
    remote_addr: str | None = None,
    enqueue: Callable[[int], None] | None = None,
) -> WebhookReceipt:
    """Store a verified delivery and queue its processing on commit; a duplicate is returned
    as such and queues nothing. An event type not handled is stored as IGNORED (visible in the
    admin), also queueing nothing. Raises WebhookPayloadError for a body we cannot store."""
    event = webhook_event_parse(body)
    key = webhook_dedup_key(event=event, headers=headers)
    handled = event.event_type in HANDLED_EVENTS
    now = timezone.now()
    try:
        with _own_statement_or_savepoint():
            delivery = InboundDelivery.objects.create(
                source=InboundDelivery.Source.ATLAS_WEBHOOK,
                dedup_key=key,
                event_type=event.event_type,
                entity_type=event.entity_type,
                entity_id=event.entity_id,
                new_status=event.new_status,
                event_timestamp=event.timestamp,
                raw_body=body.decode("utf-8", errors="replace"),
                headers=_kept_headers(headers),
                remote_addr=remote_addr or None,
                received_at=now,
                state=InboundDelivery.State.RECEIVED if handled else InboundDelivery.State.IGNORED,
                result="" if handled else f"Event type {event.event_type!r} is not handled.",
                processed_at=None if handled else now,
            )
    except IntegrityError:
        # The same delivery is already stored (a retry by ATLAS, or a copy that arrived at the
        # same moment and won the insert): acknowledge, do not process again.
        existing = InboundDelivery.objects.filter(dedup_key=key).first()
        if existing is None:  # pragma: no cover - the constraint that fired was another one
            raise
        logger.info("webhook.duplicate", extra={"delivery": existing.pk, "event": event.event_type})
        return WebhookReceipt(delivery=existing, duplicate=True)
    if handled:
        # Queued once the row is committed: at once in autocommit (the request), or when the
        # caller's transaction commits; never for a row that was rolled back. robust: the
        # delivery is stored, so a queue that fails now must not turn the answer into a 500
        # (ATLAS would resend); the sweep picks up a RECEIVED delivery its task never took.
        queue = enqueue or _enqueue_delivery
        transaction.on_commit(lambda: queue(delivery.pk), robust=True)
    logger.info(
        "webhook.stored",
        extra={
            "delivery": delivery.pk,
            "event": event.event_type,
            "entity_id": event.entity_id,
            "handled": handled,
        },
    )
    return WebhookReceipt(delivery=delivery, duplicate=False)


def _own_statement_or_savepoint() -> Any:
    """The insert needs no transaction of its own: in autocommit a single INSERT is atomic and a
    unique violation leaves nothing to roll back (BEGIN and COMMIT would be two more round trips
    on the hot path). Inside a caller's transaction, a savepoint keeps that transaction usable
    after the violation."""
    if transaction.get_connection().in_atomic_block:
        return transaction.atomic()
    return nullcontext()


def _kept_headers(headers: Mapping[str, str]) -> dict[str, str]:
    kept = {}
    for name in KEPT_HEADERS:
        value = headers.get(name)
        if value:
            kept[name] = str(value)[:500]
    return kept


def _enqueue_delivery(delivery_id: int) -> None:
    task_enqueue(
        "ledger_sync.tasks.inbound_delivery_process_task",
        delivery_id,
        task_name=f"webhook-delivery-{delivery_id}",
    )


def inbound_delivery_replay(*, delivery: InboundDelivery) -> InboundDelivery:
    """A person asks for a delivery to be processed again (the admin's "replay"): it is reset
    to RECEIVED and queued; the pipeline is idempotent, so a replay never books twice."""
    with transaction.atomic():
        InboundDelivery.objects.filter(pk=delivery.pk).exclude(
            state=InboundDelivery.State.PROCESSING
        ).update(
            state=InboundDelivery.State.RECEIVED,
            next_attempt_at=None,
            claimed_at=None,
            replays=F("replays") + 1,
        )
        transaction.on_commit(lambda: _enqueue_delivery(delivery.pk), robust=True)
    delivery.refresh_from_db()
    return delivery


# --- processing -----------------------------------------------------------------------------------


def inbound_delivery_process(
    *,
    delivery_id: int,
    atlas_client: Any = None,
    ledger_client: Any = None,
    now: datetime | None = None,
) -> InboundDelivery | None:
    """Process one stored delivery (the task). Safe to run twice: only the run that claims the
    delivery works on it; a processed or ignored delivery is left alone."""
    now = now or timezone.now()
    stale = now - timedelta(seconds=settings.INBOUND_CLAIM_TIMEOUT_SECONDS)
    claimed = (
        InboundDelivery.objects.filter(pk=delivery_id)
        .filter(
            Q(state=InboundDelivery.State.RECEIVED)
            # A failure is retried when its backoff is over, never earlier by a second copy of
            # the task, and never once given up (next_attempt_at empty): then a person replays.
            | Q(state=InboundDelivery.State.FAILED, next_attempt_at__lte=now)
            | Q(state=InboundDelivery.State.PROCESSING, claimed_at__lt=stale)
        )
        .update(
            state=InboundDelivery.State.PROCESSING,
            claimed_at=now,
            attempts=F("attempts") + 1,
        )
    )
    delivery = InboundDelivery.objects.filter(pk=delivery_id).first()
    if not claimed or delivery is None:
        return delivery
    handler = HANDLED_EVENTS.get(delivery.event_type)
    try:
        if handler is None:
            state, result = (
                InboundDelivery.State.IGNORED,
                (f"Event type {delivery.event_type!r} is not handled."),
            )
        else:
            state, result = handler(
                delivery, atlas_client=atlas_client, ledger_client=ledger_client
            )
    except Exception as exc:
        retryable = _is_retryable(exc)
        attempts = delivery.attempts
        give_up = not retryable or attempts >= settings.INBOUND_MAX_ATTEMPTS
        InboundDelivery.objects.filter(pk=delivery.pk).update(
            state=InboundDelivery.State.FAILED,
            last_error=f"{type(exc).__name__}: {exc}"[:4000],
            traceback=traceback.format_exc()[-20000:],
            next_attempt_at=None if give_up else timezone.now() + backoff_delay(attempts),
            claimed_at=None,
        )
        logger.warning(
            "webhook.failed",
            extra={"delivery": delivery.pk, "error": type(exc).__name__, "retry": not give_up},
        )
        delivery.refresh_from_db()
        return delivery
    InboundDelivery.objects.filter(pk=delivery.pk).update(
        state=state,
        result=result[:4000],
        last_error="",
        traceback="",
        next_attempt_at=None,
        claimed_at=None,
        processed_at=timezone.now(),
    )
    delivery.refresh_from_db()
    return delivery


def _order_status_changed(
    delivery: InboundDelivery, *, atlas_client: Any, ledger_client: Any
) -> tuple[str, str]:
    if delivery.entity_type and delivery.entity_type != "Order":
        return InboundDelivery.State.IGNORED, (
            f"entityType {delivery.entity_type!r} is not an order."
        )
    statuses = trigger_statuses_setting()
    if delivery.new_status not in statuses:
        return InboundDelivery.State.IGNORED, (
            f"Status {delivery.new_status!r} is not a trigger status "
            f"({', '.join(repr(s) for s in statuses)}); the scheduled mirror keeps the order "
            "up to date."
        )
    assert delivery.entity_id is not None
    outcome = order_pipeline_run(
        atlas_order_id=delivery.entity_id,
        actor=ACTOR_WEBHOOK,
        atlas_client=atlas_client,
        ledger_client=ledger_client,
    )
    return InboundDelivery.State.PROCESSED, outcome.summary()


# Zulip-style: the event types this integration handles; anything else is stored as ignored.
HANDLED_EVENTS: dict[str, Callable[..., tuple[str, str]]] = {
    EVENT_ORDER_STATUS_CHANGED: _order_status_changed,
}


def _is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, AtlasError | InboundProcessingError):
        return bool(exc.retryable)
    # The AR Ledger client's errors follow the same convention.
    return bool(getattr(exc, "retryable", False))


# --- API clients ----------------------------------------------------------------------------------

# --- the sweep ------------------------------------------------------------------------------------
