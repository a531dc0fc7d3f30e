"""python manage.py run_cycle on both sandboxes: post every eligible order once, block the
broken ones with their reasons, and write nothing on a second run."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from ledger_sync.models import (
    BlockedReason,
    Journal,
    OrderState,
    OrderSync,
    WriteBackStep,
)

pytestmark = pytest.mark.django_db(transaction=True)

WRITE_METHODS = {"POST", "PUT", "DELETE"}


@pytest.fixture
def sandboxes(atlas_sandbox, gotransverse_sandbox, settings):
    settings.JOURNAL_WORKFLOW = "auto"
    settings.ATLAS_MAX_RETRIES = 0
    settings.GOTRANSVERSE_MAX_RETRIES = 0
    # Every counterparty carries its ERP code in ATLAS, so journals are built for all of them.
    for counterparty in atlas_sandbox.app.dataset.counterparties.values():
        counterparty["externalId"] = counterparty["externalId"] or f"CUST-{counterparty['id']:04d}"
    return atlas_sandbox, gotransverse_sandbox


def run_cycle() -> tuple[str, CommandError | None]:
    out = io.StringIO()
    try:
        call_command("run_cycle", stdout=out, stderr=io.StringIO())
    except CommandError as error:
        return out.getvalue(), error
    return out.getvalue(), None


def _ledger_writes(ledger) -> list:
    return [c for c in list(ledger.app.calls) if c.method in WRITE_METHODS]


def _atlas_writes(atlas) -> list:
    return [c for c in atlas.app.calls if c.path.endswith("/Post")]


def test_run_cycle_posts_every_eligible_order_once_and_blocks_the_broken_ones(sandboxes):
    atlas, ledger = sandboxes
    broken = atlas.app.dataset.broken

    output, error = run_cycle()

    assert error is not None and error.returncode == 1
    posted = Journal.objects.filter(status=Journal.Status.POSTED)
    assert posted.exists()
    for journal in posted:
        (stored,) = ledger.app.transactions_with_reference(journal.source_transaction_reference)
        assert stored.is_posted and str(stored.id) == journal.ledger_transaction_id
    assert len(ledger.app.transactions) == posted.count()
    # Every posted order got its erpCode and invoice in ATLAS.
    for order_sync in OrderSync.objects.filter(journals__status=Journal.Status.POSTED):
        assert order_sync.state == OrderState.INVOICED
        assert atlas.app.dataset.orders[order_sync.order.atlas_id]["erpCode"] == order_sync.erp_code
    assert not WriteBackStep.objects.exclude(status=WriteBackStep.Status.DONE).exists()

    expected = {
        broken["order_with_item_without_gl_account"][0]: BlockedReason.MISSING_GL_ACCOUNT,
        broken["order_total_mismatch"][0]: BlockedReason.TOTALS_DISAGREE,
        broken["order_with_atlas_only_gl_account"][0]: BlockedReason.UNKNOWN_GL_ACCOUNT,
        broken["order_with_non_posting_gl_account"][0]: BlockedReason.NON_POSTING_GL_ACCOUNT,
    }
    blocked = dict(
        OrderSync.objects.filter(state=OrderState.BLOCKED).values_list(
            "order__atlas_id", "blocked_reason"
        )
    )
    assert blocked == expected
    for atlas_id, reason in expected.items():
        assert f"order {atlas_id} " in output and f"blocked: {reason}]" in output
    assert "blocked" in output and "post" in output and "write_back" in output
    missing_due = broken["order_missing_due_date"][0]
    assert f"ATLAS mirror: Order {missing_due}: field 'dueDate' is missing" in output


def test_a_second_run_posts_nothing_and_writes_nothing(sandboxes):
    atlas, ledger = sandboxes
    run_cycle()
    transactions = len(ledger.app.transactions)
    invoices = len(atlas.app.dataset.invoices)
    ledger.app.reset_calls()
    atlas.app.reset_calls()

    output, _error = run_cycle()

    assert _ledger_writes(ledger) == []
    assert _atlas_writes(atlas) == []
    assert len(ledger.app.transactions) == transactions
    assert len(atlas.app.dataset.invoices) == invoices
    assert "posted=0" in output


def test_run_cycle_exits_0_when_nothing_is_blocked(sandboxes):
    atlas, _ledger = sandboxes
    dataset = atlas.app.dataset
    for name, ids in dataset.broken.items():
        if name.startswith("order"):
            dataset.orders[ids[0]]["status"] = "Draft order by ETRM"
    dataset.orders[dataset.broken["order_missing_due_date"][0]]["dueDate"] = "2026-04-15T00:00:00"

    output, error = run_cycle()

    assert error is None, output
    assert "nothing blocked or failed" in output
    assert OrderSync.objects.filter(state=OrderState.INVOICED).exists()


def test_a_crash_after_the_ledger_accepted_is_finished_by_the_next_run_without_reposting(
    sandboxes, monkeypatch
):
    from ledger_sync.services import posting

    atlas, ledger = sandboxes
    real_record = posting.journals_record_results
    crashes = []

    def crash_once(pairs, **kwargs):
        if not crashes:
            crashes.append(len(pairs))
            raise RuntimeError("worker killed between the ledger's answer and our record")
        return real_record(pairs, **kwargs)

    monkeypatch.setattr(posting, "journals_record_results", crash_once)
    with pytest.raises(RuntimeError):
        run_cycle()
    accepted = {t.source_transaction_reference for t in ledger.app.transactions}
    assert accepted and crashes == [len(accepted)]
    assert not Journal.objects.filter(status=Journal.Status.POSTED).exists()
    ledger.app.reset_calls()

    _output, _error = run_cycle()

    assert [c for c in ledger.app.calls if c.path.endswith("/accounting-transactions/bulk")] == []
    for reference in accepted:
        assert len(ledger.app.transactions_with_reference(reference)) == 1
    posted = Journal.objects.filter(status=Journal.Status.POSTED)
    assert {j.source_transaction_reference for j in posted} == accepted
    for journal in posted.select_related("order_sync__order"):
        order_sync = journal.order_sync
        assert order_sync.state == OrderState.INVOICED
        assert atlas.app.dataset.orders[order_sync.order.atlas_id]["erpCode"] == order_sync.erp_code


def test_a_reversed_journal_is_reposted_as_a_new_revision_by_the_next_cycle(sandboxes):
    from ledger_sync.services.journal_corrections import journal_reverse
    from tests.factories.parties import accountant

    atlas, ledger = sandboxes
    run_cycle()
    original = Journal.objects.filter(status=Journal.Status.POSTED).order_by("pk").first()
    order_sync = original.order_sync
    first_code = order_sync.erp_code
    invoices_before = len(atlas.app.dataset.invoices)

    journal_reverse(journal=original, user=accountant(), reason="Wrong delivery period")
    run_cycle()

    order_sync.refresh_from_db()
    references = [
        t.source_transaction_reference
        for t in ledger.app.transactions
        if (t.source_transaction_reference or "").startswith(
            original.source_transaction_reference.rsplit("-R", 1)[0] + "-R"
        )
    ]
    base = original.source_transaction_reference
    assert sorted(references) == sorted([base, base + "-REV", base[:-1] + "2"])
    repost = Journal.objects.get(order_sync=order_sync, revision=2, kind=Journal.Kind.POSTING)
    assert repost.status == Journal.Status.POSTED
    assert order_sync.state == OrderState.INVOICED
    assert order_sync.erp_code != first_code
    assert atlas.app.dataset.orders[order_sync.order.atlas_id]["erpCode"] == order_sync.erp_code
    assert len(atlas.app.dataset.invoices) == invoices_before  # the invoice is not issued again


def test_an_approved_code_whose_write_back_failed_goes_out_with_the_next_cycle(
    atlas_sandbox, gotransverse_sandbox, settings
):
    from ledger_sync.models import Counterparty, CounterpartyMapping, WriteBackState
    from tests.factories.parties import CounterpartyMappingFactory, ErpPartyFactory

    settings.ATLAS_MAX_RETRIES = 0
    run_cycle()
    counterparty = Counterparty.objects.filter(external_id__isnull=True).order_by("atlas_id")[0]
    mapping = CounterpartyMappingFactory(
        counterparty=counterparty,
        erp_party=ErpPartyFactory(code="BA-777001"),
        write_back_state=WriteBackState.FAILED,
    )
    atlas_sandbox.app.reset_calls()

    run_cycle()

    posts = atlas_sandbox.app.calls_to("/api/Counterparty/Post")
    assert [call.body for call in posts] == [
        {"data": [{**counterparty.raw, "externalId": "BA-777001"}]}
    ]
    assert atlas_sandbox.app.dataset.counterparties[counterparty.atlas_id]["externalId"] == (
        "BA-777001"
    )
    mapping.refresh_from_db()
    assert mapping.write_back_state == WriteBackState.WRITTEN
    assert CounterpartyMapping.objects.filter(write_back_state=WriteBackState.FAILED).count() == 0


def test_a_cycle_skips_the_gotransverse_pass_while_another_runs_and_goes_on(sandboxes):
    from django.utils import timezone

    from ledger_sync.models import SyncRun
    from ledger_sync.services.mirror_records import GOTRANSVERSE_ENTITIES as ENTITIES
    from ledger_sync.services.pipeline import cycle_run

    _, ledger = sandboxes
    running = SyncRun.objects.create(
        system=SyncRun.System.GOTRANSVERSE,
        trigger="schedule",
        started_at=timezone.now(),
        counts={entity: {"created": 0} for entity in ENTITIES},
    )

    report = cycle_run(trigger="command", actor="system:test")

    assert report.stages["gotransverse_mirror"] == {
        "skipped": report.stages["gotransverse_mirror"]["skipped"]
    }
    assert f"already running (run {running.pk}" in report.stages["gotransverse_mirror"]["skipped"]
    assert not any("Gotransverse mirror" in error for error in report.errors)
    assert list(
        SyncRun.objects.filter(system=SyncRun.System.GOTRANSVERSE).values_list("pk", flat=True)
    ) == [running.pk]
    # Every later stage still ran.
    assert {"selection", "build", "post", "write_back"} <= set(report.stages)
    assert ledger.app.calls_to(f"/ledgers/{ledger.ledger_id}") == []
    assert ledger.app.calls_to("/accounts") == []


def test_a_code_atlas_already_holds_otherwise_is_not_sent_again_each_cycle(sandboxes):
    """Approved while ATLAS had no externalId; someone then set another one in ATLAS. The
    cycle's mirror sees it, the write-back refuses to overwrite it without calling ATLAS, and
    later cycles leave it failed (shown in each report) without calling ATLAS either."""
    from ledger_sync.models import Counterparty, CounterpartyMapping, WriteBackState
    from ledger_sync.services.pipeline import cycle_run
    from tests.factories.parties import CounterpartyMappingFactory, ErpPartyFactory

    atlas, _ = sandboxes
    in_atlas = atlas.app.dataset.counterparties[min(atlas.app.dataset.counterparties)]
    in_atlas["externalId"] = None
    run_cycle()
    assert not CounterpartyMapping.objects.filter(counterparty__atlas_id=in_atlas["id"]).exists()
    CounterpartyMappingFactory(
        counterparty=Counterparty.objects.get(atlas_id=in_atlas["id"]),
        erp_party=ErpPartyFactory(code="BA-CONFLICT"),
    )
    in_atlas["externalId"] = "SET-IN-ATLAS"
    atlas.app.reset_calls()

    reports = [cycle_run(trigger="command", actor="system:test") for _ in range(3)]

    assert atlas.app.calls_to("/api/Counterparty/Post") == []
    assert in_atlas["externalId"] == "SET-IN-ATLAS"
    mapping = CounterpartyMapping.objects.get(erp_code="BA-CONFLICT")
    assert (mapping.write_back_state, mapping.write_back_attempts) == (WriteBackState.FAILED, 1)
    assert "already holds externalId 'SET-IN-ATLAS'" in mapping.last_error
    for report in reports:
        assert report.stages["counterparty_write_back"]["codes_failed"] == 1
        assert any("BA-CONFLICT" in error for error in report.errors)


def test_a_cycle_leaves_every_blocked_order_and_mirror_error_in_the_error_queue(sandboxes):
    from ledger_sync.models import Problem

    atlas, _ledger = sandboxes

    run_cycle()

    blocked = set(OrderSync.objects.filter(state=OrderState.BLOCKED).values_list("pk", flat=True))
    queued = set(
        Problem.objects.filter(
            kind=Problem.Kind.BLOCKED_ORDER, status=Problem.Status.OPEN
        ).values_list("key", flat=True)
    )
    assert blocked and queued == {f"order_sync:{pk}" for pk in blocked}
    missing_due = atlas.app.dataset.broken["order_missing_due_date"][0]
    assert Problem.objects.filter(
        kind=Problem.Kind.MIRROR_RECORD_ERROR, key__startswith=f"atlas:Order:{missing_due}:"
    ).exists()

    run_cycle()  # a repeat folds: no second row for anything

    assert Problem.objects.filter(kind=Problem.Kind.BLOCKED_ORDER).count() == len(blocked)
