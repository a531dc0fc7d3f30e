"""Correcting what review or the ledger got wrong: reject a draft (deleted in the ledger, the
order blocked with the reason until it is rebuilt), reverse a posted journal (a reversing
journal, then the order goes round again as a new revision; the posted one is never edited),
and retry a FAILED order at once."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.utils import timezone

from integration import wire
from integration.gotransverse.client import GotransverseClient
from integration.gotransverse.errors import GotransverseError
from integration.gotransverse.records import (
    ID_TYPE_SOURCE_TRANSACTION_REFERENCE,
    BulkTransactionResult,
)
from ledger_sync.models import (
    BlockedReason,
    Journal,
    JournalLine,
    OrderState,
    OrderSync,
)
from ledger_sync.services.admin_links import journal_admin_url
from ledger_sync.services.claims import orders_claim, orders_release, worker_id_new
from ledger_sync.services.ledger_records import (
    bulk_result_from_transaction,
    journal_transaction_input,
    landed_period,
    period_names,
    result_message,
    result_raw,
)
from ledger_sync.services.order_states import (
    POSTED_STATES,
    actor_for,
    order_note_record,
    order_transition,
)
from ledger_sync.services.posting import (
    PostingError,
    actor_name,
    require_approver,
)
from ledger_sync.services.remote import gotransverse_client_from_settings, gotransverse_ledger_id

logger = logging.getLogger(__name__)


def journal_reject(
    *,
    journal: Journal,
    user: Any,
    reason: str,
    client: GotransverseClient | None = None,
    ledger_id: int | None = None,
) -> Journal:
    """An accountant rejects a draft: it is deleted in the ledger and the order is blocked with
    the reason, until someone fixes the cause and rebuilds it (as a new revision).

    The order is awaiting review, or blocked because the ledger refused to post the approved
    draft (REMOTE_REJECTION): the draft is still there, and rejecting it is the way out.
    """
    require_approver(user)
    reason = (reason or "").strip()
    if not reason:
        raise PostingError("Say why the journal is rejected: the reason is shown on the order.")
    client = client or gotransverse_client_from_settings()
    ledger_id = gotransverse_ledger_id(ledger_id)
    worker_id = worker_id_new()
    claimed = orders_claim(
        states=(OrderState.AWAITING_REVIEW, OrderState.BLOCKED),
        limit=1,
        worker_id=worker_id,
        ids=[journal.order_sync_id],
    )
    if not claimed:
        raise PostingError(
            f"Journal {journal.source_transaction_reference} cannot be rejected: its order is "
            "not awaiting review, or another worker holds it. Reload the page."
        )
    try:
        journal.refresh_from_db()
        if journal.status != Journal.Status.DRAFT or journal.revision != claimed[0].revision:
            raise PostingError(
                f"Journal {journal.source_transaction_reference} is {journal.status}, "
                "not the order's current draft: only drafts can be rejected."
            )
        reference = journal.source_transaction_reference
        try:
            client.delete_drafts_bulk(
                ledger_id, [reference], id_type=ID_TYPE_SOURCE_TRANSACTION_REFERENCE
            )
        except GotransverseError as error:
            # Maybe deleted already (a retried rejection): only what the ledger holds counts.
            if client.find_drafts_by_reference(ledger_id, reference):
                raise PostingError(
                    f"The ledger did not delete draft {reference}: {error}. Try again later."
                ) from error
        else:
            # A delete answered 2xx is not proof: a draft left behind could still be posted
            # in the ledger later, beside the new revision a rebuild makes.
            if client.find_drafts_by_reference(ledger_id, reference):
                raise PostingError(
                    f"The ledger answered the deletion of draft {reference} but still holds "
                    "it. Try again later."
                )
        if client.find_transactions_by_reference(ledger_id, reference):
            raise PostingError(
                f"Draft {reference} was posted in the ledger meanwhile; reverse it instead."
            )
        _record_rejection(claimed[0], journal, user=user, reason=reason)
    finally:
        orders_release(order_sync_ids=[journal.order_sync_id], worker_id=worker_id)
    journal.refresh_from_db()
    return journal


def journal_reverse(
    *,
    journal: Journal,
    user: Any,
    reason: str,
    client: GotransverseClient | None = None,
    ledger_id: int | None = None,
) -> Journal:
    """Correct a posted journal: post a reversing journal (reference = original + "-REV",
    sides swapped), mark the original REVERSED, and send the order round again as a new
    revision. The posted journal itself is never edited. Returns the reversal."""
    require_approver(user)
    reason = (reason or "").strip()
    if not reason:
        raise PostingError("Say why the journal is reversed: the reason is kept in its history.")
    if journal.kind != Journal.Kind.POSTING or journal.status != Journal.Status.POSTED:
        raise PostingError(
            f"Journal {journal.source_transaction_reference} is {journal.status}: only a "
            "posted journal can be reversed."
        )
    client = client or gotransverse_client_from_settings()
    ledger_id = gotransverse_ledger_id(ledger_id)
    worker_id = worker_id_new()
    # Held while reversing, so that no write-back or second reversal moves the order meanwhile.
    claimed = orders_claim(
        states=POSTED_STATES, limit=1, worker_id=worker_id, ids=[journal.order_sync_id]
    )
    if not claimed:
        raise PostingError(
            f"Order of {journal.source_transaction_reference} is busy or not posted; try again."
        )
    try:
        return _reverse(journal, user=user, reason=reason, client=client, ledger_id=ledger_id)
    finally:
        orders_release(order_sync_ids=[journal.order_sync_id], worker_id=worker_id)


def _reverse(
    journal: Journal, *, user: Any, reason: str, client: GotransverseClient, ledger_id: int
) -> Journal:
    reversal = _reversal_build(journal, reason=reason, actor=actor_name(user))
    reference = reversal.source_transaction_reference
    # Reversal may be a retry of an attempt whose answer was lost: look before sending.
    if reversal.request_json:
        found = client.find_transactions_by_reference(ledger_id, reference)
        if found:
            _record_reversal(
                journal, reversal, result=bulk_result_from_transaction(found[0]), user=user
            )
            return _refreshed(reversal)
    payload = journal_transaction_input(reversal)
    with transaction.atomic():
        reversal.request_json = wire.dumps([payload.to_json()], indent=2)
        reversal.save(update_fields=["request_json"])
    outcome = client.create_transactions_bulk(ledger_id, [payload], auto_post=True)
    result = outcome.results[0] if outcome.results else None
    if result is None or not result.succeeded:
        message = result_message(result) if result else "no answer from the ledger"
        with transaction.atomic():
            reversal.response_json = wire.dumps(result_raw(result), indent=2) if result else ""
            reversal.save(update_fields=["response_json"])
        raise PostingError(f"The ledger did not post reversal {reference}: {message}")
    _record_reversal(journal, reversal, result=result, user=user)
    return _refreshed(reversal)


@transaction.atomic
def order_retry(*, order_sync: OrderSync, user: Any = None, actor: str = "") -> OrderSync:
    """Let a FAILED order be taken up by the next posting pass at once (backoff skipped).

    The request is recorded in the order's history with who asked and when (the user's name,
    else `actor`, else "system:order_retry"). The state does not change here: the posting pass
    that follows records FAILED → POSTING after asking the ledger for the reference. An order
    that is no longer FAILED (the cycle retried it meanwhile) is left alone, nothing recorded.
    """
    retried = OrderSync.objects.filter(pk=order_sync.pk, state=OrderState.FAILED).update(
        next_attempt_at=None
    )
    order_sync.refresh_from_db()
    if retried:
        order_note_record(
            order_sync=order_sync,
            actor=actor_for(user, default=actor or "system:order_retry"),
            user=user,
            note="retry requested: backoff skipped, the next posting pass takes the order up "
            "(after asking the AR Ledger whether the reference is already there)",
        )
    return order_sync


def _record_rejection(order_sync: OrderSync, journal: Journal, *, user: Any, reason: str) -> None:
    actor = actor_name(user)
    message = f"Rejected in review by {actor}: {reason}"
    with transaction.atomic():
        journal.status = Journal.Status.REJECTED
        journal.rejected_reason = reason
        journal.save(update_fields=["status", "rejected_reason"])
        # The rejected journal keeps its reference; a rebuild is a new revision with its own.
        _transition(
            order_sync,
            OrderState.BLOCKED,
            actor=actor,
            user=user,
            note=message,
            blocked_reason=_rejected_reason_code(),
            blocked_message=message,
            blocked_fix_url=journal_admin_url(journal),
            revision=order_sync.revision + 1,
        )


def _rejected_reason_code() -> str:
    # Manual-only in the builder: the next cycle never rebuilds it on its own.
    return BlockedReason.REJECTED_IN_REVIEW


def _reversal_build(original: Journal, *, reason: str, actor: str) -> Journal:
    """The reversing journal, stored (with its reference) before anything is sent; an earlier
    attempt's reversal is reused."""
    reference = f"{original.source_transaction_reference}-REV"
    existing = Journal.objects.filter(source_transaction_reference=reference).first()
    if existing is not None:
        if existing.status == Journal.Status.POSTED:
            raise PostingError(
                f"Journal {original.source_transaction_reference} is reversed already."
            )
        return existing
    today = timezone.localdate()
    with transaction.atomic():
        reversal = Journal.objects.create(
            order_sync_id=original.order_sync_id,
            revision=original.revision,
            kind=Journal.Kind.REVERSAL,
            status=Journal.Status.BUILT,
            source_transaction_reference=reference,
            workflow=Journal.Workflow.AUTO,
            currency=original.currency,
            total_debit=original.total_credit,
            total_credit=original.total_debit,
            occurred_on=today,
            event_date=today,
            reversal_of=original,
            rejected_reason=reason,
        )
        swapped = {
            JournalLine.Side.DEBIT: JournalLine.Side.CREDIT,
            JournalLine.Side.CREDIT: JournalLine.Side.DEBIT,
        }
        JournalLine.objects.bulk_create(
            JournalLine(
                journal=reversal,
                position=line.position,
                side=swapped[line.side],
                gl_account=line.gl_account,
                amount=line.amount,
                currency=line.currency,
                billing_account_num=line.billing_account_num,
                description=f"Reversal: {line.description}"[:255],
                entry_values={
                    **line.entry_values,
                    "reversal_of": original.source_transaction_reference,
                },
                order_item_id=line.order_item_id,
            )
            for line in original.lines.order_by("position")
        )
    logger.info("posting.reversal_built", extra={"reference": reference, "actor": actor})
    return reversal


def _record_reversal(
    original: Journal, reversal: Journal, *, result: BulkTransactionResult, user: Any
) -> None:
    actor = actor_name(user)
    periods = period_names([(None, result)])
    with transaction.atomic():
        reversal.status = Journal.Status.POSTED
        reversal.ledger_transaction_id = str(result.id)
        reversal.landed_period = landed_period(result, periods)
        reversal.response_json = wire.dumps(result_raw(result), indent=2)
        reversal.posted_at = timezone.now()
        reversal.save(
            update_fields=[
                "status",
                "ledger_transaction_id",
                "landed_period",
                "response_json",
                "posted_at",
            ]
        )
        Journal.objects.filter(pk=original.pk).update(status=Journal.Status.REVERSED)
        order_sync = OrderSync.objects.select_for_update().get(pk=original.order_sync_id)
        note = (
            f"{original.source_transaction_reference} reversed by "
            f"{reversal.source_transaction_reference}: {reversal.rejected_reason}"
        )
        # The order goes round again as a new revision, built from ATLAS's current data.
        _transition(
            order_sync,
            OrderState.READY,
            actor=actor,
            user=user,
            note=note,
            revision=order_sync.revision + 1,
            attempts=0,
            next_attempt_at=None,
            last_error="",
        )


def _refreshed(journal: Journal) -> Journal:
    journal.refresh_from_db()
    return journal


def _transition(order_sync: OrderSync, to_state: str, **kwargs: Any) -> OrderSync:
    """One guarded transition, recorded at once (order_transition updates `order_sync`)."""
    order_transition(order_sync=order_sync, to_state=to_state, **kwargs)
    return order_sync
