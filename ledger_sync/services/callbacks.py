"""What the ERP's and the bank's callbacks (payment confirmations, invoice reports) share: the
refusals they answer with, money checked to the cent, the invoice a callback names resolved,
idempotency by fingerprint, and a failed callback's record, retry and due list."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from integration import wire
from ledger_sync.errors import ApplicationError
from ledger_sync.models import (
    Invoice,
    IssuedInvoice,
    Order,
    SyncState,
)
from ledger_sync.models.inbound import CallbackState
from ledger_sync.services.background import backoff_delay
from ledger_sync.services.remote import atlas_client_from_settings

logger = logging.getLogger(__name__)


CENT = Decimal("0.01")


# An ACCEPTED callback younger than this belongs to its own on-commit task; the sweep leaves it.
ACCEPTED_GRACE = timedelta(seconds=30)


DATE_LINE_AHEAD = timedelta(hours=14)


class CallbackRejected(ApplicationError):
    """A request that is well-formed but cannot be accepted (422): names the field and why."""

    def __init__(self, message: str, *, field: str, code: str):
        super().__init__(message, details={"field": field, "code": code})
        self.field = field
        self.code = code


class IdempotencyConflict(ApplicationError):
    """The externalId was used before with a different request (409)."""

    def __init__(self, message: str, *, field: str = "externalId"):
        super().__init__(message, details={"field": field, "code": "idempotency_conflict"})
        self.field = field


class InvoiceNotInAtlas(ApplicationError):
    """The invoice a payment belongs to is not (yet) in ATLAS: retried later."""

    retryable = True


def callback_fingerprint(value: Any) -> str:
    return hashlib.sha256(wire.canonical(value).encode()).hexdigest()


def money_text(amount: Decimal) -> str:
    # 100, 100.0 and 100.00 are the same amount: the same request, not a conflict.
    return str(amount.quantize(CENT)) if cents_only(amount) else str(amount)


def cents_only(amount: Decimal) -> bool:
    return amount.is_finite() and amount == amount.quantize(CENT)


def money_check(amount: Decimal, *, field: str = "amount") -> None:
    if not amount.is_finite() or not cents_only(amount):
        raise CallbackRejected(
            f"{field} {amount} has more than 2 decimal places; send the amount in cents "
            "precision (e.g. 1234.50).",
            field=field,
            code="invalid_amount",
        )
    if amount <= 0:
        raise CallbackRejected(
            f"{field} must be positive, got {amount}.", field=field, code="non_positive_amount"
        )
    if amount.adjusted() >= 16:
        raise CallbackRejected(
            f"{field} {amount} is too large.", field=field, code="invalid_amount"
        )


@dataclass(frozen=True)
class InvoiceRef:
    """An invoice a payment can be booked against: ours (IssuedInvoice) or mirrored."""

    atlas_id: int | None
    external_id: str
    order_atlas_id: int | None
    amount: Decimal
    currency: str
    is_paid: bool
    label: str


def invoice_resolve(
    *, external_id: str | None = None, atlas_id: int | None = None, lock: bool = False
) -> InvoiceRef | None:
    """The invoice named by `external_id` or ATLAS `atlas_id`, from what ledger_sync holds (no
    remote call). `lock` takes its row lock (PostgreSQL) so payments to one invoice are checked
    one after the other."""
    issued_qs = IssuedInvoice.objects.select_related("order_sync__order")
    mirror_qs = Invoice.objects.exclude(sync_state=SyncState.MISSING).select_related("order")
    if lock:
        issued_qs = issued_qs.select_for_update(of=("self",))
        mirror_qs = mirror_qs.select_for_update(of=("self",))
    if external_id:
        issued = issued_qs.filter(external_id=external_id).first()
        mirrored = mirror_qs.filter(external_id=external_id).order_by("atlas_id").first()
    else:
        issued = issued_qs.filter(atlas_invoice_id=atlas_id).first()
        mirrored = mirror_qs.filter(atlas_id=atlas_id).first()
    if issued is None and mirrored is None:
        return None
    if issued is not None:
        order = issued.order_sync.order
        return InvoiceRef(
            atlas_id=issued.atlas_invoice_id or (mirrored.atlas_id if mirrored else None),
            external_id=issued.external_id,
            order_atlas_id=order.atlas_id,
            amount=issued.amount,
            currency=issued.currency,
            is_paid=bool(mirrored and mirrored.is_paid),
            label=f"invoice {issued.number} ({issued.external_id})",
        )
    assert mirrored is not None
    order = mirrored.order or Order.objects.filter(atlas_id=mirrored.order_atlas_id).first()
    return InvoiceRef(
        atlas_id=mirrored.atlas_id,
        external_id=mirrored.external_id or "",
        order_atlas_id=mirrored.order_atlas_id,
        amount=mirrored.amount,
        currency=order.currency if order is not None else "",
        is_paid=mirrored.is_paid,
        label=f"invoice {mirrored.invoice_number or mirrored.atlas_id}"
        + (f" ({mirrored.external_id})" if mirrored.external_id else ""),
    )


def repeat_of(model: type[Any], external_id: str, fingerprint: str, what: str) -> Any:
    """The row stored for this externalId when the request is a repeat; None when it is new.
    Raises IdempotencyConflict when the externalId was used with other content."""
    existing = model.objects.filter(external_id=external_id).first()
    return None if existing is None else same_or_conflict(existing, fingerprint, what)


def same_or_conflict(existing: Any, fingerprint: str, what: str) -> Any:
    if existing.request_fingerprint == fingerprint:
        return existing
    raise IdempotencyConflict(
        f"externalId {existing.external_id!r} was already used for a different {what} "
        f"(received {existing.received_at:%Y-%m-%d %H:%M:%S} UTC); use a new externalId for a "
        "new one, or send exactly the same request to read its result.",
    )


def atlas_client_or_default(client: Any) -> Any:
    if client is not None:
        return client

    return atlas_client_from_settings()


def midnight_utc(value: date) -> datetime:
    return datetime(value.year, value.month, value.day)


def callback_failed(model: type[Any], row: Any, *, error: Exception, record: dict) -> None:
    retryable = bool(getattr(error, "retryable", False))
    give_up = row.attempts >= settings.INBOUND_MAX_ATTEMPTS
    model.objects.filter(pk=row.pk).update(
        state=CallbackState.FAILED if retryable else CallbackState.REJECTED,
        last_error=str(error)[:4000],
        next_attempt_at=(
            timezone.now() + backoff_delay(row.attempts) if retryable and not give_up else None
        ),
        atlas_request_json=wire.dumps(record, indent=2) if record else row.atlas_request_json,
        claimed_until=None,
    )
    logger.warning(
        "callback.write_failed",
        extra={"model": model.__name__, "pk": row.pk, "retryable": retryable},
    )


def callback_retry(row: Any, *, enqueue: Callable[[int], None]) -> Any:
    """A failed or rejected callback (payment or invoice report) back to FAILED with no wait,
    and its delivery queued; the row as it is now. Other states are not changed."""
    type(row).objects.filter(
        pk=row.pk, state__in=[CallbackState.FAILED, CallbackState.REJECTED]
    ).update(state=CallbackState.FAILED, next_attempt_at=None, claimed_until=None)
    transaction.on_commit(lambda: enqueue(row.pk), robust=True)
    row.refresh_from_db()
    return row


def callbacks_due(model: type[Any], *, now: datetime, limit: int) -> list[int]:
    """Callbacks to deliver: accepted ones past the grace the accepting request queued them
    in, and failed ones whose backoff is over; not claimed by a live worker, attempts left."""
    return list(
        model.objects.filter(
            Q(state=CallbackState.ACCEPTED, received_at__lt=now - ACCEPTED_GRACE)
            | Q(state=CallbackState.FAILED)
            & (Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        )
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .filter(attempts__lt=settings.INBOUND_MAX_ATTEMPTS)
        .order_by("received_at")
        .values_list("pk", flat=True)[:limit]
    )
