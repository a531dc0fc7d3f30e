"""Posting journals to the AR Ledger sandbox over HTTP: exactly once, in bulk, both workflows."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.utils import timezone

from integration.sandbox.faults import FaultConfig
from ledger_sync.models import (
    BlockedReason,
    Journal,
    OrderState,
    OrderSync,
    OrderTransition,
    WriteBackStep,
)
from ledger_sync.services import posting
from ledger_sync.services.journal_corrections import journal_reject, journal_reverse, order_retry
from ledger_sync.services.ledger_records import journal_transaction_input
from ledger_sync.services.posting import PostingError, journal_approve, journals_post
from tests.factories.parties import accountant
from tests.ledger_sync.services.posting_support import (
    built_journal,
    ledger_fixture,  # noqa: F401 - the `ledger` fixture
    refreshed,
    standard_lines,
)

pytestmark = pytest.mark.django_db(transaction=True)


def _states(journal: Journal) -> list[tuple[str, str]]:
    return list(
        OrderTransition.objects.filter(order_sync_id=journal.order_sync_id)
        .order_by("at", "id")
        .values_list("from_state", "to_state")
    )


def test_auto_workflow_posts_every_journal_in_one_bulk_call(ledger):
    journals = [built_journal() for _ in range(3)]

    report = journals_post(client=ledger.client())

    calls = ledger.bulk_creates()
    assert len(calls) == 1
    assert calls[0].query == {"auto_post": "true"}
    assert [t["source_transaction_reference"] for t in calls[0].body] == [
        j.source_transaction_reference for j in journals
    ]
    assert report.posted == 3 and report.sent == 3 and not report.blocked
    for journal in journals:
        journal = refreshed(journal)
        stored = ledger.app.transactions_with_reference(journal.source_transaction_reference)
        assert len(stored) == 1 and stored[0].is_posted
        assert journal.status == Journal.Status.POSTED
        assert journal.ledger_transaction_id == str(stored[0].id)
        assert journal.posted_at is not None
        assert journal.request_json and journal.response_json
        assert journal.order_sync.state == OrderState.POSTED
        assert journal.order_sync.claimed_by == ""
        assert _states(journal) == [
            (OrderState.JOURNAL_BUILT, OrderState.POSTING),
            (OrderState.POSTING, OrderState.POSTED),
        ]
        assert set(
            WriteBackStep.objects.filter(order_sync_id=journal.order_sync_id).values_list(
                "kind", "status"
            )
        ) == {
            (WriteBackStep.Kind.ERP_CODE, WriteBackStep.Status.PENDING),
            (WriteBackStep.Kind.INVOICE, WriteBackStep.Status.PENDING),
        }


def test_bulk_request_body_is_exactly_the_journal(ledger):
    journal = built_journal(document_reference="SO-2026-04-0042")

    journals_post(client=ledger.client())

    (call,) = ledger.bulk_creates()
    order_id = journal.order_sync.order.atlas_id
    entry = {
        "billing_account_num": "CUST-0042",
        "occurred_on": "2026-04-01T00:00:00Z",
        "event_date": "2026-04-01T00:00:00Z",
        "entry_values": {"atlas_order_id": order_id},
    }
    assert call.body == [
        {
            "source_transaction_reference": f"ATLAS-ORDER-{order_id}-R1",
            "entries": [
                {
                    "gl_account_num": "1200",
                    "credit": False,
                    "amount": {"amount": Decimal("85500.00"), "currency": "EUR"},
                    "description": "SO-2026-04-0042 line 1",
                    **entry,
                },
                {
                    "gl_account_num": "4001",
                    "credit": True,
                    "amount": {"amount": Decimal("71848.74"), "currency": "EUR"},
                    "description": "SO-2026-04-0042 line 2",
                    **entry,
                },
                {
                    "gl_account_num": "2200",
                    "credit": True,
                    "amount": {"amount": Decimal("13651.26"), "currency": "EUR"},
                    "description": "SO-2026-04-0042 line 3",
                    **entry,
                },
            ],
        }
    ]


def test_posting_is_batched_by_the_batch_size(ledger, settings):
    settings.LEDGER_POST_BATCH_SIZE = 2
    for _ in range(5):
        built_journal()

    report = journals_post(client=ledger.client())

    assert [len(c.body) for c in ledger.bulk_creates()] == [2, 2, 1]
    assert report.posted == 5
    assert report.ledger_calls == 3


def test_partial_bulk_failure_blocks_only_the_failing_order(ledger):
    good_before = built_journal()
    broken = built_journal(lines=standard_lines(revenue="9999"))
    good_after = built_journal()

    report = journals_post(client=ledger.client())

    assert len(ledger.bulk_creates()) == 1
    assert refreshed(good_before).status == Journal.Status.POSTED
    assert refreshed(good_after).status == Journal.Status.POSTED
    broken = refreshed(broken)
    assert broken.status == Journal.Status.BUILT
    assert ledger.app.transactions_with_reference(broken.source_transaction_reference) == []
    order_sync = broken.order_sync
    assert order_sync.state == OrderState.BLOCKED
    assert order_sync.blocked_reason == BlockedReason.REMOTE_REJECTION
    assert "9999" in order_sync.blocked_message
    assert "code 400" in order_sync.blocked_message
    assert [p.order_sync_id for p in report.blocked] == [order_sync.pk]


def test_crash_after_the_ledger_accepted_resumes_without_posting_again(ledger, monkeypatch):
    journals = [built_journal() for _ in range(3)]
    real_record = posting.journals_record_results
    crashes = []

    def record_then_crash(pairs, **kwargs):
        if not crashes:
            crashes.append(True)
            raise RuntimeError("worker killed after the ledger answered")
        return real_record(pairs, **kwargs)

    monkeypatch.setattr(posting, "journals_record_results", record_then_crash)

    with pytest.raises(RuntimeError):
        journals_post(client=ledger.client())

    # The ledger holds them, we do not know it yet.
    for journal in journals:
        assert refreshed(journal).order_sync.state == OrderState.POSTING
        assert (
            len(ledger.app.transactions_with_reference(journal.source_transaction_reference)) == 1
        )
    ledger.app.reset_calls()

    report = journals_post(client=ledger.client())

    assert ledger.bulk_creates() == []
    assert report.found_in_ledger == 3 and report.posted == 3 and report.sent == 0
    for journal in journals:
        journal = refreshed(journal)
        (stored,) = ledger.app.transactions_with_reference(journal.source_transaction_reference)
        assert journal.status == Journal.Status.POSTED
        assert journal.ledger_transaction_id == str(stored.id)
        assert journal.order_sync.state == OrderState.POSTED
    assert len(ledger.app.transactions) == 3


def test_a_dead_workers_stale_claim_is_taken_over_and_checked_first(ledger, settings):
    journal = built_journal()
    client = ledger.client()
    # A worker posted it, then died before recording anything: POSTING, claim held.
    payload = journal_transaction_input(journal)
    client.create_transactions_bulk(1, [payload], auto_post=True)
    OrderSync.objects.filter(pk=journal.order_sync_id).update(
        state=OrderState.POSTING, claimed_by="dead-worker", claimed_at=timezone.now()
    )
    ledger.app.reset_calls()

    assert journals_post(client=client).claimed == 0  # the claim is still fresh

    later = timezone.now() + timedelta(seconds=settings.LEDGER_CLAIM_TIMEOUT_SECONDS + 1)
    with time_machine.travel(later, tick=False):
        report = journals_post(client=client)

    assert report.found_in_ledger == 1 and report.sent == 0
    assert ledger.bulk_creates() == []
    assert len(ledger.app.transactions_with_reference(journal.source_transaction_reference)) == 1
    assert refreshed(journal).status == Journal.Status.POSTED


def test_transport_failure_fails_with_backoff_then_retry_checks_the_reference_first(ledger):
    journal = built_journal()
    ledger.app.faults = FaultConfig(error_rate=1.0, error_statuses=(503,))

    report = journals_post(client=ledger.client())

    order_sync = refreshed(journal).order_sync
    assert order_sync.state == OrderState.FAILED
    assert order_sync.attempts == 1
    assert order_sync.next_attempt_at > timezone.now()
    assert "503" in order_sync.last_error
    assert len(report.failed) == 1
    ledger.app.faults = FaultConfig()
    ledger.app.reset_calls()

    assert journals_post(client=ledger.client()).claimed == 0  # backoff not over

    with time_machine.travel(order_sync.next_attempt_at + timedelta(seconds=1), tick=False):
        report = journals_post(client=ledger.client())

    paths = [c.path for c in ledger.app.calls]
    # Looked up (entries, then drafts) before the one send.
    assert paths.index("/ledgers/1/accounting-entries") < paths.index(
        "/ledgers/1/accounting-transactions/bulk"
    )
    assert "/ledgers/1/draft-accounting-transactions" in paths
    assert report.posted == 1
    assert len(ledger.app.transactions_with_reference(journal.source_transaction_reference)) == 1
    assert refreshed(journal).order_sync.attempts == 0


def test_review_workflow_creates_drafts_and_approval_posts_them_by_reference(ledger):
    journals = [built_journal(workflow=Journal.Workflow.REVIEW) for _ in range(2)]

    report = journals_post(client=ledger.client())

    assert report.drafted == 2
    (create,) = ledger.bulk_creates()
    assert create.query == {"auto_post": "false"}
    for journal in journals:
        journal = refreshed(journal)
        assert journal.status == Journal.Status.DRAFT
        assert journal.order_sync.state == OrderState.AWAITING_REVIEW
        (stored,) = ledger.app.transactions_with_reference(journal.source_transaction_reference)
        assert not stored.is_posted

    user = accountant()
    report = journal_approve(
        journals=[refreshed(j) for j in journals], user=user, client=ledger.client()
    )

    (post,) = ledger.app.calls_to("/ledgers/1/accounting-transactions/bulk/post", "POST")
    assert post.query == {"id_type": "SOURCE_TRANSACTION_REFERENCE"}
    assert post.body == [j.source_transaction_reference for j in journals]
    assert report.posted == 2
    for journal in journals:
        journal = refreshed(journal)
        assert journal.status == Journal.Status.POSTED
        (stored,) = ledger.app.transactions_with_reference(journal.source_transaction_reference)
        assert stored.is_posted
        transition = journal.order_sync.transitions.get(
            to_state=OrderState.POSTING, from_state=OrderState.AWAITING_REVIEW
        )
        assert transition.user == user and transition.actor == user.username


def test_a_journal_with_an_unknown_workflow_waits_for_review_instead_of_posting(ledger):
    journal = built_journal(workflow=Journal.Workflow.REVIEW)
    # A settings row edited by hand past the admin's validation.
    Journal.objects.filter(pk=journal.pk).update(workflow="Auto ")

    report = journals_post(client=ledger.client())

    assert report.drafted == 1 and report.posted == 0
    (create,) = ledger.bulk_creates()
    assert create.query == {"auto_post": "false"}
    assert refreshed(journal).order_sync.state == OrderState.AWAITING_REVIEW


def test_approving_needs_the_approve_permission(ledger, django_user_model):
    journal = built_journal(workflow=Journal.Workflow.REVIEW)
    journals_post(client=ledger.client())
    clerk = django_user_model.objects.create_user(username="clerk", is_staff=True)

    with pytest.raises(PostingError, match="approve_journal"):
        journal_approve(journals=[refreshed(journal)], user=clerk, client=ledger.client())
    assert refreshed(journal).status == Journal.Status.DRAFT


def test_rejecting_deletes_the_draft_and_blocks_the_order_with_the_reason(ledger):
    journal = built_journal(workflow=Journal.Workflow.REVIEW)
    journals_post(client=ledger.client())
    user = accountant()

    journal = journal_reject(
        journal=refreshed(journal),
        user=user,
        reason="Wrong VAT rate on line 2",
        client=ledger.client(),
    )

    assert ledger.app.transactions_with_reference(journal.source_transaction_reference) == []
    assert journal.status == Journal.Status.REJECTED
    assert journal.rejected_reason == "Wrong VAT rate on line 2"
    order_sync = journal.order_sync
    assert order_sync.state == OrderState.BLOCKED
    assert "Wrong VAT rate on line 2" in order_sync.blocked_message
    assert order_sync.blocked_reason == BlockedReason.REJECTED_IN_REVIEW
    # A rebuild is a new revision with its own reference.
    assert order_sync.revision == 2


def test_reversal_posts_a_swapped_journal_and_sends_the_order_round_again(ledger):
    journal = built_journal()
    journals_post(client=ledger.client())
    user = accountant()

    reversal = journal_reverse(
        journal=refreshed(journal), user=user, reason="Wrong counterparty", client=ledger.client()
    )

    assert reversal.source_transaction_reference == journal.source_transaction_reference + "-REV"
    assert reversal.status == Journal.Status.POSTED and reversal.kind == Journal.Kind.REVERSAL
    (original_tx,) = ledger.app.transactions_with_reference(journal.source_transaction_reference)
    (reversal_tx,) = ledger.app.transactions_with_reference(reversal.source_transaction_reference)
    assert [(e.gl_account_num, e.credit, e.amount) for e in reversal_tx.entries] == [
        (e.gl_account_num, not e.credit, e.amount) for e in original_tx.entries
    ]
    original = refreshed(journal)
    assert original.status == Journal.Status.REVERSED
    assert original.ledger_transaction_id == str(original_tx.id)  # never edited otherwise
    order_sync = original.order_sync
    assert order_sync.state == OrderState.READY
    assert order_sync.revision == 2
    assert _states(journal)[-1] == (OrderState.POSTED, OrderState.READY)
    assert "reversed by" in order_sync.transitions.last().note


def test_reversing_twice_is_refused(ledger):
    journal = built_journal()
    journals_post(client=ledger.client())
    user = accountant()
    journal_reverse(journal=refreshed(journal), user=user, reason="x", client=ledger.client())

    with pytest.raises(PostingError):
        journal_reverse(journal=refreshed(journal), user=user, reason="x", client=ledger.client())
    assert len(ledger.app.transactions) == 2


def test_approving_again_after_a_lost_answer_records_the_posting(ledger):
    journal = built_journal(workflow=Journal.Workflow.REVIEW)
    journals_post(client=ledger.client())
    client = ledger.client()
    # The draft was posted by an approval whose answer never came back.
    client.post_drafts_bulk(
        1, [journal.source_transaction_reference], id_type="SOURCE_TRANSACTION_REFERENCE"
    )

    report = journal_approve(journals=[refreshed(journal)], user=accountant(), client=client)

    assert report.posted == 1 and not report.blocked
    journal = refreshed(journal)
    assert journal.status == Journal.Status.POSTED
    assert journal.order_sync.state == OrderState.POSTED
    assert len(ledger.app.transactions_with_reference(journal.source_transaction_reference)) == 1


def test_a_batch_refused_as_a_whole_is_split_until_only_the_bad_journal_is_blocked(ledger):
    from integration.gotransverse.errors import BadRequestError

    journals = [built_journal() for _ in range(4)]
    bad_reference = journals[2].source_transaction_reference
    client = ledger.client()
    real_create = client.create_transactions_bulk

    def strict_create(ledger_id, transactions, *, auto_post):
        if any(t.source_transaction_reference == bad_reference for t in transactions):
            raise BadRequestError("entries[1]: bad amount", status=400, code="BAD_REQUEST")
        return real_create(ledger_id, transactions, auto_post=auto_post)

    client.create_transactions_bulk = strict_create

    report = journals_post(client=client)

    assert report.posted == 3
    assert [p.order_sync_id for p in report.blocked] == [journals[2].order_sync_id]
    blocked = refreshed(journals[2]).order_sync
    assert blocked.blocked_reason == BlockedReason.REMOTE_REJECTION
    assert "bad amount" in blocked.blocked_message
    assert ledger.app.transactions_with_reference(bad_reference) == []


def test_a_wrong_api_key_fails_the_batch_instead_of_blocking_the_journals(ledger):
    journal = built_journal()
    client = ledger.client()
    client._api_key = "wrong-key"

    report = journals_post(client=client)

    assert report.blocked == [] and len(report.failed) == 1
    order_sync = refreshed(journal).order_sync
    assert order_sync.state == OrderState.FAILED
    assert "401" in order_sync.last_error


def test_a_journal_dated_in_a_closed_period_shows_the_period_it_landed_in(ledger):
    from ledger_sync.services.gotransverse_mirror import gotransverse_mirror_run

    gotransverse_mirror_run(client=ledger.client(), ledger_id=1, trigger="command")
    journal = built_journal(occurred_on=date(2026, 2, 10))  # February 2026 is closed

    journals_post(client=ledger.client())

    journal = refreshed(journal)
    (stored,) = ledger.app.transactions_with_reference(journal.source_transaction_reference)
    assert stored.rolled_forward
    assert journal.landed_period == "March 2026"
    assert "in March 2026" in journal.order_sync.transitions.last().note


def test_the_approve_task_run_twice_posts_once_and_writes_back(ledger, monkeypatch):
    from ledger_sync.services import writeback
    from ledger_sync.tasks import approve_journals_task

    written = []
    monkeypatch.setattr(
        writeback, "write_backs_run", lambda *, order_sync_ids: written.append(order_sync_ids)
    )
    journal = built_journal(workflow=Journal.Workflow.REVIEW)
    journals_post(client=ledger.client())
    user = accountant()

    first = approve_journals_task([journal.pk], user.pk)
    second = approve_journals_task([journal.pk], user.pk)

    assert (first, second) == (1, 0)
    assert written == [[journal.order_sync_id], [journal.order_sync_id]]
    assert len(ledger.app.transactions_with_reference(journal.source_transaction_reference)) == 1
    assert refreshed(journal).status == Journal.Status.POSTED


def test_a_journal_superseded_after_the_claim_is_never_sent(ledger, monkeypatch):
    stale = built_journal()
    fresh = built_journal()
    real_mark = posting._mark_posting

    def rebuilt_meanwhile(items):
        # The builder superseded it (the order changed in ATLAS) after we read it.
        Journal.objects.filter(pk=stale.pk).update(status=Journal.Status.SUPERSEDED)
        return real_mark(items)

    monkeypatch.setattr(posting, "_mark_posting", rebuilt_meanwhile)

    report = journals_post(client=ledger.client())

    assert report.posted == 1
    (call,) = ledger.bulk_creates()
    assert [t["source_transaction_reference"] for t in call.body] == [
        fresh.source_transaction_reference
    ]
    assert refreshed(stale).order_sync.state == OrderState.JOURNAL_BUILT


# --- review findings (issue 5 review): draft refusals, lookups that fail, drafts gone ---------


def _drafted(ledger) -> Journal:
    journal = built_journal(workflow=Journal.Workflow.REVIEW)
    journals_post(client=ledger.client())
    return refreshed(journal)


def test_a_draft_post_refused_as_a_whole_after_a_lost_answer_is_recorded_as_posted(ledger):
    from integration.gotransverse.errors import ConflictError

    journal = _drafted(ledger)
    client = ledger.client()
    # An earlier approval posted the draft; its answer was lost.
    client.post_drafts_bulk(
        1, [journal.source_transaction_reference], id_type="SOURCE_TRANSACTION_REFERENCE"
    )

    def refuse_whole_request(ledger_id, ids, *, id_type):
        raise ConflictError("transaction is already posted", status=409, code="CONFLICT")

    client.post_drafts_bulk = refuse_whole_request

    report = journal_approve(journals=[journal], user=accountant(), client=client)

    assert report.blocked == [] and report.posted == 1
    journal = refreshed(journal)
    assert journal.status == Journal.Status.POSTED
    assert journal.order_sync.state == OrderState.POSTED
    assert len(ledger.app.transactions_with_reference(journal.source_transaction_reference)) == 1


def test_a_refused_draft_post_whose_lookup_fails_is_failed_not_blocked(ledger):
    from integration.gotransverse.errors import ServiceUnavailableError

    journal = _drafted(ledger)
    client = ledger.client()
    client.post_drafts_bulk(
        1, [journal.source_transaction_reference], id_type="SOURCE_TRANSACTION_REFERENCE"
    )  # posted; the answer was lost

    def ledger_down(ledger_id, reference):
        raise ServiceUnavailableError("down", status=503, code="UNAVAILABLE")

    client.find_transactions_by_reference = ledger_down

    report = journal_approve(journals=[journal], user=accountant(), client=client)

    # "Already posted" could not be checked: nobody knows, so the order is retried (with a
    # lookup first), never blocked as rejected while the ledger holds the posting.
    assert report.blocked == [] and len(report.failed) == 1
    order_sync = refreshed(journal).order_sync
    assert order_sync.state == OrderState.FAILED
    order_retry_now = order_retry(order_sync=order_sync)
    report = journals_post(client=ledger.client(), order_sync_ids=[order_retry_now.pk])
    assert report.found_in_ledger == 1
    journal = refreshed(journal)
    assert journal.status == Journal.Status.POSTED
    assert journal.order_sync.state == OrderState.POSTED


def test_an_approved_draft_deleted_in_the_ledger_can_be_rebuilt_as_a_new_revision(ledger):
    from ledger_sync.services.journals import order_build_journal, order_rebuild
    from tests.factories.journals import journal_world, order_with_items

    journal_world(journal_workflow="review")
    order_sync = OrderSync.objects.create(order=order_with_items(), state=OrderState.READY)
    journal = order_build_journal(order_sync=order_sync, actor="system:test")
    journals_post(client=ledger.client())
    journal = refreshed(journal)
    assert journal.status == Journal.Status.DRAFT
    reference = journal.source_transaction_reference
    client = ledger.client()
    # Approved (POSTING), the worker died; meanwhile someone deleted the draft in the ledger.
    OrderSync.objects.filter(pk=journal.order_sync_id).update(
        state=OrderState.POSTING, claimed_by="", claimed_at=None
    )
    client.delete_drafts_bulk(1, [reference], id_type="SOURCE_TRANSACTION_REFERENCE")

    report = journals_post(client=client)

    assert [p.order_sync_id for p in report.blocked] == [journal.order_sync_id]
    journal = refreshed(journal)
    assert journal.status == Journal.Status.REJECTED  # nothing of it is in the ledger
    order_sync = journal.order_sync
    assert order_sync.state == OrderState.BLOCKED
    assert order_sync.revision == 2
    assert order_sync.blocked_fix_url.endswith(f"/journal/{journal.pk}/change/")

    # The block says "rebuild": the rebuild must not refuse with "already in the ledger".
    rebuilt = order_rebuild(order_sync=order_sync, actor="accountant")

    order_sync.refresh_from_db()
    assert order_sync.state == OrderState.JOURNAL_BUILT
    assert rebuilt.revision == 2 and rebuilt.status == Journal.Status.BUILT
    assert rebuilt.source_transaction_reference != reference
    ledger.app.reset_calls()
    assert journals_post(client=ledger.client()).drafted == 1
    assert len(ledger.app.transactions_with_reference(rebuilt.source_transaction_reference)) == 1


def test_a_draft_the_ledger_refused_to_post_can_be_rejected_from_blocked(ledger):
    journal = _drafted(ledger)
    reference = journal.source_transaction_reference
    client = ledger.client()

    def refuse_per_transaction(ledger_id, ids, *, id_type):
        # The ledger answers the bulk post with a per-transaction refusal; nothing is booked.
        from integration.gotransverse.records import BulkOutcome, BulkTransactionResult

        return BulkOutcome(
            results=(
                BulkTransactionResult(
                    index=0,
                    requested=reference,
                    answered=True,
                    id=None,
                    source_transaction_reference=reference,
                    source_batch_reference=None,
                    target_batch_key=None,
                    code=400,
                    error_message="GL account 4001 is inactive",
                    entries=(),
                ),
            )
        )

    client.post_drafts_bulk = refuse_per_transaction
    user = accountant()
    journal_approve(journals=[journal], user=user, client=client)
    order_sync = refreshed(journal).order_sync
    assert order_sync.state == OrderState.BLOCKED
    assert order_sync.blocked_reason == BlockedReason.REMOTE_REJECTION
    assert refreshed(journal).status == Journal.Status.DRAFT  # still a draft in the ledger

    rejected = journal_reject(
        journal=refreshed(journal),
        user=user,
        reason="account closed",
        client=ledger.client(),
    )

    assert rejected.status == Journal.Status.REJECTED
    assert ledger.app.transactions_with_reference(reference) == []
    order_sync.refresh_from_db()
    assert order_sync.state == OrderState.BLOCKED
    assert order_sync.blocked_reason == BlockedReason.REJECTED_IN_REVIEW
    assert order_sync.revision == 2


def test_rejecting_checks_the_draft_is_really_gone_after_the_delete(ledger):
    journal = _drafted(ledger)
    client = ledger.client()
    client.delete_drafts_bulk = lambda ledger_id, ids, *, id_type: None  # 2xx, deleted nothing

    with pytest.raises(PostingError, match="still holds"):
        journal_reject(journal=journal, user=accountant(), reason="wrong", client=client)

    journal = refreshed(journal)
    assert journal.status == Journal.Status.DRAFT
    assert journal.order_sync.state == OrderState.AWAITING_REVIEW
    assert journal.order_sync.revision == 1


def test_a_review_journal_found_posted_on_resume_is_recorded_as_posted_not_as_a_draft(ledger):
    journal = built_journal(workflow=Journal.Workflow.REVIEW)
    client = ledger.client()
    # A worker created the draft and died before recording it; the draft was then posted in
    # the ledger itself. The order is still POSTING, its claim gone.
    client.create_transactions_bulk(1, [journal_transaction_input(journal)], auto_post=False)
    client.post_drafts_bulk(
        1, [journal.source_transaction_reference], id_type="SOURCE_TRANSACTION_REFERENCE"
    )
    OrderSync.objects.filter(pk=journal.order_sync_id).update(state=OrderState.POSTING)
    ledger.app.reset_calls()

    report = journals_post(client=client)

    assert report.found_in_ledger == 1 and report.sent == 0 and report.drafted == 0
    assert ledger.bulk_creates() == []
    journal = refreshed(journal)
    assert journal.status == Journal.Status.POSTED and journal.posted_at is not None
    assert journal.order_sync.state == OrderState.POSTED
    assert WriteBackStep.objects.filter(order_sync_id=journal.order_sync_id).count() == 2


@pytest.mark.parametrize("change", ["item_back_under_review", "total_changed"])
def test_an_order_whose_journal_may_be_in_the_ledger_is_not_parked_waiting_or_blocked(
    ledger, change
):
    from integration.gotransverse.errors import ServiceUnavailableError
    from ledger_sync.models import OrderItem
    from ledger_sync.services.journals import order_build_journal, order_rebuild, orders_build_ready
    from ledger_sync.services.order_selection import orders_select_candidates
    from tests.factories.journals import journal_world, order_with_items

    journal_world(journal_workflow="auto")
    order = order_with_items()
    order_sync = OrderSync.objects.create(order=order, state=OrderState.READY)
    journal = order_build_journal(order_sync=order_sync, actor="system:test")
    client = ledger.client()
    real_create = client.create_transactions_bulk

    def booked_then_503(ledger_id, transactions, *, auto_post):
        real_create(ledger_id, transactions, auto_post=auto_post)
        error = ServiceUnavailableError("proxy 503 after commit", status=503, code="UNAVAILABLE")
        error.outcome_unknown = True
        raise error

    client.create_transactions_bulk = booked_then_503
    journals_post(client=client)
    assert refreshed(journal).order_sync.state == OrderState.FAILED
    # An accountant presses "rebuild"; the journal is kept (it may be in the ledger).
    order_rebuild(order_sync=refreshed(journal).order_sync, actor="accountant")
    assert refreshed(journal).order_sync.state == OrderState.JOURNAL_BUILT
    # Then ATLAS changes the order: an item back under review, or a total that disagrees.
    if change == "item_back_under_review":
        OrderItem.objects.filter(order=order).update(status=OrderItem.Status.EDITED)
    else:
        type(order).objects.filter(pk=order.pk).update(total_amount=order.total_amount + 1)

    orders_select_candidates()
    orders_build_ready()  # the cycle's next stage re-plans it with the item under review

    order_sync = refreshed(journal).order_sync
    assert order_sync.state == OrderState.JOURNAL_BUILT  # not parked as WAITING or BLOCKED
    ledger.app.reset_calls()
    report = journals_post(client=ledger.client())
    assert report.found_in_ledger == 1 and ledger.bulk_creates() == []
    assert refreshed(journal).status == Journal.Status.POSTED
    assert len(ledger.app.transactions_with_reference(journal.source_transaction_reference)) == 1


def test_an_answer_with_neither_id_nor_error_is_looked_up_not_blocked_as_rejected(ledger):
    import dataclasses

    journal = built_journal()
    client = ledger.client()
    real_create = client.create_transactions_bulk

    def booked_but_answered_blank(ledger_id, transactions, *, auto_post):
        outcome = real_create(ledger_id, transactions, auto_post=auto_post)
        return dataclasses.replace(
            outcome,
            results=tuple(
                dataclasses.replace(r, id=None, code=None, error_message=None, raw={})
                for r in outcome.results
            ),
        )

    client.create_transactions_bulk = booked_but_answered_blank

    report = journals_post(client=client)

    assert report.blocked == [] and len(report.failed) == 1
    order_sync = refreshed(journal).order_sync
    assert order_sync.state == OrderState.FAILED
    order_retry(order_sync=order_sync)
    ledger.app.reset_calls()
    report = journals_post(client=ledger.client())
    assert report.found_in_ledger == 1 and ledger.bulk_creates() == []
    assert refreshed(journal).status == Journal.Status.POSTED
    assert len(ledger.app.transactions_with_reference(journal.source_transaction_reference)) == 1


def test_a_draft_posted_in_the_ledger_between_the_two_lookups_is_not_sent_again(ledger):
    from integration.gotransverse.errors import ServiceUnavailableError

    journal = built_journal(workflow=Journal.Workflow.REVIEW)
    reference = journal.source_transaction_reference
    client = ledger.client()
    real_create = client.create_transactions_bulk

    def drafted_then_503(ledger_id, transactions, *, auto_post):
        real_create(ledger_id, transactions, auto_post=auto_post)
        error = ServiceUnavailableError("proxy 503 after commit", status=503, code="UNAVAILABLE")
        error.outcome_unknown = True
        raise error

    client.create_transactions_bulk = drafted_then_503
    journals_post(client=client)  # the draft exists; we do not know it (FAILED)
    order_sync = order_retry(order_sync=refreshed(journal).order_sync)

    retry_client = ledger.client()
    real_find_posted = retry_client.find_transactions_by_reference

    def posted_right_after_asking(ledger_id, ref):
        found = real_find_posted(ledger_id, ref)
        # Meanwhile, someone posts the draft in the AR Ledger itself.
        ledger.client().post_drafts_bulk(1, [ref], id_type="SOURCE_TRANSACTION_REFERENCE")
        return found

    retry_client.find_transactions_by_reference = posted_right_after_asking

    journals_post(client=retry_client, order_sync_ids=[order_sync.pk])

    assert len(ledger.app.transactions_with_reference(reference)) == 1
    journal_approve(journals=[refreshed(journal)], user=accountant(), client=ledger.client())
    assert len(ledger.app.transactions_with_reference(reference)) == 1
    journal = refreshed(journal)
    assert journal.status == Journal.Status.POSTED
    assert journal.order_sync.state == OrderState.POSTED


def test_a_reversal_whose_answer_was_lost_is_looked_up_not_posted_twice(ledger):
    from integration.gotransverse.errors import GotransverseTimeoutError

    journal = built_journal()
    journals_post(client=ledger.client())
    user = accountant()
    client = ledger.client()
    real_create = client.create_transactions_bulk

    def booked_then_timeout(ledger_id, transactions, *, auto_post):
        real_create(ledger_id, transactions, auto_post=auto_post)
        raise GotransverseTimeoutError("no answer", code="TIMEOUT", outcome_unknown=True)

    client.create_transactions_bulk = booked_then_timeout
    with pytest.raises(GotransverseTimeoutError):
        journal_reverse(journal=refreshed(journal), user=user, reason="wrong", client=client)
    assert refreshed(journal).status == Journal.Status.POSTED  # not recorded yet
    ledger.app.reset_calls()

    reversal = journal_reverse(
        journal=refreshed(journal), user=user, reason="wrong", client=ledger.client()
    )

    assert ledger.bulk_creates() == []
    assert len(ledger.app.transactions_with_reference(reversal.source_transaction_reference)) == 1
    assert reversal.status == Journal.Status.POSTED
    original = refreshed(journal)
    assert original.status == Journal.Status.REVERSED
    assert original.order_sync.state == OrderState.READY and original.order_sync.revision == 2
    assert Journal.objects.filter(kind=Journal.Kind.REVERSAL).count() == 1


def test_a_retry_a_person_asks_for_is_in_the_history_and_skips_the_backoff():
    journal = built_journal()
    OrderSync.objects.filter(pk=journal.order_sync_id).update(
        state=OrderState.FAILED, attempts=2, next_attempt_at=timezone.now() + timedelta(hours=1)
    )
    person = accountant()
    asked_at = timezone.now().replace(microsecond=0)

    with time_machine.travel(asked_at, tick=False):
        order_sync = order_retry(order_sync=refreshed(journal).order_sync, user=person)

    assert (order_sync.state, order_sync.next_attempt_at) == (OrderState.FAILED, None)
    note = OrderTransition.objects.get(order_sync=order_sync)
    assert (note.from_state, note.to_state) == (OrderState.FAILED, OrderState.FAILED)
    assert (note.actor, note.user, note.at) == (person.username, person, asked_at)
    assert "retry requested" in note.note


def test_a_retry_without_a_person_is_recorded_under_the_system_actor():
    journal = built_journal()
    OrderSync.objects.filter(pk=journal.order_sync_id).update(state=OrderState.FAILED)

    order_retry(order_sync=refreshed(journal).order_sync, actor="system:retry_order_task")

    note = OrderTransition.objects.get(order_sync_id=journal.order_sync_id)
    assert (note.actor, note.user) == ("system:retry_order_task", None)


def test_a_retry_of_an_order_no_longer_failed_changes_and_records_nothing():
    journal = built_journal()
    order_sync = refreshed(journal).order_sync
    assert order_sync.state == OrderState.JOURNAL_BUILT

    order_retry(order_sync=order_sync, user=accountant())

    assert refreshed(journal).order_sync.state == OrderState.JOURNAL_BUILT
    assert not OrderTransition.objects.filter(order_sync=order_sync).exists()
