"""The Gotransverse reference-data mirror against the AR Ledger sandbox over real HTTP."""

import io
import re
import threading
from datetime import date, timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from integration.gotransverse.client import GotransverseClient
from ledger_sync.models import (
    AccountingPeriod,
    AccountingYear,
    GLAccount,
    Ledger,
    RecordChange,
    SyncRun,
    SyncState,
)
from ledger_sync.selectors.reference import gl_account_check, period_landing
from ledger_sync.services.gotransverse_mirror import (
    GotransverseMirrorAlreadyRunning,
    gotransverse_mirror_run,
)
from ledger_sync.services.mirror_records import GOTRANSVERSE_ENTITIES as ENTITIES
from ledger_sync.tasks import sync_gotransverse_task

pytestmark = pytest.mark.django_db

SEEDED = {"Ledger": 1, "AccountingYear": 2, "AccountingPeriod": 24, "GLAccount": 16}
NO_SLEEP = []


def _client(sandbox, **options):
    options.setdefault("max_retries", 2)
    # Retries wait through this list instead of really sleeping.
    return GotransverseClient(
        base_url=sandbox.url, api_key=sandbox.api_key, sleep=NO_SLEEP.append, **options
    )


def _mirror(sandbox, **options):
    return gotransverse_mirror_run(
        client=_client(sandbox, **options), ledger_id=sandbox.ledger_id, trigger="command"
    )


def _account(sandbox, number):
    return next(a for a in sandbox.app.accounts if a.number == number)


def _counts(run, outcome):
    return {entity: counts[outcome] for entity, counts in run.counts.items()}


def test_first_pass_creates_ledger_calendar_and_chart(gotransverse_sandbox):
    run = _mirror(gotransverse_sandbox)

    assert run.status == SyncRun.Status.SUCCEEDED, list(run.errors.values_list("message"))
    assert run.system == "gotransverse"
    assert _counts(run, "created") == SEEDED
    assert _counts(run, "failed") == dict.fromkeys(SEEDED, 0)
    assert _counts(run, "missing") == dict.fromkeys(SEEDED, 0)
    assert run.api_calls == len(gotransverse_sandbox.app.calls) == 2
    ledger = Ledger.objects.get()
    assert (
        ledger.gotransverse_id,
        ledger.conversion_currency,
        ledger.convert_currency,
        ledger.status,
        ledger.create_zero_amount_entries,
        ledger.chart_of_account_id,
    ) == (1, "EUR", "NONE", "ACTIVE", False, 1)
    assert "calendar" not in ledger.raw  # mirrored as years and periods of their own
    assert list(AccountingYear.objects.values_list("name", "start_date", "end_date")) == [
        ("FY2025", date(2025, 1, 1), date(2025, 12, 31)),
        ("FY2026", date(2026, 1, 1), date(2026, 12, 31)),
    ]
    receivables = GLAccount.objects.get(number="1200")
    assert (receivables.type, receivables.designation, receivables.is_posting_account) == (
        "ASSET",
        "ACCOUNTS_RECEIVABLE",
        True,
    )
    assert GLAccount.objects.get(number="4000").is_posting_account is False
    assert receivables.raw["tract_id"] == receivables.gotransverse_id + 90000


def test_open_and_closed_periods_are_mirrored(gotransverse_sandbox):
    _mirror(gotransverse_sandbox)

    closed = AccountingPeriod.objects.filter(is_open=False)
    assert closed.count() == 14
    assert set(closed.values_list("status", flat=True)) == {"CLOSED"}
    february = AccountingPeriod.objects.get(start_date=date(2026, 2, 1))
    march = AccountingPeriod.objects.get(start_date=date(2026, 3, 1))
    assert (february.name, february.is_open, february.end_date) == (
        "February 2026",
        False,
        date(2026, 2, 28),
    )
    assert (march.is_open, march.status, march.year.name, march.ledger.gotransverse_id) == (
        True,
        "OPEN",
        "FY2026",
        1,
    )
    landing = period_landing(ledger=march.ledger, on=date(2025, 7, 14))
    assert (landing.period.name, landing.landing, landing.rolled_forward) == (
        "July 2025",
        march,
        True,
    )


def test_every_page_of_accounts_is_read(gotransverse_sandbox):
    run = _mirror(gotransverse_sandbox, page_size=5)

    pages = [c.query for c in gotransverse_sandbox.app.calls_to("/accounts")]
    assert [(p["page_number"], p["page_size"]) for p in pages] == [
        ("1", "5"),
        ("2", "5"),
        ("3", "5"),
        ("4", "5"),
    ]
    assert {p["chart_of_account"] for p in pages} == {"1"}  # the ledger's own chart
    assert run.counts["GLAccount"]["created"] == 16
    assert GLAccount.objects.count() == 16


def test_second_pass_writes_nothing(gotransverse_sandbox):
    _mirror(gotransverse_sandbox)
    mirrored_tables = {
        model._meta.db_table for model in (Ledger, AccountingYear, AccountingPeriod, GLAccount)
    } | {RecordChange._meta.db_table}

    with CaptureQueriesContext(connection) as queries:
        run = _mirror(gotransverse_sandbox)

    writes = [
        q["sql"]
        for q in queries.captured_queries
        if q["sql"].lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))
        and any(table in q["sql"] for table in mirrored_tables)
    ]
    # Only "still there": last_seen_at, one UPDATE per model, no content and no history.
    assert len(writes) == 4
    assert all(re.match(r'UPDATE "\w+" SET "last_seen_at" = [^,]+ WHERE', sql) for sql in writes)
    assert run.status == SyncRun.Status.SUCCEEDED
    assert _counts(run, "unchanged") == SEEDED
    assert _counts(run, "created") == _counts(run, "updated") == dict.fromkeys(SEEDED, 0)
    assert not RecordChange.objects.exists()


def test_changed_account_is_updated_with_history(gotransverse_sandbox):
    first = _mirror(gotransverse_sandbox)
    _account(gotransverse_sandbox, "6000").name = "Broker fees"
    _account(gotransverse_sandbox, "6000").status = "INACTIVE"

    run = _mirror(gotransverse_sandbox)

    assert run.counts["GLAccount"] == {
        "created": 0,
        "updated": 1,
        "unchanged": 15,
        "failed": 0,
        "missing": 0,
    }
    account = GLAccount.objects.get(number="6000")
    assert (account.name, account.status, account.is_active) == ("Broker fees", "INACTIVE", False)
    assert account.last_changed_at > account.first_seen_at
    change = RecordChange.objects.get()
    assert (change.system, change.entity, change.remote_id, change.sync_run) == (
        "gotransverse",
        "GLAccount",
        str(account.gotransverse_id),
        run,
    )
    assert change.changes == {
        "name": ["Broker fees and commissions", "Broker fees"],
        "status": ["ACTIVE", "INACTIVE"],
    }
    assert first.pk != run.pk


def test_closing_a_period_is_mirrored_with_history(gotransverse_sandbox):
    _mirror(gotransverse_sandbox)
    march = AccountingPeriod.objects.get(start_date=date(2026, 3, 1))
    gotransverse_sandbox.app.set_period_open(march.gotransverse_id, False)

    run = _mirror(gotransverse_sandbox)

    march.refresh_from_db()
    assert (march.is_open, march.status) == (False, "CLOSED")
    assert run.counts["AccountingPeriod"]["updated"] == 1
    assert RecordChange.objects.get(entity="AccountingPeriod").changes == {"open": [True, False]}
    landing = period_landing(ledger=march.ledger, on=date(2026, 1, 10))
    assert landing.landing.name == "April 2026"


def test_vanished_account_is_marked_missing_then_restored(gotransverse_sandbox):
    _mirror(gotransverse_sandbox)
    broker_fees = _account(gotransverse_sandbox, "6000")
    gotransverse_sandbox.app.accounts.remove(broker_fees)

    gone = _mirror(gotransverse_sandbox)

    account = GLAccount.objects.get(number="6000")
    assert account.sync_state == SyncState.MISSING
    assert f"sync run {gone.pk}" in account.sync_error
    assert gone.counts["GLAccount"]["missing"] == 1
    assert gone.status == SyncRun.Status.SUCCEEDED
    assert RecordChange.objects.get().changes == {"sync_state": ["synced", "missing"]}
    assert "no longer in the Gotransverse chart" in gl_account_check("6000")[1]

    gotransverse_sandbox.app.accounts.append(broker_fees)
    back = _mirror(gotransverse_sandbox)

    account.refresh_from_db()
    assert account.sync_state == SyncState.SYNCED
    assert back.counts["GLAccount"]["updated"] == 1
    assert gl_account_check("6000") == (account, None)


def test_number_of_a_deleted_account_can_be_reused(gotransverse_sandbox):
    _mirror(gotransverse_sandbox)
    old = _account(gotransverse_sandbox, "6000")
    gotransverse_sandbox.app.accounts.remove(old)
    replacement = type(old)(**{**vars(old), "id": 99, "name": "Commissions"})
    gotransverse_sandbox.app.accounts.append(replacement)

    run = _mirror(gotransverse_sandbox)

    assert run.status == SyncRun.Status.SUCCEEDED, list(run.errors.values_list("message"))
    assert sorted(
        GLAccount.objects.filter(number="6000").values_list("gotransverse_id", "sync_state")
    ) == [(old.id, "missing"), (99, "synced")]
    assert gl_account_check("6000")[0].name == "Commissions"


def test_bad_account_fails_alone(gotransverse_sandbox):
    _account(gotransverse_sandbox, "1400").is_posting_account = None

    run = _mirror(gotransverse_sandbox)

    assert run.status == SyncRun.Status.COMPLETED_WITH_ERRORS
    assert run.counts["GLAccount"]["created"] == 15
    assert run.counts["GLAccount"]["failed"] == 1
    error = run.errors.get()
    assert (error.entity, error.field) == ("GLAccount", "is_posting_account")
    assert "is missing" in error.message
    assert '"number":"1400"' in error.raw_json.replace(" ", "")
    assert not GLAccount.objects.filter(number="1400").exists()
    assert Ledger.objects.count() == 1
    assert AccountingPeriod.objects.count() == 24


def test_bad_account_already_mirrored_turns_invalid_then_recovers(gotransverse_sandbox):
    _mirror(gotransverse_sandbox)
    _account(gotransverse_sandbox, "1400").is_posting_account = None

    run = _mirror(gotransverse_sandbox)

    assert run.counts["GLAccount"]["failed"] == 1
    assert run.counts["GLAccount"]["missing"] == 0
    account = GLAccount.objects.get(number="1400")
    assert account.sync_state == SyncState.INVALID
    assert account.is_posting_account is True  # the last good values are kept
    assert "is_posting_account" in account.sync_error
    assert RecordChange.objects.get().changes == {"sync_state": ["synced", "invalid"]}
    problem = gl_account_check("1400")[1]
    assert problem.startswith("GL account 1400 could not be read from Gotransverse")

    _account(gotransverse_sandbox, "1400").is_posting_account = True
    again = _mirror(gotransverse_sandbox)

    account.refresh_from_db()
    assert (account.sync_state, account.sync_error) == (SyncState.SYNCED, "")
    assert again.counts["GLAccount"]["updated"] == 1
    assert gl_account_check("1400") == (account, None)


class _RawLedgerClient(GotransverseClient):
    """The client with the unparsed ledger read the mirror prefers (see _fetch_ledger_raw)."""

    def get_ledger_raw(self, ledger_id):
        return self._call("GET", f"/ledgers/{ledger_id}").body


def test_bad_period_fails_alone_when_the_client_gives_the_raw_ledger(gotransverse_sandbox):
    sandbox = gotransverse_sandbox
    _mirror(sandbox)
    sandbox.app.period(203).open = None  # March 2026
    sandbox.app.set_period_open(204, False)  # April 2026
    client = _RawLedgerClient(base_url=sandbox.url, api_key=sandbox.api_key, sleep=NO_SLEEP.append)

    run = gotransverse_mirror_run(client=client, ledger_id=1, trigger="command")

    assert run.status == SyncRun.Status.COMPLETED_WITH_ERRORS
    assert run.counts["AccountingPeriod"] == {
        "created": 0,
        "updated": 1,
        "unchanged": 22,
        "failed": 1,
        "missing": 0,
    }
    error = run.errors.get()
    assert (error.entity, error.remote_id, error.field) == ("AccountingPeriod", "203", "open")
    assert AccountingPeriod.objects.get(gotransverse_id=204).is_open is False
    # The unreadable period keeps its last known values; it is INVALID, not MISSING.
    march = AccountingPeriod.objects.get(gotransverse_id=203)
    assert (march.sync_state, march.is_open) == (SyncState.INVALID, True)
    landing = period_landing(ledger=march.ledger, on=date(2026, 3, 5))
    assert landing.landing is None
    assert "March 2026 could not be read from Gotransverse" in landing.problem
    assert period_landing(ledger=march.ledger, on=date(2026, 5, 5)).landing.name == "May 2026"


def test_bad_period_through_the_parsing_client_fails_the_run_naming_it(gotransverse_sandbox):
    gotransverse_sandbox.app.period(203).open = None

    run = _mirror(gotransverse_sandbox)

    assert run.status == SyncRun.Status.FAILED
    assert "AccountingPeriod 203: field 'open' is missing" in run.error_message


def test_ledger_down_fails_the_run_with_the_reason(gotransverse_sandbox):
    gotransverse_sandbox.faults.update(error_rate=1.0)

    run = _mirror(gotransverse_sandbox, max_retries=2)

    assert run.status == SyncRun.Status.FAILED
    assert "GET /ledgers/1" in run.error_message
    assert "HTTP 503" in run.error_message
    assert run.api_calls == 3  # the first try and two retries
    assert run.finished_at is not None
    assert not Ledger.objects.exists()
    assert not GLAccount.objects.exists()


def test_failed_pass_marks_nothing_missing(gotransverse_sandbox):
    _mirror(gotransverse_sandbox)
    gotransverse_sandbox.server.stop()

    run = _mirror(gotransverse_sandbox, max_retries=0)

    assert run.status == SyncRun.Status.FAILED
    assert "connection failed" in run.error_message
    assert not GLAccount.objects.filter(sync_state=SyncState.MISSING).exists()
    assert not AccountingPeriod.objects.filter(sync_state=SyncState.MISSING).exists()


def test_unknown_ledger_fails_the_run(gotransverse_sandbox):
    run = gotransverse_mirror_run(
        client=_client(gotransverse_sandbox), ledger_id=2, trigger="command"
    )

    assert run.status == SyncRun.Status.FAILED
    assert "HTTP 404" in run.error_message
    assert "AR Ledger 2 not found" in run.error_message


def test_progress_reports_each_entity_up_to_its_total(gotransverse_sandbox):
    seen = []

    gotransverse_mirror_run(
        client=_client(gotransverse_sandbox),
        ledger_id=1,
        trigger="command",
        progress=lambda stage, done, total: seen.append((stage, done, total)),
    )

    last = {stage: (done, total) for stage, done, total in seen}
    assert last == {
        "Ledger": (1, 1),
        "AccountingYear": (2, 2),
        "AccountingPeriod": (24, 24),
        "GLAccount": (16, 16),
    }


def test_terminal_progress_draws_a_bar_per_entity():
    from ledger_sync.management.progress import TerminalProgress

    stream = io.StringIO()
    progress = TerminalProgress(stream, label_width=16)
    progress("GLAccount", 8, 16)
    progress("GLAccount", 16, 16)
    progress.close()

    assert "GLAccount" in stream.getvalue()
    assert "16/16" in stream.getvalue()


def test_command_prints_a_summary(gotransverse_sandbox, capsys):
    call_command("sync_gotransverse", "--no-progress")

    out = capsys.readouterr().out
    assert "Gotransverse reference data, ledger 1: Succeeded" in out
    assert "GLAccount" in out and "16 created" in out
    assert "AccountingPeriod" in out and "24 created" in out
    run = SyncRun.objects.get()
    assert (run.trigger, run.status) == ("command", "succeeded")


def test_command_exits_1_when_the_ledger_is_down(gotransverse_sandbox, settings, capsys):
    settings.GOTRANSVERSE_MAX_RETRIES = 0
    gotransverse_sandbox.faults.update(error_rate=1.0)

    with pytest.raises(CommandError) as failure:
        call_command("sync_gotransverse", "--no-progress")

    assert failure.value.returncode == 1
    assert "failed" in str(failure.value)
    assert "HTTP 503" in capsys.readouterr().out


def test_command_exits_1_when_a_record_failed(gotransverse_sandbox, capsys):
    _account(gotransverse_sandbox, "1400").is_posting_account = None

    with pytest.raises(CommandError) as failure:
        call_command("sync_gotransverse", "--no-progress")

    assert failure.value.returncode == 1
    assert "1 record(s) failed" in str(failure.value)
    assert "GLAccount 3: field 'is_posting_account'" in capsys.readouterr().out


def test_task_runs_one_pass_for_the_configured_ledger(gotransverse_sandbox):
    run_id = sync_gotransverse_task()

    run = SyncRun.objects.get(pk=run_id)
    assert (run.system, run.trigger, run.status) == ("gotransverse", "schedule", "succeeded")
    assert Ledger.objects.get().gotransverse_id == 1


# --- one pass at a time ------------------------------------------------------------------------


def _running_pass(**fields) -> SyncRun:
    fields.setdefault("started_at", timezone.now())
    fields.setdefault("system", SyncRun.System.GOTRANSVERSE)
    return SyncRun.objects.create(
        trigger="schedule", counts={entity: {"created": 0} for entity in ENTITIES}, **fields
    )


def test_a_running_pass_announces_itself_as_a_full_pass(gotransverse_sandbox):
    counts_while_running: list[dict] = []

    def progress(stage, done, total):
        if not counts_while_running:
            counts_while_running.append(SyncRun.objects.get().counts)

    gotransverse_mirror_run(
        client=_client(gotransverse_sandbox),
        ledger_id=gotransverse_sandbox.ledger_id,
        trigger="command",
        progress=progress,
    )

    assert set(counts_while_running[0]) == set(ENTITIES)


def test_a_second_concurrent_pass_is_skipped_and_does_nothing(gotransverse_sandbox):
    running = _running_pass()
    gotransverse_sandbox.app.reset_calls()

    with pytest.raises(GotransverseMirrorAlreadyRunning, match=f"run {running.pk}") as skipped:
        _mirror(gotransverse_sandbox)

    assert "this one was skipped" in skipped.value.message
    assert skipped.value.details["running_run_id"] == running.pk
    assert list(gotransverse_sandbox.app.calls) == []
    assert list(SyncRun.objects.values_list("pk", "status")) == [(running.pk, "running")]
    assert not Ledger.objects.exists()


def test_a_running_atlas_pass_does_not_block_the_gotransverse_pass(gotransverse_sandbox):
    _running_pass(system=SyncRun.System.ATLAS)

    assert _mirror(gotransverse_sandbox).status == SyncRun.Status.SUCCEEDED


def test_an_abandoned_running_pass_does_not_block_forever(gotransverse_sandbox, settings):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "timeout": 600}
    abandoned = _running_pass(started_at=timezone.now() - timedelta(seconds=601))
    recent = timezone.now() - timedelta(seconds=300)

    run = _mirror(gotransverse_sandbox)

    abandoned.refresh_from_db()
    assert abandoned.status == SyncRun.Status.FAILED
    assert "Abandoned" in abandoned.error_message
    assert run.status == SyncRun.Status.SUCCEEDED
    # Just inside the timeout it still blocks.
    _running_pass(started_at=recent)
    with pytest.raises(GotransverseMirrorAlreadyRunning):
        _mirror(gotransverse_sandbox)


def test_command_exits_1_with_the_message_when_a_pass_is_running(gotransverse_sandbox, capsys):
    running = _running_pass()

    with pytest.raises(CommandError) as failure:
        call_command("sync_gotransverse", "--no-progress")

    assert failure.value.returncode == 1
    assert f"already running (run {running.pk}" in str(failure.value)
    assert SyncRun.objects.count() == 1


def test_task_skips_and_returns_the_running_pass_when_one_is_running(gotransverse_sandbox):
    running = _running_pass()
    gotransverse_sandbox.app.reset_calls()

    assert sync_gotransverse_task() == running.pk
    assert list(gotransverse_sandbox.app.calls) == []
    assert SyncRun.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_passes_started_together_run_once(gotransverse_sandbox):
    if connection.vendor != "postgresql":
        pytest.skip("concurrent workers need PostgreSQL")
    barrier = threading.Barrier(2)
    outcomes: list[object] = []

    def one_pass() -> None:
        try:
            barrier.wait(timeout=10)
            outcomes.append(_mirror(gotransverse_sandbox).status)
        except GotransverseMirrorAlreadyRunning as skipped:
            outcomes.append(skipped)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=one_pass) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len(outcomes) == 2
    assert sum(isinstance(o, GotransverseMirrorAlreadyRunning) for o in outcomes) == 1
    assert SyncRun.Status.SUCCEEDED in outcomes
    assert SyncRun.objects.filter(system=SyncRun.System.GOTRANSVERSE).count() == 1
