"""Inbound: ATLAS webhooks (verify, store, acknowledge, process), API clients, and the sweep.

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
   pipeline for that order. A failure is recorded on the delivery with its traceback; a
   transient one is retried with backoff by `inbound_sweep`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
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
    ApiClient,
    Counterparty,
    InboundDelivery,
    Order,
    OrderItem,
    OrderState,
    OrderSync,
    PaymentConfirmation,
    SyncRun,
    SyncState,
)
from ledger_sync.services.background import backoff_delay, task_enqueue

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
# A RECEIVED delivery older than this was never picked up by its task (enqueue lost): the sweep
# takes it. Long enough that a busy queue is not raced for nothing (claims make it harmless).
RECEIVED_GRACE = timedelta(minutes=5)
SWEEP_LIMIT = 50


class WebhookPayloadError(ApplicationError):
    """The body is not a webhook we can store: malformed JSON, not an object, no entityId."""


class InboundProcessingError(ApplicationError):
    """Processing could not finish; `retryable` says whether trying again later may help."""

    def __init__(self, message: str, *, retryable: bool, details: dict[str, Any] | None = None):
        super().__init__(message, details=details)
        self.retryable = retryable


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
    from contextlib import nullcontext

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


@dataclass
class OrderPipelineOutcome:
    atlas_order_id: int
    state: str = ""
    steps: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"Order {self.atlas_order_id}: "
            + "; ".join(self.steps)
            + (f" → {self.state}" if self.state else "")
        )


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
    from ledger_sync.services.order_selection import trigger_statuses_setting

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


def order_pipeline_run(
    *,
    atlas_order_id: int,
    actor: str,
    atlas_client: Any = None,
    ledger_client: Any = None,
) -> OrderPipelineOutcome:
    """The journal pipeline for one order, as the cycle would run it, composed of the
    pipeline's public services: re-fetch from ATLAS (order, items, counterparty) → map the
    counterparty → select → build → post → write back. Each stage is idempotent, so a second
    run (a duplicate or a replay) changes nothing that the first one did.

    Raises InboundProcessingError (retryable) when ATLAS could not be read.
    """
    from ledger_sync.services.atlas_mirror import atlas_mirror_records
    from ledger_sync.services.journals import order_build_journal
    from ledger_sync.services.matching import counterparty_propose_matches
    from ledger_sync.services.order_selection import orders_select_candidates
    from ledger_sync.services.order_states import POSTABLE_STATES, WRITE_BACK_STATES
    from ledger_sync.services.posting import journals_post
    from ledger_sync.services.remote import (
        atlas_client_from_settings,
        gotransverse_client_from_settings,
    )
    from ledger_sync.services.writeback import write_backs_run

    atlas = atlas_client or atlas_client_from_settings()
    outcome = OrderPipelineOutcome(atlas_order_id=atlas_order_id)

    # 1. Re-fetch: the order and, in the same run, its items (one OrderItem/GetByOrderIds call;
    # an item ATLAS no longer lists is marked missing), and its counterparty when the mirror
    # lacks it (the scheduled mirror keeps known counterparties fresh; one call saved per
    # webhook). Two ATLAS calls for a known counterparty, four for a new one.
    _mirrored(
        atlas_mirror_records,
        client=atlas,
        entity="Order",
        atlas_ids=[atlas_order_id],
        with_items=True,
    )
    order = Order.objects.filter(atlas_id=atlas_order_id).first()
    if order is None:
        raise InboundProcessingError(
            f"ATLAS did not return order {atlas_order_id}.",
            retryable=False,
            details={"atlas_order_id": atlas_order_id},
        )
    if order.counterparty_id is None:
        _mirrored(
            atlas_mirror_records,
            client=atlas,
            entity="Counterparty",
            atlas_ids=[order.counterparty_atlas_id],
        )
        # The order's link to its counterparty is set when the order is mirrored again.
        _mirrored(atlas_mirror_records, client=atlas, entity="Order", atlas_ids=[atlas_order_id])
    item_ids = set(
        OrderItem.objects.filter(order_atlas_id=atlas_order_id)
        .exclude(sync_state=SyncState.MISSING)
        .values_list("atlas_id", flat=True)
    )
    outcome.steps.append(f"re-fetched with {len(item_ids)} item(s)")
    counterparty_propose_matches(
        counterparties=Counterparty.objects.filter(atlas_id=order.counterparty_atlas_id)
    )

    # 2. Selection of this order only: a webhook about one order must not move another one
    # (the cycle selects the rest on its own schedule, under its own actor).
    orders_select_candidates(actor=actor, order_ids=[atlas_order_id])
    order_sync = OrderSync.objects.filter(order__atlas_id=atlas_order_id).first()
    if order_sync is None:
        outcome.steps.append("not a candidate (not in a trigger status, or erpCode set)")
        return outcome
    outcome.steps.append(f"selected as {order_sync.state}")

    # 3. Build.
    if order_sync.state in (OrderState.READY, OrderState.JOURNAL_BUILT):
        journal = order_build_journal(order_sync=order_sync, actor=actor)
        order_sync.refresh_from_db()
        outcome.steps.append(
            f"journal {journal.source_transaction_reference} built"
            if journal is not None
            else f"not built ({order_sync.state})"
        )

    # 4. Post (the poster claims what is postable; this order among them).
    if order_sync.state in POSTABLE_STATES:
        ledger = ledger_client or gotransverse_client_from_settings()
        # Only this order: a webhook must not post (or create drafts for) other orders that
        # happen to be postable; the cycle does those on its own schedule.
        report = journals_post(client=ledger, actor=actor, order_sync_ids=[order_sync.pk])
        order_sync.refresh_from_db()
        outcome.steps.append(f"posting: {report.posted} posted, {report.drafted} drafted")

    # 5. Write back the ERP code and the invoice.
    if order_sync.state in WRITE_BACK_STATES:
        written = write_backs_run(client=atlas, order_sync_ids=[order_sync.pk])
        order_sync.refresh_from_db()
        outcome.steps.append(
            f"write-back: {written.erp_codes_written} erpCode, "
            f"{written.invoices_created + written.invoices_found} invoice"
        )
    outcome.state = order_sync.state
    if order_sync.state == OrderState.BLOCKED:
        outcome.steps.append(f"blocked: {order_sync.blocked_message}")
    return outcome


def _mirrored(mirror: Callable[..., SyncRun], **kwargs: Any) -> SyncRun:
    run = mirror(trigger=SyncRun.Trigger.WEBHOOK, **kwargs)
    if run.status == SyncRun.Status.FAILED:
        raise InboundProcessingError(
            f"Re-fetching {kwargs['entity']} from ATLAS failed: {run.error_message} "
            f"(sync run {run.pk}).",
            retryable=True,
            details={"sync_run": run.pk},
        )
    return run


def _is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, AtlasError | InboundProcessingError):
        return bool(exc.retryable)
    # The AR Ledger client's errors follow the same convention.
    return bool(getattr(exc, "retryable", False))


# --- API clients ----------------------------------------------------------------------------------

TOKEN_PREFIX_BYTES = 4  # 8 hex characters, shown in the admin to tell tokens apart


@dataclass(frozen=True)
class IssuedToken:
    client: ApiClient
    token: str  # shown once; only its hash is stored


def api_token_hash(secret: str) -> str:
    # The secret is 256 random bits: unguessable, so a fast hash is enough, and every request
    # can afford to compute it (a password hash would cost ~100 ms per call).
    return hashlib.sha256(secret.encode()).hexdigest()


@transaction.atomic
def api_client_create(
    *, name: str, permissions: list[str] | tuple[str, ...], notes: str = ""
) -> IssuedToken:
    """A new API client and its token `<prefix>.<secret>`, returned once and never again."""
    unknown = set(permissions) - set(ApiClient.Permission.values)
    if unknown:
        raise ApplicationError(
            f"Unknown permission(s) {sorted(unknown)}; use {ApiClient.Permission.values}.",
            details={"field": "permissions"},
        )
    name = name.strip()
    if not name:
        raise ApplicationError("An API client needs a name.", details={"field": "name"})
    if ApiClient.objects.filter(name=name).exists():
        raise ApplicationError(
            f"An API client named {name!r} already exists.", details={"field": "name"}
        )
    client = ApiClient(
        name=name,
        can_confirm_payments=ApiClient.Permission.PAYMENTS in permissions,
        can_report_invoices=ApiClient.Permission.INVOICES in permissions,
        notes=notes,
    )
    token = _token_assign(client)
    client.save()
    return IssuedToken(client=client, token=token)


@transaction.atomic
def api_client_rotate_token(*, client: ApiClient) -> IssuedToken:
    """A new token for an existing client; the old one stops working at once."""
    token = _token_assign(client)
    client.save(update_fields=["token_prefix", "token_hash"])
    return IssuedToken(client=client, token=token)


def _token_assign(client: ApiClient) -> str:
    while True:
        prefix = secrets.token_hex(TOKEN_PREFIX_BYTES)
        if not ApiClient.objects.filter(token_prefix=prefix).exists():
            break
    secret = secrets.token_urlsafe(32)
    client.token_prefix = prefix
    client.token_hash = api_token_hash(secret)
    return f"{prefix}.{secret}"


def api_client_authenticate(*, token: str, now: datetime | None = None) -> ApiClient | None:
    """The active client whose token this is, or None. The secret's hash is compared in
    constant time; a wrong prefix and a wrong secret look the same to the caller."""
    prefix, _, secret = token.strip().partition(".")
    if not prefix or not secret or len(prefix) > 16:
        return None
    client = ApiClient.objects.filter(token_prefix=prefix, is_active=True).first()
    expected = client.token_hash if client is not None else "0" * 64
    valid = hmac.compare_digest(api_token_hash(secret).encode(), expected.encode())
    if client is None or not valid:
        return None
    now = now or timezone.now()
    # At most one write a minute per client, not one per request.
    ApiClient.objects.filter(pk=client.pk).filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - timedelta(minutes=1))
    ).update(last_used_at=now)
    return client


# --- the sweep ------------------------------------------------------------------------------------


@dataclass
class SweepReport:
    deliveries: int = 0
    payments: int = 0
    invoice_checks: int = 0
    settlements: int = 0
    invoice_reports: int = 0
    order_states: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def inbound_sweep(
    *, now: datetime | None = None, atlas_client: Any = None, limit: int = SWEEP_LIMIT
) -> SweepReport:
    """Pick up inbound work that is due and was not done: deliveries whose task never ran or
    failed transiently, payments and invoice reports not yet in ATLAS (ATLAS was down),
    settlements still to send, and orders whose paid state waited for their write-back.
    Bounded per run; the schedule runs it every minute."""
    from ledger_sync.services.payments import (
        invoice_report_deliver,
        invoice_reports_due,
        invoice_settlement_send,
        order_payment_states_catch_up,
        payment_confirmation_deliver,
        payment_confirmations_due,
        payment_invoice_check,
        payment_invoice_checks_due,
        settlements_due,
    )
    from ledger_sync.services.problem_sources import INBOUND_KINDS
    from ledger_sync.services.problems import problems_refresh_safely

    now = now or timezone.now()
    report = SweepReport()
    stale = now - timedelta(seconds=settings.INBOUND_CLAIM_TIMEOUT_SECONDS)
    due_deliveries = list(
        InboundDelivery.objects.filter(
            Q(state=InboundDelivery.State.RECEIVED, received_at__lt=now - RECEIVED_GRACE)
            | Q(state=InboundDelivery.State.FAILED, next_attempt_at__lte=now)
            | Q(state=InboundDelivery.State.PROCESSING, claimed_at__lt=stale)
        )
        .order_by("received_at")
        .values_list("pk", flat=True)[:limit]
    )
    work: list[tuple[str, list[int], Callable[[int], Any]]] = [
        (
            "deliveries",
            due_deliveries,
            lambda pk: inbound_delivery_process(delivery_id=pk, atlas_client=atlas_client, now=now),
        ),
        (
            "payments",
            payment_confirmations_due(now=now, limit=limit),
            lambda pk: payment_confirmation_deliver(
                confirmation_id=pk, client=atlas_client, now=now
            ),
        ),
        (
            "invoice_checks",
            payment_invoice_checks_due(now=now, limit=limit),
            lambda pk: payment_invoice_check(
                confirmation=PaymentConfirmation.objects.get(pk=pk), client=atlas_client, now=now
            ),
        ),
        (
            "settlements",
            settlements_due(now=now, limit=limit),
            lambda pk: invoice_settlement_send(settlement_id=pk, client=atlas_client, now=now),
        ),
        (
            "invoice_reports",
            invoice_reports_due(now=now, limit=limit),
            lambda pk: invoice_report_deliver(report_id=pk, client=atlas_client, now=now),
        ),
    ]
    for kind, pks, run in work:
        for pk in pks:
            try:
                run(pk)
            except Exception:
                # One record that fails unexpectedly (a bug, a database hiccup) must not stop
                # the rest of the sweep: it is logged with its traceback, and its claim (taken
                # before the failure) keeps it out of the next sweeps until the claim runs out.
                logger.exception("inbound.sweep_item_failed", extra={"kind": kind, "pk": pk})
                continue
            setattr(report, kind, getattr(report, kind) + 1)
    # Orders paid while their write-back was still running move once it made them INVOICED.
    report.order_states = order_payment_states_catch_up(limit=limit)
    problems_refresh_safely(kinds=INBOUND_KINDS)
    return report
