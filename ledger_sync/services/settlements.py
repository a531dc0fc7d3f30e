"""Payments in the AR Ledger: one settlement transaction per accepted payment confirmation.

A payment the ERP or the bank confirmed (POST /api/payments/) clears what the order's journal
booked: a receivable (Active invoice) is settled Dr bank / Cr receivables, a payable (Passive or
self-billing) Dr payables / Cr bank, for exactly the confirmation's amount, with the order's
billing account and the invoice number on each entry (`description`, and `entry_values`
"invoice_number", which the spec's accounting-entries list filters on). A partial payment is its
own transaction; a repeated identical confirmation is the same row (idempotent on externalId),
so it posts nothing new.

When: queued once the confirmation is stored (transaction.on_commit), beside and independent of
its write to ATLAS — neither waits for the other. It waits while the order's own journal is not
posted (the receivable must exist first); the inbound sweep picks it up once it is.

Exactly once, as for order journals (services/posting.py), because the ledger never rejects a
duplicate source_transaction_reference:
1. The reference is `ATLAS-PAYMENT-{confirmation pk}`: our own id, fixed when the payment is
   stored, never reused, and apart from order references (`ATLAS-ORDER-…`). (The caller's
   externalId is not used: it may be 128 characters of anything, the ledger's field is ours.)
2. A worker claims the confirmation by a compare-and-set lease on `ledger_next_attempt_at`
   (LEDGER_CLAIM_TIMEOUT_SECONDS), so two workers never send it at the same time.
3. The settlement Journal (lines, reference) is stored, and the request is committed on it,
   BEFORE the call. A journal with a stored request may be in the ledger already (a crash, a
   timeout, a lost answer): it is looked up by its reference first, and what the ledger holds
   is adopted instead of sending it again.
4. Transient failures (401, 429, 5xx, timeouts, no answer) are FAILED with backoff
   (LEDGER_RETRY_BASE_SECONDS doubling up to LEDGER_RETRY_MAX_SECONDS, INBOUND_MAX_ATTEMPTS
   tries); a refusal (any other 4xx, or a per-transaction error) and anything a person must fix
   (closed period, no bank account) is BLOCKED with the reason. Both show on the payment's
   admin page and in the error queue; "Retry posting the settlement" sends it round again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from integration import wire
from integration.gotransverse.client import GotransverseClient
from integration.gotransverse.errors import GotransverseError
from integration.gotransverse.records import BulkTransactionResult
from ledger_sync.models import (
    AccountingPeriod,
    Journal,
    JournalLine,
    LedgerSettlementState,
    PaymentConfirmation,
)
from ledger_sync.services.background import backoff_delay, task_enqueue
from ledger_sync.services.ledger_records import (
    bulk_result_from_transaction,
    journal_transaction_input,
    landed_period,
    result_raw,
)
from ledger_sync.services.remote import gotransverse_client_from_settings
from ledger_sync.services.settlement_plan import (
    INVOICE_NUMBER_KEY,
    ORDER_KEY,
    PAYMENT_KEY,
    SettlementPlan,
    payment_settlement_plan,
    settlement_reference,
)

logger = logging.getLogger(__name__)

SETTLEMENT_TASK = "ledger_sync.tasks.payment_settlement_post_task"
# Failures worth trying again, the ledger may answer next time: 401 (a key being rotated),
# 408 and 429 (too busy), any 5xx, and no HTTP answer at all.
TRANSIENT_STATUSES = frozenset({401, 408, 429})
# Where a payment may be posted from, and where the sweep looks.
_SENDABLE = (LedgerSettlementState.PENDING, LedgerSettlementState.FAILED)

S = LedgerSettlementState


# --- what to book ------------------------------------------------------------------------------


# --- storing the journal before anything is sent ----------------------------------------------


def _journal_store(
    confirmation: PaymentConfirmation, plan: SettlementPlan, existing: Journal | None
) -> Journal:
    """The settlement journal with its lines, stored (or, while nothing was sent, refreshed
    from the current plan); the reference never changes."""
    assert plan.order_sync is not None and plan.order_journal is not None
    description = (
        f"Payment {confirmation.external_id} of invoice {plan.invoice_number} "
        f"({plan.order_journal.source_transaction_reference})"
    )[:255]
    values = {
        INVOICE_NUMBER_KEY: plan.invoice_number,
        PAYMENT_KEY: confirmation.external_id,
        ORDER_KEY: plan.order_sync.order.atlas_id,
    }
    fields = {
        "order_sync": plan.order_sync,
        "revision": plan.order_journal.revision,
        "kind": Journal.Kind.SETTLEMENT,
        "status": Journal.Status.BUILT,
        "workflow": Journal.Workflow.AUTO,
        "currency": confirmation.currency,
        "total_debit": confirmation.amount,
        "total_credit": confirmation.amount,
        "occurred_on": confirmation.payment_date,
        "event_date": confirmation.payment_date,
        "landed_period": plan.landed_period,
        "rejected_reason": "",
    }
    with transaction.atomic():
        if existing is None:
            journal = Journal.objects.create(
                source_transaction_reference=settlement_reference(confirmation.pk),
                payment_confirmation=confirmation,
                **fields,
            )
        else:
            journal = existing
            for name, value in fields.items():
                setattr(journal, name, value)
            journal.save(update_fields=[*fields])
            journal.lines.all().delete()
        JournalLine.objects.bulk_create(
            JournalLine(
                journal=journal,
                position=position,
                side=side,
                gl_account=account,
                amount=confirmation.amount,
                currency=confirmation.currency,
                billing_account_num=plan.billing_account_num,
                description=description,
                entry_values=values,
            )
            for position, (side, account) in enumerate(plan.lines, start=1)
        )
    # Read back, so that no line cached on `existing` (prefetched) is ever sent.
    return Journal.objects.prefetch_related("lines").get(pk=journal.pk)


def _journal_of(confirmation: PaymentConfirmation) -> Journal | None:
    return (
        Journal.objects.filter(payment_confirmation=confirmation).prefetch_related("lines").first()
    )


# --- claims ------------------------------------------------------------------------------------


def _lease_seconds() -> timedelta:
    return timedelta(seconds=settings.LEDGER_CLAIM_TIMEOUT_SECONDS)


def _due(now: datetime) -> Q:
    """Sendable now: pending (never tried, or a lease that ran out) or failed past its backoff.
    A failed one with no next attempt has no tries left and waits for a person."""
    return Q(ledger_state=S.PENDING) & (
        Q(ledger_next_attempt_at__isnull=True) | Q(ledger_next_attempt_at__lte=now)
    ) | Q(ledger_state=S.FAILED, ledger_next_attempt_at__lte=now)


def _claim(confirmation_id: int, *, now: datetime) -> datetime | None:
    """A compare-and-set lease: the UPDATE repeats the due test, so of two workers only one
    changes the row. Returns the lease's end (our fencing token), None when not ours."""
    until = now + _lease_seconds()
    won = (
        PaymentConfirmation.objects.filter(pk=confirmation_id)
        .filter(_due(now))
        .update(ledger_next_attempt_at=until)
    )
    return until if won else None


def _still_ours(confirmation_id: int, *, lease: datetime, now: datetime) -> datetime | None:
    """Renew our lease right before sending; None when another worker took the row over (our
    lease ran out meanwhile): then it is theirs to look up and send, never ours too."""
    renewed = max(now, timezone.now()) + _lease_seconds()
    won = PaymentConfirmation.objects.filter(
        pk=confirmation_id, ledger_state__in=_SENDABLE, ledger_next_attempt_at=lease
    ).update(ledger_next_attempt_at=renewed)
    return renewed if won else None


# --- posting -----------------------------------------------------------------------------------


def payment_settlement_post(
    *,
    confirmation_id: int,
    client: GotransverseClient | None = None,
    ledger_id: int | None = None,
    now: datetime | None = None,
) -> PaymentConfirmation | None:
    """Post the settlement transaction of one accepted payment to the AR Ledger, exactly once.

    Safe to run any number of times and in any number of workers (see the module docstring).
    Returns the confirmation as it is afterwards (None when it does not exist).
    """
    now = now or timezone.now()
    confirmation = PaymentConfirmation.objects.filter(pk=confirmation_id).first()
    if confirmation is None or confirmation.ledger_state not in _SENDABLE:
        return confirmation
    journal = _journal_of(confirmation)
    if journal is None or not journal.request_json:
        # Nothing sent yet: whether it can be is a local question, answered without a claim
        # (a payment waiting for its order's journal is looked at often).
        early = payment_settlement_plan(confirmation=confirmation)
        if early.not_ours or early.waiting:
            _record_waiting(confirmation, early)
            return _refreshed(confirmation)
    lease = _claim(confirmation.pk, now=now)
    if lease is None:
        return _refreshed(confirmation)
    # Ours now: read again what another worker may have stored before we claimed.
    confirmation.refresh_from_db()
    journal = _journal_of(confirmation)
    attempts = confirmation.ledger_attempts + 1
    PaymentConfirmation.objects.filter(pk=confirmation.pk).update(ledger_attempts=attempts)
    confirmation.ledger_attempts = attempts
    client = client or gotransverse_client_from_settings()
    ledger_id = int(ledger_id if ledger_id is not None else settings.GOTRANSVERSE_LEDGER_ID)
    rebuild = journal is None or not journal.request_json
    if not rebuild:
        assert journal is not None
        reference = journal.source_transaction_reference
        try:
            found = client.find_transactions_by_reference(ledger_id, reference)
        except GotransverseError as error:
            _record_failed(confirmation, message=f"Looking {reference} up failed: {error}", now=now)
            return _refreshed(confirmation)
        if found:
            if len(found) > 1:
                logger.error(
                    "settlement.duplicate_in_ledger",
                    extra={"reference": reference, "transaction_ids": [t.id for t in found]},
                )
            _record_posted(
                confirmation, journal, bulk_result_from_transaction(found[0]), found=True
            )
            return _refreshed(confirmation)
        # Not in the ledger. Refused last time: nothing of it is booked, so it is built again
        # from what holds now (a fix a person made since counts). Otherwise (a failure, a
        # crash) the stored request is sent as it was.
        rebuild = bool(journal.rejected_reason)
    if rebuild:
        plan = payment_settlement_plan(confirmation=confirmation)
        if plan.not_ours or plan.waiting:
            _record_waiting(confirmation, plan)
            PaymentConfirmation.objects.filter(pk=confirmation.pk).update(
                ledger_next_attempt_at=None, ledger_attempts=attempts - 1
            )
            return _refreshed(confirmation)
        if plan.problem:
            _record_blocked(confirmation, message=plan.problem)
            return _refreshed(confirmation)
        journal = _journal_store(confirmation, plan, journal)
    assert journal is not None
    return _send_settlement(
        confirmation, journal, client=client, ledger_id=ledger_id, lease=lease, now=now
    )


def _send_settlement(
    confirmation: PaymentConfirmation,
    journal: Journal,
    *,
    client: GotransverseClient,
    ledger_id: int,
    lease: datetime,
    now: datetime,
) -> PaymentConfirmation | None:
    """Store the request, then send it while the claim is still ours, and record the answer."""
    reference = journal.source_transaction_reference
    payload = journal_transaction_input(journal)
    with transaction.atomic():
        journal.request_json = wire.dumps([payload.to_json()], indent=2)
        journal.save(update_fields=["request_json"])
    if _still_ours(confirmation.pk, lease=lease, now=now) is None:
        logger.warning("settlement.claim_lost", extra={"reference": reference})
        return _refreshed(confirmation)
    try:
        outcome = client.create_transactions_bulk(ledger_id, [payload], auto_post=True)
    except GotransverseError as error:
        if _transient(error):
            _record_failed(confirmation, message=str(error), now=now)
        else:
            _record_refused(confirmation, journal, message=str(error), raw=None)
        return _refreshed(confirmation)
    result = outcome.results[0] if outcome.results else None
    if result is None or not result.answered or _ambiguous(result):
        _record_failed(
            confirmation,
            message=f"The AR Ledger gave no result for {reference}; it is looked up by its "
            "reference before anything is sent again.",
            now=now,
        )
    elif result.succeeded:
        _record_posted(confirmation, journal, result, found=False)
    else:
        code = f"code {result.code}: " if result.code is not None else ""
        _record_refused(
            confirmation,
            journal,
            message=f"The AR Ledger refused {reference}: {code}{result.error_message}",
            raw=result.raw,
        )
    return _refreshed(confirmation)


def _transient(error: GotransverseError) -> bool:
    status = error.status
    return (
        error.outcome_unknown
        or error.retryable
        or status is None
        or status >= 500
        or status in TRANSIENT_STATUSES
    )


def _ambiguous(result: BulkTransactionResult) -> bool:
    """Neither booked (no id) nor refused (no error): nobody can say what the ledger did."""
    return result.id is None and not result.error_message and (result.code or 0) < 400


def _refreshed(confirmation: PaymentConfirmation) -> PaymentConfirmation:
    confirmation.refresh_from_db()
    return confirmation


def _landed_period(result: BulkTransactionResult, fallback: str) -> str:
    """The periods the ledger booked the settlement in, by name; the planned period when the
    answer names none."""
    if not result.accounting_period_ids:
        return fallback
    names = dict(
        AccountingPeriod.objects.filter(
            gotransverse_id__in=result.accounting_period_ids
        ).values_list("gotransverse_id", "name")
    )
    return landed_period(result, names)


def _record_posted(
    confirmation: PaymentConfirmation, journal: Journal, result: BulkTransactionResult, *, found
) -> None:
    with transaction.atomic():
        journal.status = Journal.Status.POSTED
        journal.ledger_transaction_id = str(result.id)
        journal.landed_period = _landed_period(result, journal.landed_period)
        journal.response_json = wire.dumps(result_raw(result), indent=2)
        journal.posted_at = timezone.now()
        journal.save(
            update_fields=[
                "status",
                "ledger_transaction_id",
                "landed_period",
                "response_json",
                "posted_at",
            ]
        )
        PaymentConfirmation.objects.filter(pk=confirmation.pk).update(
            ledger_state=S.POSTED, ledger_next_attempt_at=None, ledger_error=""
        )
    logger.info(
        "settlement.posted",
        extra={
            "confirmation": confirmation.pk,
            "reference": journal.source_transaction_reference,
            "ledger_transaction": result.id,
            "found_in_ledger": found,
        },
    )


def _record_waiting(confirmation: PaymentConfirmation, plan: SettlementPlan) -> None:
    state = S.NOT_OURS if plan.not_ours else S.PENDING
    message = plan.not_ours or plan.waiting
    # Only the confirmation's own row, and only when something changed: the sweep may look
    # at a waiting payment many times.
    PaymentConfirmation.objects.filter(pk=confirmation.pk, ledger_state__in=_SENDABLE).exclude(
        ledger_state=state, ledger_error=message
    ).update(ledger_state=state, ledger_error=message)


def _record_blocked(confirmation: PaymentConfirmation, *, message: str) -> None:
    PaymentConfirmation.objects.filter(pk=confirmation.pk).update(
        ledger_state=S.BLOCKED, ledger_error=message[:4000], ledger_next_attempt_at=None
    )
    logger.warning("settlement.blocked", extra={"confirmation": confirmation.pk})


def _record_refused(
    confirmation: PaymentConfirmation, journal: Journal, *, message: str, raw: Any
) -> None:
    with transaction.atomic():
        # Marks the stored request as refused (not booked): a retry builds it again.
        journal.rejected_reason = message
        journal.response_json = wire.dumps(raw, indent=2) if raw is not None else ""
        journal.save(update_fields=["rejected_reason", "response_json"])
        _record_blocked(
            confirmation,
            message=f"{message}. Fix the cause, then retry the settlement (it is looked up in "
            "the AR Ledger before it is sent again).",
        )


def _record_failed(confirmation: PaymentConfirmation, *, message: str, now: datetime) -> None:
    attempts = confirmation.ledger_attempts
    give_up = attempts >= settings.INBOUND_MAX_ATTEMPTS
    PaymentConfirmation.objects.filter(pk=confirmation.pk).update(
        ledger_state=S.FAILED,
        ledger_error=message[:4000],
        ledger_next_attempt_at=None if give_up else now + backoff_delay(attempts),
    )
    logger.warning(
        "settlement.failed",
        extra={"confirmation": confirmation.pk, "attempts": attempts, "give_up": give_up},
    )


# --- queueing, the sweep, a person's retry ------------------------------------------------------


def payment_settlement_enqueue(confirmation_id: int) -> None:
    task_enqueue(SETTLEMENT_TASK, confirmation_id, task_name=f"settlement-{confirmation_id}")


def payment_settlements_due(*, now: datetime, limit: int) -> list[int]:
    """Payments whose settlement can be sent now: due, and their order's journal is posted
    (those still waiting for it are not looked at, however many there are)."""
    posted_orders = Journal.objects.filter(
        kind=Journal.Kind.POSTING, status=Journal.Status.POSTED
    ).values("order_sync__order__atlas_id")
    return list(
        PaymentConfirmation.objects.filter(_due(now))
        .filter(order_atlas_id__in=posted_orders)
        .order_by("pk")
        .values_list("pk", flat=True)[:limit]
    )


def payment_settlements_post_due(
    *,
    now: datetime | None = None,
    client: GotransverseClient | None = None,
    limit: int = 500,
    on_error: Callable[[int, Exception], None] | None = None,
) -> int:
    """Post every due settlement (the inbound sweep calls this); how many were handled."""
    now = now or timezone.now()
    due = payment_settlements_due(now=now, limit=limit)
    if not due:
        return 0
    client = client or gotransverse_client_from_settings()
    handled = 0
    for pk in due:
        try:
            payment_settlement_post(confirmation_id=pk, client=client, now=now)
        except Exception as error:
            # One payment failing unexpectedly must not stop the others; its lease keeps it
            # out of the next sweeps until it runs out.
            logger.exception("settlement.sweep_item_failed", extra={"confirmation": pk})
            if on_error is not None:
                on_error(pk, error)
            continue
        handled += 1
    return handled


def payment_settlement_retry(*, confirmation: PaymentConfirmation) -> PaymentConfirmation:
    """A person asks for a blocked or failed settlement to be sent again (admin): back to
    pending and queued; a stored request is looked up in the ledger before anything is sent."""
    PaymentConfirmation.objects.filter(
        pk=confirmation.pk, ledger_state__in=[S.BLOCKED, S.FAILED]
    ).update(ledger_state=S.PENDING, ledger_next_attempt_at=None)
    transaction.on_commit(lambda: payment_settlement_enqueue(confirmation.pk), robust=True)
    confirmation.refresh_from_db()
    return confirmation


__all__ = [
    "payment_settlement_enqueue",
    "payment_settlement_post",
    "payment_settlement_retry",
    "payment_settlements_due",
    "payment_settlements_post_due",
]
