"""Payment confirmations and invoice reports from the ERP or the bank, written to ATLAS.

Both follow the same shape (TigerBeetle/Formance habits): the caller's `externalId` is the
idempotency key, stored with a fingerprint of the normalised request BEFORE the answer. The same
request again gets the same result; the same key with other content is a conflict (409), never
a silent success. Accepted requests are written to ATLAS by a task; when ATLAS is down they stay
stored and the sweep delivers them when it is back.

Payments (the guide, "settlement write-backs"):
- one Payment/Post record per payment event (partial payments allowed); before re-sending a
  payment that may already have landed (a retry), ATLAS's payments of the invoice are read and
  one carrying our externalId is recorded instead of created again;
- when ATLAS's payments of an invoice reach its amount, Invoice/Post sets isPaid=true — once:
  an InvoiceSettlement row (unique per invoice) is claimed before the call, and an invoice ATLAS
  already shows as paid is never sent again;
- the order moves to partially paid, then paid.
Each accepted payment is also settled in the AR Ledger (services/settlements.py), apart from
its write to ATLAS.
Invoice reports hand the ERP's number to the write-back of the order (IssuedInvoice, source
"erp_callback"), which looks the invoice up by externalId in ATLAS before creating it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q, Sum
from django.utils import timezone

from integration import wire
from integration.atlas.errors import AtlasError
from ledger_sync.errors import InvalidTransition
from ledger_sync.models import (
    InvoiceSettlement,
    OrderState,
    OrderSync,
    Payment,
    PaymentConfirmation,
    SyncState,
)
from ledger_sync.models.inbound import CallbackState
from ledger_sync.services.background import backoff_delay, task_queuer
from ledger_sync.services.callbacks import (
    ACCEPTED_GRACE,
    DATE_LINE_AHEAD,
    CallbackRejected,
    InvoiceNotInAtlas,
    InvoiceRef,
    atlas_client_or_default,
    callback_failed,
    callback_fingerprint,
    callback_retry,
    callbacks_due,
    invoice_resolve,
    midnight_utc,
    money_check,
    money_text,
    repeat_of,
)
from ledger_sync.services.claims import row_claim
from ledger_sync.services.order_states import (
    PAYMENT_STATES_FROM,
    order_transition,
    transition_allowed,
)
from ledger_sync.services.settlements import payment_settlement_enqueue

logger = logging.getLogger(__name__)

ACTOR_PAYMENTS = "system:payments"


# --- requests -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PaymentRequest:
    external_id: str
    invoice_external_id: str | None
    invoice_atlas_id: int | None
    amount: Decimal
    currency: str
    payment_date: date

    @property
    def invoice_reference(self) -> str:
        return self.invoice_external_id or str(self.invoice_atlas_id)

    def fingerprint(self) -> str:
        """The idempotency fingerprint: the parsed, normalised fields, so a semantically equal
        body (key order, white space, 400 vs "400.00", currency case, a midnight datetime)
        is the same request; how the invoice is named is part of it."""
        return callback_fingerprint(
            {
                "externalId": self.external_id,
                "invoiceExternalId": self.invoice_external_id,
                "invoiceId": self.invoice_atlas_id,
                "amount": money_text(self.amount),
                "currency": self.currency.upper(),
                "paymentDate": self.payment_date.isoformat(),
            }
        )


# --- invoices as we know them ---------------------------------------------------------------------


def invoice_paid_total(invoice: InvoiceRef) -> Decimal:
    """What is paid or promised against the invoice: our accepted confirmations (whether in
    ATLAS yet or not) plus the payments ATLAS holds that did not come through us."""
    ours = Q(pk__in=[])
    if invoice.atlas_id is not None:
        ours |= Q(invoice_atlas_id=invoice.atlas_id)
    if invoice.external_id:
        ours |= Q(invoice_external_id=invoice.external_id)
    confirmations = PaymentConfirmation.objects.filter(ours).exclude(state=CallbackState.REJECTED)
    total = confirmations.aggregate(total=Sum("amount"))["total"] or Decimal("0")
    if invoice.atlas_id is not None:
        theirs = (
            Payment.objects.filter(invoice_atlas_id=invoice.atlas_id)
            .exclude(sync_state=SyncState.MISSING)
            .exclude(external_id__in=PaymentConfirmation.objects.values("external_id"))
            .aggregate(total=Sum("amount"))["total"]
        )
        total += theirs or Decimal("0")
    return total


# --- accepting a payment --------------------------------------------------------------------------


def payment_confirmation_accept(
    *,
    request: PaymentRequest,
    raw_body: str,
    api_client: Any = None,
    today: date | None = None,
    enqueue: Callable[[int], None] | None = None,
    settlement_enqueue: Callable[[int], None] | None = None,
) -> tuple[PaymentConfirmation, bool]:
    """Store a confirmed payment and queue its write to ATLAS and its settlement transaction
    in the AR Ledger (services/settlements.py); (confirmation, created).

    The same request again returns the stored confirmation (created False). Raises
    IdempotencyConflict when the externalId was used with other content, CallbackRejected
    (naming the field) for an unknown invoice, a wrong currency, a non-positive amount or one
    with more than 2 decimals, a date in the future, or an overpayment beyond
    PAYMENT_OVERPAYMENT_TOLERANCE.
    """
    fingerprint = request.fingerprint()
    repeat = repeat_of(PaymentConfirmation, request.external_id, fingerprint, "payment")
    if repeat is not None:
        return repeat, False

    money_check(request.amount)
    # "Today" wherever the payer is: the date on the first side of the date line (UTC+14), so a
    # bank ahead of UTC is not refused for confirming today's payment.
    today = today or (timezone.now() + DATE_LINE_AHEAD).date()
    if request.payment_date > today:
        raise CallbackRejected(
            f"paymentDate {request.payment_date} is in the future (today is {today}); confirm "
            "a payment once it has been made.",
            field="paymentDate",
            code="future_date",
        )
    try:
        with transaction.atomic():
            invoice = _payable_invoice(request)
            currency = request.currency.upper()
            confirmation = PaymentConfirmation.objects.create(
                external_id=request.external_id,
                request_fingerprint=fingerprint,
                request_json=raw_body,
                api_client=api_client if getattr(api_client, "pk", None) else None,
                invoice_reference=request.invoice_reference,
                invoice_external_id=invoice.external_id,
                invoice_atlas_id=invoice.atlas_id,
                order_atlas_id=invoice.order_atlas_id,
                amount=request.amount,
                currency=currency,
                payment_date=request.payment_date,
                received_at=timezone.now(),
            )
            queue = enqueue or _enqueue("ledger_sync.tasks.payment_confirmation_deliver_task")
            # robust: the payment is stored; a queue failing now is logged and the sweep
            # delivers it, the caller is not told 500 for a payment we hold.
            transaction.on_commit(lambda: queue(confirmation.pk), robust=True)
            # The settlement in the AR Ledger is queued apart: neither waits for the other.
            settle = settlement_enqueue or payment_settlement_enqueue
            transaction.on_commit(lambda: settle(confirmation.pk), robust=True)
    except IntegrityError:
        # The same externalId was stored by a concurrent request: answer as for a repeat.
        repeat = repeat_of(PaymentConfirmation, request.external_id, fingerprint, "payment")
        if repeat is None:
            raise
        return repeat, False
    logger.info(
        "payment.accepted",
        extra={"confirmation": confirmation.pk, "invoice": invoice.atlas_id},
    )
    return confirmation, True


def _payable_invoice(request: PaymentRequest) -> InvoiceRef:
    """The invoice paid, locked, refused (naming the field) when unknown, in another currency
    or paid past its amount beyond PAYMENT_OVERPAYMENT_TOLERANCE."""
    invoice_field = "invoiceExternalId" if request.invoice_external_id else "invoiceId"
    invoice = invoice_resolve(
        external_id=request.invoice_external_id,
        atlas_id=request.invoice_atlas_id,
        lock=True,
    )
    if invoice is None:
        raise CallbackRejected(
            f"No invoice {request.invoice_reference} is known to ledger_sync; send the "
            "externalId (or ATLAS id) of an invoice issued for an ATLAS order.",
            field=invoice_field,
            code="unknown_invoice",
        )
    currency = request.currency.upper()
    if not invoice.currency:
        raise CallbackRejected(
            f"The currency of {invoice.label} is not known yet (its order is not "
            "mirrored); try again after the next ATLAS sync.",
            field=invoice_field,
            code="unknown_invoice",
        )
    if currency != invoice.currency:
        raise CallbackRejected(
            f"currency {currency} differs from {invoice.label}, which is in {invoice.currency}.",
            field="currency",
            code="currency_mismatch",
        )
    paid = invoice_paid_total(invoice)
    tolerance = Decimal(settings.PAYMENT_OVERPAYMENT_TOLERANCE)
    if paid + request.amount > invoice.amount + tolerance:
        raise CallbackRejected(
            f"amount {request.amount} {currency} would take {invoice.label} to "
            f"{paid + request.amount} paid, past its amount {invoice.amount} "
            f"(already paid {paid}, tolerance {tolerance}).",
            field="amount",
            code="overpayment",
        )
    return invoice


def _enqueue(func: str) -> Callable[[int], None]:
    # This module's own seam for queueing, so that a test can hold back its tasks.
    return task_queuer(func)


# --- writing payments to ATLAS --------------------------------------------------------------------


def payment_post_record(confirmation: PaymentConfirmation, *, invoice_atlas_id: int) -> dict:
    return {
        "invoiceId": invoice_atlas_id,
        "orderId": confirmation.order_atlas_id,
        "externalId": confirmation.external_id,
        "amount": confirmation.amount,
        "paymentDate": midnight_utc(confirmation.payment_date),
    }


def payment_confirmation_deliver(
    *, confirmation_id: int, client: Any = None, now: datetime | None = None
) -> PaymentConfirmation | None:
    """Write one confirmed payment to ATLAS (Payment/Post), then settle its invoice if paid in
    full. Safe to run twice and concurrently: a claim guards the write, and a retry first looks
    for the payment in ATLAS by its externalId."""
    now = now or timezone.now()
    states = [CallbackState.ACCEPTED, CallbackState.FAILED]
    if not row_claim(PaymentConfirmation, confirmation_id, states=states, now=now):
        return PaymentConfirmation.objects.filter(pk=confirmation_id).first()
    confirmation = PaymentConfirmation.objects.get(pk=confirmation_id)
    client = atlas_client_or_default(client)
    record: dict[str, Any] = {}
    try:
        invoice_atlas_id = _invoice_atlas_id(confirmation, client=client)
        record = payment_post_record(confirmation, invoice_atlas_id=invoice_atlas_id)
        saved = None
        if confirmation.attempts > 1:
            # An earlier attempt may have landed without us hearing the answer.
            saved = next(
                (
                    p
                    for p in client.get_payments_by_invoice_ids([invoice_atlas_id]).records
                    if p.external_id == confirmation.external_id
                ),
                None,
            )
        if saved is None:
            result = client.post_payments([record])
            saved = next(
                (p for p in result.records if p.external_id == confirmation.external_id), None
            )
            if saved is None:
                raise AtlasError(
                    "ATLAS answered without the payment it saved; it is looked up before "
                    "the next attempt",
                    endpoint="/api/Payment/Post",
                    retryable=True,
                )
    except (AtlasError, InvoiceNotInAtlas) as error:
        callback_failed(PaymentConfirmation, confirmation, error=error, record=record)
        confirmation.refresh_from_db()
        return confirmation
    PaymentConfirmation.objects.filter(pk=confirmation.pk).update(
        state=CallbackState.WRITTEN_TO_ATLAS,
        invoice_atlas_id=invoice_atlas_id,
        order_atlas_id=saved.order_id or confirmation.order_atlas_id,
        atlas_payment_id=saved.id,
        atlas_request_json=wire.dumps(record, indent=2),
        atlas_response_json=wire.dumps(saved.raw, indent=2),
        last_error="",
        next_attempt_at=None,
        claimed_until=None,
        confirmed_at=timezone.now(),
    )
    confirmation.refresh_from_db()
    logger.info(
        "payment.written",
        extra={"confirmation": confirmation.pk, "atlas_payment": saved.id},
    )
    payment_invoice_check(confirmation=confirmation, client=client, now=now)
    return confirmation


def payment_invoice_check(
    *, confirmation: PaymentConfirmation, client: Any = None, now: datetime | None = None
) -> None:
    """After a payment is in ATLAS: settle its invoice if now paid in full, move the order.
    ATLAS failing here leaves `invoice_checked_at` empty, and the sweep does it again."""
    now = now or timezone.now()
    try:
        invoice_settle_if_paid(
            invoice_atlas_id=confirmation.invoice_atlas_id,
            order_atlas_id=confirmation.order_atlas_id,
            client=atlas_client_or_default(client),
            now=now,
        )
    except AtlasError as error:
        logger.warning(
            "payment.invoice_check_failed",
            extra={"confirmation": confirmation.pk, "error": type(error).__name__},
        )
        return
    PaymentConfirmation.objects.filter(pk=confirmation.pk).update(invoice_checked_at=now)


def _invoice_atlas_id(confirmation: PaymentConfirmation, *, client: Any) -> int:
    if confirmation.invoice_atlas_id:
        return confirmation.invoice_atlas_id
    # Ours, created in ATLAS since the payment was accepted?
    ref = invoice_resolve(external_id=confirmation.invoice_external_id)
    if ref is not None and ref.atlas_id:
        return ref.atlas_id
    found = client.get_invoices_by_external_ids([confirmation.invoice_external_id]).records
    if found:
        return found[0].id
    raise InvoiceNotInAtlas(
        f"Invoice {confirmation.invoice_external_id} is not in ATLAS yet; the payment is "
        "written once the invoice has been created.",
        details={"invoice_external_id": confirmation.invoice_external_id},
    )


def payment_confirmation_retry(*, confirmation: PaymentConfirmation) -> PaymentConfirmation:
    """A person asks for a failed or rejected payment to be written again (admin): queued."""
    return callback_retry(
        confirmation, enqueue=_enqueue("ledger_sync.tasks.payment_confirmation_deliver_task")
    )


def payment_invoice_checks_due(*, now: datetime, limit: int) -> list[int]:
    return list(
        PaymentConfirmation.objects.filter(
            state=CallbackState.WRITTEN_TO_ATLAS,
            invoice_checked_at__isnull=True,
            confirmed_at__lt=now - ACCEPTED_GRACE,
        )
        .order_by("confirmed_at")
        .values_list("pk", flat=True)[:limit]
    )


def payment_confirmations_due(*, now: datetime, limit: int) -> list[int]:
    return callbacks_due(PaymentConfirmation, now=now, limit=limit)


# --- settling invoices ----------------------------------------------------------------------------


def invoice_settle_if_paid(
    *, invoice_atlas_id: int, order_atlas_id: int | None, client: Any, now: datetime
) -> InvoiceSettlement | None:
    """Compare ATLAS's payments of the invoice with its amount: partially paid moves the order
    to PARTIALLY_PAID; fully paid records the settlement (once) and sends isPaid=true."""
    client = atlas_client_or_default(client)
    invoices = client.get_invoices([invoice_atlas_id]).records
    if not invoices:
        logger.warning("settlement.invoice_missing", extra={"invoice": invoice_atlas_id})
        return None
    invoice = invoices[0]
    payments = client.get_payments_by_invoice_ids([invoice_atlas_id]).records
    paid = sum((p.amount for p in payments), Decimal("0"))
    order_atlas_id = invoice.order_id or order_atlas_id
    if paid < invoice.amount:
        if paid > 0:
            order_payment_state_update(atlas_order_id=order_atlas_id, paid_in_full=False)
        return None
    settlement, _ = _settlement_get_or_create(
        invoice_atlas_id=invoice_atlas_id,
        order_atlas_id=order_atlas_id,
        paid=paid,
        amount=invoice.amount,
    )
    return invoice_settlement_send(
        settlement_id=settlement.pk, client=client, now=now, invoice=invoice
    )


def _settlement_get_or_create(
    *, invoice_atlas_id: int, order_atlas_id: int | None, paid: Decimal, amount: Decimal
) -> tuple[InvoiceSettlement, bool]:
    try:
        with transaction.atomic():
            return InvoiceSettlement.objects.get_or_create(
                invoice_atlas_id=invoice_atlas_id,
                defaults={
                    "order_atlas_id": order_atlas_id,
                    "paid_total": paid,
                    "invoice_amount": amount,
                },
            )
    except IntegrityError:
        # Two payments of one invoice finished at the same moment: one row, one send.
        return InvoiceSettlement.objects.get(invoice_atlas_id=invoice_atlas_id), False


def invoice_paid_record(invoice: Any) -> dict[str, Any]:
    """Invoice/Post updating the invoice to isPaid=true, with its fields as ATLAS holds them
    (an upsert by id must not blank what it does not mention)."""
    return {
        "id": invoice.id,
        "orderId": invoice.order_id,
        "externalId": invoice.external_id,
        "invoiceNumber": invoice.invoice_number,
        "amount": invoice.amount,
        "invoiceDate": invoice.invoice_date.replace(tzinfo=None) if invoice.invoice_date else None,
        "dueDate": invoice.due_date.replace(tzinfo=None) if invoice.due_date else None,
        "isPaid": True,
    }


def invoice_settlement_send(
    *, settlement_id: int, client: Any = None, now: datetime | None = None, invoice: Any = None
) -> InvoiceSettlement | None:
    """Send isPaid=true for a settled invoice, exactly once: only the claimed, pending row
    sends; an invoice ATLAS already shows as paid is recorded as done without a call."""
    now = now or timezone.now()
    states = [InvoiceSettlement.State.PENDING, InvoiceSettlement.State.FAILED]
    if not row_claim(InvoiceSettlement, settlement_id, states=states, now=now):
        return InvoiceSettlement.objects.filter(pk=settlement_id).first()
    settlement = InvoiceSettlement.objects.get(pk=settlement_id)
    client = atlas_client_or_default(client)
    record: dict[str, Any] = {}
    try:
        if invoice is None or settlement.attempts > 1:
            # A retry (or the sweep): what does ATLAS hold now? A lost answer may have landed.
            found = client.get_invoices([settlement.invoice_atlas_id]).records
            if not found:
                raise AtlasError(
                    f"ATLAS did not return invoice {settlement.invoice_atlas_id}",
                    endpoint="/api/Invoice/GetByIds",
                    retryable=True,
                )
            invoice = found[0]
        if invoice.is_paid:
            answer: Any = invoice.raw
            note = "already paid in ATLAS"
        else:
            record = invoice_paid_record(invoice)
            saved = client.post_invoices([record]).by_id.get(invoice.id)
            if saved is None or not saved.is_paid:
                raise AtlasError(
                    "ATLAS answered without confirming isPaid=true",
                    endpoint="/api/Invoice/Post",
                    retryable=True,
                )
            answer = saved.raw
            note = "isPaid=true written"
    except AtlasError as error:
        retryable = error.retryable
        InvoiceSettlement.objects.filter(pk=settlement.pk).update(
            state=InvoiceSettlement.State.FAILED,
            last_error=str(error)[:4000],
            next_attempt_at=now + backoff_delay(settlement.attempts) if retryable else None,
            request_json=wire.dumps(record, indent=2) if record else "",
            claimed_until=None,
        )
        settlement.refresh_from_db()
        return settlement
    InvoiceSettlement.objects.filter(pk=settlement.pk).update(
        state=InvoiceSettlement.State.DONE,
        request_json=wire.dumps(record, indent=2) if record else "",
        response_json=wire.dumps(answer, indent=2),
        last_error="",
        next_attempt_at=None,
        claimed_until=None,
        done_at=timezone.now(),
    )
    logger.info("settlement.done", extra={"invoice": settlement.invoice_atlas_id, "note": note})
    order_payment_state_update(atlas_order_id=settlement.order_atlas_id, paid_in_full=True)
    settlement.refresh_from_db()
    return settlement


def invoice_settlement_retry(*, settlement: InvoiceSettlement) -> InvoiceSettlement:
    """A person asks for a failed settlement to be sent again (admin): queued. The send reads
    the invoice from ATLAS first, so one that is already paid is never sent again."""
    InvoiceSettlement.objects.filter(pk=settlement.pk, state=InvoiceSettlement.State.FAILED).update(
        next_attempt_at=None, claimed_until=None
    )
    transaction.on_commit(
        lambda: _enqueue("ledger_sync.tasks.invoice_settlement_send_task")(settlement.pk),
        robust=True,
    )
    settlement.refresh_from_db()
    return settlement


def settlements_due(*, now: datetime, limit: int) -> list[int]:
    return list(
        InvoiceSettlement.objects.filter(
            # A failure waits for its backoff; one that is not retryable (no next attempt)
            # waits for a person (the admin's retry).
            Q(state=InvoiceSettlement.State.PENDING)
            | Q(state=InvoiceSettlement.State.FAILED, next_attempt_at__lte=now)
        )
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .filter(attempts__lt=settings.INBOUND_MAX_ATTEMPTS)
        .order_by("pk")
        .values_list("pk", flat=True)[:limit]
    )


def order_payment_state_update(*, atlas_order_id: int | None, paid_in_full: bool) -> bool:
    """Move the order to PARTIALLY_PAID or PAID when the state machine allows it (an order that
    is not ours, or already further, is left as it is); True when it moved."""
    if atlas_order_id is None:
        return False
    order_sync = OrderSync.objects.filter(order__atlas_id=atlas_order_id).first()
    if order_sync is None:
        return False
    target = OrderState.PAID if paid_in_full else OrderState.PARTIALLY_PAID
    if order_sync.state == target or order_sync.state == OrderState.PAID:
        return False
    if order_sync.state not in PAYMENT_STATES_FROM or not transition_allowed(
        from_state=order_sync.state, to_state=target
    ):
        # POSTED or ERP_CODE_WRITTEN: the order's write-backs (erpCode, invoice) run only from
        # those states, so moving it on would strand them; it moves once the write-back has
        # made it INVOICED (order_payment_states_catch_up, in the inbound sweep). Any other
        # state (a reversed order being rebuilt, say) is left alone, but said.
        logger.info(
            "payment.order_state_deferred",
            extra={"order": atlas_order_id, "state": order_sync.state, "target": target},
        )
        return False
    try:
        order_transition(
            order_sync=order_sync,
            to_state=target,
            actor=ACTOR_PAYMENTS,
            note="invoice paid in full" if paid_in_full else "invoice partially paid",
        )
    except InvalidTransition as exc:  # moved by another worker meanwhile
        logger.info("payment.order_state_skipped", extra={"order": atlas_order_id, "why": str(exc)})
        return False
    return True


def order_payment_states_catch_up(*, limit: int) -> int:
    """Move orders whose payments were confirmed while their write-back was still running
    (order_payment_state_update leaves those alone) once they are INVOICED: PAID when their
    invoice's settlement is done, PARTIALLY_PAID when one of their payments is in ATLAS.
    Local only (no ATLAS call); how many orders moved."""
    settled = InvoiceSettlement.objects.filter(
        state=InvoiceSettlement.State.DONE, order_atlas_id__isnull=False
    ).values("order_atlas_id")
    paid_in_part = PaymentConfirmation.objects.filter(
        state=CallbackState.WRITTEN_TO_ATLAS,
        invoice_checked_at__isnull=False,
        order_atlas_id__isnull=False,
    ).values("order_atlas_id")
    moves = [
        (
            OrderSync.objects.filter(
                state__in=PAYMENT_STATES_FROM, order__atlas_id__in=settled
            ).values_list("order__atlas_id", flat=True)[:limit],
            True,
        ),
        (
            OrderSync.objects.filter(state=OrderState.INVOICED, order__atlas_id__in=paid_in_part)
            .exclude(order__atlas_id__in=settled)
            .values_list("order__atlas_id", flat=True)[:limit],
            False,
        ),
    ]
    moved = 0
    for atlas_order_ids, paid_in_full in moves:
        for atlas_order_id in list(atlas_order_ids):
            moved += order_payment_state_update(
                atlas_order_id=atlas_order_id, paid_in_full=paid_in_full
            )
    return moved


# --- invoice reports ------------------------------------------------------------------------------
