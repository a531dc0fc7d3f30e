"""Recording what the AR Ledger answered for a posting batch: posted, drafted, refused (the order
blocked with the ledger's code and message) or a transient failure (FAILED with backoff); the
write-back steps opened for what was posted; and the report of the batch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils import timezone

from integration import wire
from integration.gotransverse.errors import GotransverseError
from integration.gotransverse.records import (
    BulkTransactionResult,
    TransactionInput,
)
from ledger_sync.models import (
    BlockedReason,
    Journal,
    OrderState,
    OrderSync,
)
from ledger_sync.services.admin_links import journal_admin_url
from ledger_sync.services.background import backoff_delay
from ledger_sync.services.db import rows_update
from ledger_sync.services.ledger_records import (
    landed_period,
    period_names,
    result_message,
    result_raw,
)
from ledger_sync.services.order_states import (
    OrderProblem,
    TransitionBatch,
)
from ledger_sync.services.write_back_steps import write_back_steps_open_many


@dataclass
class PostingReport:
    claimed: int = 0
    sent: int = 0
    posted: int = 0
    drafted: int = 0
    found_in_ledger: int = 0
    rejected: int = 0
    blocked: list[OrderProblem] = field(default_factory=list)
    failed: list[OrderProblem] = field(default_factory=list)
    ledger_calls: int = 0

    def merge(self, other: PostingReport) -> None:
        for name in ("claimed", "sent", "posted", "drafted", "found_in_ledger", "rejected"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.blocked.extend(other.blocked)
        self.failed.extend(other.failed)
        self.ledger_calls += other.ledger_calls


ACTION_CREATE_POSTED = "create_posted"  # bulk create, auto_post=true


ACTION_CREATE_DRAFT = "create_draft"  # bulk create, auto_post=false (review workflow)


ACTION_POST_DRAFT = "post_draft"  # bulk post drafts by reference (approved)


@dataclass
class PostingItem:
    order_sync: OrderSync
    journal: Journal
    action: str
    needs_lookup: bool
    actor: str
    user: Any = None
    outcome: str = ""  # posted | drafted | blocked | failed | skipped
    payload: TransactionInput | None = None
    # Set when both lookups succeeded and found neither a posting nor the draft: the approved
    # draft was deleted in the ledger, so the journal is closed and a rebuild gets a new revision.
    draft_gone: bool = False


def journals_record_results(
    pairs: list[tuple[PostingItem, BulkTransactionResult]], *, report: PostingReport, found: bool
) -> None:
    """Record what the ledger answered, in one transaction per batch (after the remote call)."""
    if not pairs:
        return
    periods = period_names(pairs)
    now = timezone.now()
    drafted: list[PostingItem] = []
    posted: list[PostingItem] = []
    rejected: list[tuple[PostingItem, str]] = []
    for item, result in pairs:
        journal = item.journal
        journal.response_json = wire.dumps(result_raw(result), indent=2)
        if not result.succeeded:
            message = (
                f"The AR Ledger rejected {journal.source_transaction_reference}: "
                f"{result_message(result)}"
            )
            if item.draft_gone:
                # Nothing of this journal is in the ledger any more: close it, so that the
                # rebuild the message asks for makes a new revision with its own reference.
                journal.status = Journal.Status.REJECTED
                journal.rejected_reason = message
            rejected.append((item, message))
            continue
        journal.ledger_transaction_id = str(result.id)
        journal.landed_period = landed_period(result, periods)
        if item.action == ACTION_CREATE_DRAFT:
            journal.status = Journal.Status.DRAFT
            drafted.append(item)
        else:
            journal.status = Journal.Status.POSTED
            journal.posted_at = now
            posted.append(item)
    cleared = {"attempts": 0, "next_attempt_at": None, "last_error": ""}
    transitions = TransitionBatch()
    with transaction.atomic():
        rows_update(
            Journal,
            [item.journal for item, _ in pairs],
            [
                "response_json",
                "ledger_transaction_id",
                "landed_period",
                "status",
                "posted_at",
                "rejected_reason",
            ],
        )
        transitions.add_many(
            drafted,
            OrderState.AWAITING_REVIEW,
            note=lambda i: _ok_note(i.journal, found, "draft created"),
            **cleared,
        )
        transitions.add_many(
            posted,
            OrderState.POSTED,
            note=lambda i: _ok_note(i.journal, found, "posted"),
            **cleared,
        )
        _write_back_steps_open([item.order_sync for item in posted])
        for item, message in rejected:
            extra = {"revision": item.order_sync.revision + 1} if item.draft_gone else {}
            transitions.add(
                item.order_sync,
                OrderState.BLOCKED,
                actor=item.actor,
                user=item.user,
                note=message,
                blocked_reason=BlockedReason.REMOTE_REJECTION,
                blocked_message=message,
                blocked_fix_url=journal_admin_url(item.journal),
                last_error=message,
                **extra,
            )
        transitions.save()
    for item in drafted:
        item.outcome = "drafted"
    for item in posted:
        item.outcome = "posted"
    for item, message in rejected:
        item.outcome = "blocked"
        report.blocked.append(_problem(item.order_sync, "remote_rejection", message))
    report.drafted += len(drafted)
    report.posted += len(posted)
    if found:
        report.found_in_ledger += len(drafted) + len(posted)


def record_failure(
    items: list[PostingItem], *, error: GotransverseError, report: PostingReport
) -> None:
    """Transient failure (after the client's own retries): FAILED with backoff; the next pass
    looks the references up before sending anything."""
    now = timezone.now()
    message = str(error)
    transitions = TransitionBatch()
    with transaction.atomic():
        for item in items:
            attempts = item.order_sync.attempts + 1
            transitions.add(
                item.order_sync,
                OrderState.FAILED,
                actor=item.actor,
                user=item.user,
                note=message,
                attempts=attempts,
                next_attempt_at=now + backoff_delay(attempts),
                last_error=message,
            )
            item.outcome = "failed"
            report.failed.append(_problem(item.order_sync, "transient", message))
        transitions.save()


def _write_back_steps_open(order_syncs: list[OrderSync]) -> None:
    """After a posting: the ERP code is (re)written for this revision; the invoice once."""
    write_back_steps_open_many(order_sync_ids=[o.pk for o in order_syncs])


def _ok_note(journal: Journal, found: bool, what: str) -> str:
    text = (
        f"{journal.source_transaction_reference} {what} as ledger transaction "
        f"{journal.ledger_transaction_id}"
    )
    if journal.landed_period:
        text += f" in {journal.landed_period}"
    if found:
        text += " (found in the ledger on resume; not sent again)"
    return text


def _problem(order_sync: OrderSync, reason: str, message: str) -> OrderProblem:
    return OrderProblem(
        order_sync_id=order_sync.pk,
        atlas_order_id=getattr(getattr(order_sync, "order", None), "atlas_id", None),
        state=order_sync.state,
        reason=reason,
        message=message,
    )
