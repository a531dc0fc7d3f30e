"""Posting journals to the AR Ledger exactly once: the auto and review workflows (rejecting,
reversing and retrying are in services/journal_corrections.py).

Exactly once, because the ledger never rejects a duplicate source_transaction_reference:
1. Each journal's reference is stored when the journal is built, before any remote call.
2. A worker claims orders atomically (row locks on PostgreSQL, compare-and-set elsewhere) and
   marks them POSTING in a transaction that commits BEFORE anything is sent.
3. Any order that may already have been sent (it was POSTING or FAILED when claimed: a crash,
   a timeout, a lost answer) is first looked up in the ledger by its reference, posted
   transactions and drafts; what is found is recorded and never sent again.
4. The remote call runs outside any database transaction; its result is recorded in a new one.
A crash between "the ledger accepted it" and "we recorded it" therefore resumes at step 3.

Bulk calls are batched (LEDGER_POST_BATCH_SIZE). A per-transaction failure in a bulk answer
blocks only that order (REMOTE_REJECTION, with the ledger's code and message); a transport
failure marks the batch FAILED with backoff, retried (after the lookup) by the next cycle.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from integration import wire
from integration.gotransverse.client import GotransverseClient
from integration.gotransverse.errors import GotransverseError
from integration.gotransverse.records import (
    ID_TYPE_SOURCE_TRANSACTION_REFERENCE,
    BulkTransactionResult,
    TransactionInput,
)
from ledger_sync.errors import ApplicationError
from ledger_sync.models import (
    Journal,
    OrderState,
    OrderSync,
)
from ledger_sync.services.claims import orders_claim, orders_release, worker_id_new
from ledger_sync.services.db import rows_update
from ledger_sync.services.ledger_records import (
    bulk_result_from_transaction,
    error_result,
    journal_transaction_input,
)
from ledger_sync.services.order_states import (
    MAYBE_SENT_STATES,
    POSTABLE_STATES,
    TransitionBatch,
)
from ledger_sync.services.posting_results import (
    ACTION_CREATE_DRAFT,
    ACTION_CREATE_POSTED,
    ACTION_POST_DRAFT,
    PostingItem,
    PostingReport,
    journals_record_results,
    record_failure,
)
from ledger_sync.services.remote import gotransverse_client_from_settings, gotransverse_ledger_id

logger = logging.getLogger(__name__)

APPROVE_PERMISSION = "ledger_sync.approve_journal"
# A whole bulk request refused as such (nothing booked): the journals in it are at fault.
REQUEST_REFUSED_STATUSES = frozenset({400, 409})


class PostingError(ApplicationError):
    """A posting action a person asked for cannot be done (wrong state, no permission...)."""


# --- the work of one batch -----------------------------------------------------------------------


def journals_post(
    *,
    client: GotransverseClient | None = None,
    ledger_id: int | None = None,
    worker_id: str | None = None,
    actor: str = "system:journals_post",
    limit: int | None = None,
    batch_size: int | None = None,
    order_sync_ids: Iterable[int] | None = None,
) -> PostingReport:
    """Post (auto workflow) or create drafts for (review workflow) every claimable journal.

    Also resumes orders left POSTING by a dead worker and retries FAILED ones whose backoff is
    over; both are looked up in the ledger first. Safe to run in any number of workers.
    """
    client = client or gotransverse_client_from_settings()
    ledger_id = gotransverse_ledger_id(ledger_id)
    worker_id = worker_id or worker_id_new()
    batch_size = batch_size or settings.LEDGER_POST_BATCH_SIZE
    report = PostingReport()
    ids = None if order_sync_ids is None else list(order_sync_ids)
    cursor = 0
    while limit is None or report.claimed < limit:
        take = batch_size if limit is None else min(batch_size, limit - report.claimed)
        claimed = orders_claim(
            states=POSTABLE_STATES, limit=take, worker_id=worker_id, after_id=cursor, ids=ids
        )
        if not claimed:
            break
        cursor = claimed[-1].pk
        report.claimed += len(claimed)
        try:
            items = _items_for_posting(claimed, actor=actor)
            report.merge(_process(items, client=client, ledger_id=ledger_id, worker_id=worker_id))
        finally:
            orders_release(order_sync_ids=[o.pk for o in claimed], worker_id=worker_id)
    return report


def journal_approve(
    *,
    journals: Sequence[Journal],
    user: Any,
    client: GotransverseClient | None = None,
    ledger_id: int | None = None,
) -> PostingReport:
    """An accountant approves drafts: they are posted in bulk by SOURCE_TRANSACTION_REFERENCE.

    Only journals whose order is AWAITING_REVIEW with the draft in the ledger are taken; the
    rest are left as they are (approving twice is harmless).
    """
    require_approver(user)
    client = client or gotransverse_client_from_settings()
    ledger_id = gotransverse_ledger_id(ledger_id)
    worker_id = worker_id_new()
    journal_by_order = {
        j.order_sync_id: j
        for j in journals
        if j.status == Journal.Status.DRAFT and j.kind == Journal.Kind.POSTING
    }
    report = PostingReport()
    if not journal_by_order:
        return report
    claimed = orders_claim(
        states=(OrderState.AWAITING_REVIEW,),
        limit=len(journal_by_order),
        worker_id=worker_id,
        ids=journal_by_order.keys(),
    )
    report.claimed = len(claimed)
    try:
        actor = actor_name(user)
        current = Journal.objects.in_bulk([journal_by_order[o.pk].pk for o in claimed])
        items = []
        for order_sync in claimed:
            journal = current[journal_by_order[order_sync.pk].pk]
            if journal.status != Journal.Status.DRAFT or journal.revision != order_sync.revision:
                continue
            items.append(
                PostingItem(
                    order_sync=order_sync,
                    journal=journal,
                    action=ACTION_POST_DRAFT,
                    # Posting a draft twice is refused by the ledger, never booked twice: no
                    # lookup is needed on a first approval.
                    needs_lookup=False,
                    actor=actor,
                    user=user,
                )
            )
        report.merge(_process(items, client=client, ledger_id=ledger_id, worker_id=worker_id))
    finally:
        orders_release(order_sync_ids=[o.pk for o in claimed], worker_id=worker_id)
    return report


# --- internals ---------------------------------------------------------------------------------


def _items_for_posting(claimed: list[OrderSync], *, actor: str) -> list[PostingItem]:
    """The journal and the action for each claimed order; orders with nothing to send are
    released untouched (another stage owns them)."""
    journals = {
        j.order_sync_id: j
        for j in Journal.objects.filter(
            order_sync__in=claimed,
            kind=Journal.Kind.POSTING,
            status__in=(Journal.Status.BUILT, Journal.Status.DRAFT),
        )
        .order_by("order_sync_id", "revision")  # the highest revision is kept
        .prefetch_related("lines")
    }
    items = []
    for order_sync in claimed:
        journal = journals.get(order_sync.pk)
        if journal is None or journal.revision != order_sync.revision:
            logger.warning(
                "posting.no_journal",
                extra={"order_sync": order_sync.pk, "state": order_sync.state},
            )
            continue
        if journal.status == Journal.Status.DRAFT:
            # A draft whose order is POSTING/FAILED was approved: post it.
            action = ACTION_POST_DRAFT
        elif journal.workflow == Journal.Workflow.AUTO:
            action = ACTION_CREATE_POSTED
        else:
            # Only an explicit "auto" posts without a person: anything else waits for review.
            action = ACTION_CREATE_DRAFT
        items.append(
            PostingItem(
                order_sync=order_sync,
                journal=journal,
                action=action,
                # A stored request means a send may have begun (it is committed with POSTING,
                # before the call): look before sending, whatever path led back here.
                needs_lookup=order_sync.state in MAYBE_SENT_STATES
                or order_sync.attempts > 0
                or bool(journal.request_json),
                actor=actor,
            )
        )
    return items


def _process(
    items: list[PostingItem], *, client: GotransverseClient, ledger_id: int, worker_id: str
) -> PostingReport:
    report = PostingReport()
    if not items:
        return report
    calls_before = client.stats.requests
    items = _mark_posting(items)
    to_send: list[PostingItem] = []
    for item in items:
        if item.needs_lookup:
            try:
                handled = _resume_from_ledger(item, client=client, ledger_id=ledger_id)
            except GotransverseError as error:
                record_failure([item], error=error, report=report)
                continue
            if handled is not None:
                journals_record_results([(item, handled)], report=report, found=True)
                continue
        to_send.append(item)

    for action in (ACTION_CREATE_POSTED, ACTION_CREATE_DRAFT, ACTION_POST_DRAFT):
        group = [i for i in to_send if i.action == action]
        for start in range(0, len(group), settings.LEDGER_POST_BATCH_SIZE):
            chunk = _claims_refresh(
                group[start : start + settings.LEDGER_POST_BATCH_SIZE], worker_id=worker_id
            )
            _send(chunk, client=client, ledger_id=ledger_id, report=report)
    report.ledger_calls = client.stats.requests - calls_before
    return report


def _claims_refresh(items: list[PostingItem], *, worker_id: str) -> list[PostingItem]:
    """Renew our claims right before sending, and send only what is still ours.

    A worker slowed down past LEDGER_CLAIM_TIMEOUT_SECONDS (retries, a slow ledger) may have
    had its orders taken over; the other worker looked the reference up and sent it. Sending
    our copy too would post twice, so a claim that is no longer ours fences the send off.
    """
    if not items:
        return []
    pks = [item.order_sync.pk for item in items]
    OrderSync.objects.filter(pk__in=pks, claimed_by=worker_id).update(claimed_at=timezone.now())
    ours = set(
        OrderSync.objects.filter(pk__in=pks, claimed_by=worker_id).values_list("pk", flat=True)
    )
    lost = [item for item in items if item.order_sync.pk not in ours]
    for item in lost:
        logger.warning(
            "posting.claim_lost",
            extra={"reference": item.journal.source_transaction_reference, "worker": worker_id},
        )
    return [item for item in items if item.order_sync.pk in ours]


def _mark_posting(items: list[PostingItem]) -> list[PostingItem]:
    """Commit POSTING (and the request about to be sent) before any remote call; returns the
    items still current.

    The claim keeps other posters away, not the builder: an order changed in ATLAS may have
    had its BUILT journal superseded since we read it. So the orders' rows are locked (a
    write lock on SQLite) and their journals re-read first; an item whose journal is no
    longer the order's current one is dropped, never sent.
    """
    transitions = TransitionBatch()
    with transaction.atomic():
        pks = [item.order_sync.pk for item in items]
        if connection.features.has_select_for_update:
            list(OrderSync.objects.select_for_update().filter(pk__in=pks).values_list("pk"))
        revisions = dict(OrderSync.objects.filter(pk__in=pks).values_list("pk", "revision"))
        statuses = dict(
            Journal.objects.filter(pk__in=[item.journal.pk for item in items]).values_list(
                "pk", "status"
            )
        )
        current = [
            item
            for item in items
            if revisions.get(item.order_sync.pk) == item.journal.revision
            and statuses.get(item.journal.pk) == item.journal.status
        ]
        kept = {id(item) for item in current}
        for item in items:
            if id(item) not in kept:
                logger.warning(
                    "posting.journal_changed",
                    extra={"reference": item.journal.source_transaction_reference},
                )
        to_store = []
        for item in current:
            if item.action in (ACTION_CREATE_POSTED, ACTION_CREATE_DRAFT) and not (
                item.journal.request_json
            ):
                item.journal.request_json = wire.dumps([_payload(item).to_json()], indent=2)
                to_store.append(item.journal)
        rows_update(Journal, to_store, ["request_json"])
        transitions.add_many(
            [i for i in current if i.order_sync.state != OrderState.POSTING],
            OrderState.POSTING,
            note=_posting_note,
        )
        transitions.save()
    return current


def _posting_note(item: PostingItem) -> str:
    verb = {
        ACTION_CREATE_POSTED: "posting",
        ACTION_CREATE_DRAFT: "creating the draft of",
        ACTION_POST_DRAFT: "posting the approved draft of",
    }[item.action]
    return f"{verb} {item.journal.source_transaction_reference}"


def _resume_from_ledger(
    item: PostingItem, *, client: GotransverseClient, ledger_id: int
) -> BulkTransactionResult | None:
    """Look the journal's reference up in the ledger. Returns a result to record when the
    ledger already holds what we were about to send; None when it must be sent.

    Drafts are asked first, postings second: a draft posted in the ledger between the two
    questions is then seen as one or the other, never as neither (which would send it again).
    """
    reference = item.journal.source_transaction_reference
    drafts = client.find_drafts_by_reference(ledger_id, reference)
    posted = client.find_transactions_by_reference(ledger_id, reference)
    if posted:
        if len(posted) > 1:
            logger.error(
                "posting.duplicate_in_ledger",
                extra={"reference": reference, "transaction_ids": [t.id for t in posted]},
            )
        if item.action == ACTION_CREATE_DRAFT:
            # The ledger holds it POSTED (its draft was posted there, or an earlier attempt
            # under the auto workflow posted it): record what is true, a posted journal — not
            # a draft awaiting a review that could never delete it.
            item.action = ACTION_POST_DRAFT
        return bulk_result_from_transaction(posted[0])
    if drafts:
        if item.action == ACTION_CREATE_DRAFT:
            return bulk_result_from_transaction(drafts[0])
        # Auto workflow (or an approved draft): the draft is there, post it, never re-create.
        item.action = ACTION_POST_DRAFT
        return None
    if item.action == ACTION_POST_DRAFT:
        # An approved draft is neither posted nor a draft any more: deleted in the ledger.
        item.draft_gone = True
        raise_result = BulkTransactionResult(
            index=0,
            requested=reference,
            answered=True,
            id=None,
            source_transaction_reference=reference,
            source_batch_reference=None,
            target_batch_key=None,
            code=404,
            error_message=(
                f"the draft {reference} is no longer in the AR Ledger (deleted there?); "
                "rebuild the order to send it again"
            ),
            entries=(),
        )
        return raise_result
    return None


def _send(
    items: list[PostingItem], *, client: GotransverseClient, ledger_id: int, report: PostingReport
) -> None:
    if not items:
        return
    action = items[0].action
    try:
        if action == ACTION_POST_DRAFT:
            outcome = client.post_drafts_bulk(
                ledger_id,
                [i.journal.source_transaction_reference for i in items],
                id_type=ID_TYPE_SOURCE_TRANSACTION_REFERENCE,
            )
        else:
            outcome = client.create_transactions_bulk(
                ledger_id,
                [_payload(i) for i in items],
                auto_post=action == ACTION_CREATE_POSTED,
            )
    except GotransverseError as error:
        refused = error.status in REQUEST_REFUSED_STATUSES and not error.outcome_unknown
        if refused and len(items) > 1:
            # The ledger refused the whole batch (e.g. 400 for one bad transaction): split it
            # so that only the offending journal ends up blocked.
            middle = len(items) // 2
            _send(items[:middle], client=client, ledger_id=ledger_id, report=report)
            _send(items[middle:], client=client, ledger_id=ledger_id, report=report)
            return
        if refused:
            result = error_result(items[0].journal, error)
            if action == ACTION_POST_DRAFT:
                # Refusing to post a draft may mean "already posted" (a lost answer): the
                # ledger is asked before the order is blocked as rejected.
                checked = _posted_meanwhile(items[0], result, client=client, ledger_id=ledger_id)
                if checked is None:
                    record_failure(items, error=error, report=report)
                    return
                result = checked
            journals_record_results([(items[0], result)], report=report, found=False)
            return
        # Anything else (503 or timeout after the client's retries, an unreadable answer, a
        # key or ledger misconfigured) is not this journal's fault: FAILED with backoff, and
        # the retry looks the reference up first, since the ledger may have booked it.
        record_failure(items, error=error, report=report)
        return
    report.sent += len(items)
    pairs = []
    unanswered = []
    unknown = []
    for item, result in zip(items, outcome.results, strict=False):
        if result.answered and _ambiguous(result):
            # Neither an id nor an error: not a refusal anyone can read. Blocking it as
            # rejected would let a changed order supersede a journal the ledger may hold.
            unanswered.append(item)
        elif result.answered:
            if action == ACTION_POST_DRAFT and result.failed:
                # "Already posted" after a lost answer is a success to record, not a rejection.
                checked = _posted_meanwhile(item, result, client=client, ledger_id=ledger_id)
                if checked is None:
                    unknown.append(item)
                    continue
                result = checked
            pairs.append((item, result))
        else:
            unanswered.append(item)
    unanswered.extend(items[len(outcome.results) :])
    journals_record_results(pairs, report=report, found=False)
    if unknown:
        record_failure(
            unknown,
            error=GotransverseError(
                "the ledger refused to post the draft and could not be asked whether it is "
                "posted already; it is looked up again before anything is sent",
                outcome_unknown=True,
            ),
            report=report,
        )
    if unanswered:
        record_failure(
            unanswered,
            error=GotransverseError(
                "the ledger gave no result for this transaction; it will be looked up by its "
                "reference before anything is sent again",
                outcome_unknown=True,
            ),
            report=report,
        )


def _ambiguous(result: BulkTransactionResult) -> bool:
    """An answer that neither booked (no id) nor refused (no error code, no message)."""
    return (
        result.id is None
        and not result.error_message
        and (result.code is None or result.code < 400)
    )


def _posted_meanwhile(
    item: PostingItem, result: BulkTransactionResult, *, client: GotransverseClient, ledger_id: int
) -> BulkTransactionResult | None:
    """After the ledger refused to post a draft: the posting when the ledger holds it (a lost
    answer of an earlier approval), the refusal when it surely does not, None when the lookup
    itself failed — then nobody knows, and the order must not be blocked as rejected."""
    try:
        posted = client.find_transactions_by_reference(
            ledger_id, item.journal.source_transaction_reference
        )
    except GotransverseError:
        return None
    return bulk_result_from_transaction(posted[0]) if posted else result


def _payload(item: PostingItem) -> TransactionInput:
    if item.payload is None:
        item.payload = journal_transaction_input(item.journal)
    return item.payload


def actor_name(user: Any) -> str:
    if user is None:
        return "system"
    return getattr(user, "get_username", lambda: str(user))() or "system"


def require_approver(user: Any) -> None:
    if user is None or not user.has_perm(APPROVE_PERMISSION):
        raise PostingError(
            "Approving, rejecting or reversing journals needs the permission "
            f"'{APPROVE_PERMISSION}' (finance leads and accountants)."
        )
