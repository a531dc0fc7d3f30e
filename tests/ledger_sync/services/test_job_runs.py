"""Run now: the ATLAS mirror and the journal cycle queued from the back office, run by the
worker (django-q2 in-process here), their progress and result recorded; one at a time."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone
from django_q.models import Success

from ledger_sync.models import JobRun, Journal, OrderSync, SyncRun
from ledger_sync.services.job_runs import JobAlreadyRunning, job_run_execute, job_run_request
from ledger_sync.services.pipeline import STAGES
from ledger_sync.services.sync_runs import sync_run_start_exclusive
from ledger_sync.tasks import run_cycle_task
from tests.factories.parties import accountant

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def no_worker(monkeypatch):
    """Requests are recorded but never handed to a worker (as when none is running)."""
    monkeypatch.setattr("ledger_sync.services.job_runs._enqueue", lambda job_run_id: None)


@pytest.fixture
def sandboxes(atlas_sandbox, gotransverse_sandbox, settings):
    settings.JOURNAL_WORKFLOW = "auto"
    settings.ATLAS_MAX_RETRIES = 0
    settings.GOTRANSVERSE_MAX_RETRIES = 0
    return atlas_sandbox, gotransverse_sandbox


def test_a_requested_mirror_is_queued_then_run_by_the_worker_with_its_counts(sandboxes):
    atlas, _ledger = sandboxes
    user = accountant()

    job = job_run_request(kind=JobRun.Kind.ATLAS_MIRROR, user=user)

    # Transaction committed → enqueued → run in-process (Q_CLUSTER sync in tests).
    job.refresh_from_db()
    run = job.sync_run
    assert run.system == SyncRun.System.ATLAS and run.trigger == SyncRun.Trigger.ADMIN
    assert job.requested_by == user and job.trigger == JobRun.Trigger.ADMIN
    orders = job.result["counts"]["Order"]
    assert orders["created"] + orders["failed"] == len(atlas.app.dataset.orders)
    # The seeded book has a record ATLAS sends broken: a person must look at it.
    assert job.problems == run.total("failed") > 0
    assert job.status == JobRun.Status.NEEDS_ATTENTION
    assert job.progress["entity"] == "Payment"  # the last entity it reported on
    assert Success.objects.filter(func="ledger_sync.tasks.job_run_task").count() == 1


def test_the_journal_cycle_records_every_stage_and_the_orders_needing_a_person(sandboxes):
    job = job_run_request(kind=JobRun.Kind.JOURNAL_CYCLE, user=accountant())

    job.refresh_from_db()
    assert job.progress["stages_done"] == list(STAGES)
    assert set(job.result["stages"]) >= set(STAGES)
    assert (
        Journal.objects.filter(status=Journal.Status.POSTED).count()
        == job.result["stages"]["post"]["posted"]
    )
    blocked_or_failed = OrderSync.objects.filter(state__in=["blocked", "failed"]).count()
    assert job.problems >= blocked_or_failed > 0  # the seeded book has broken orders
    assert job.status == JobRun.Status.NEEDS_ATTENTION
    assert job.result["problems"][0]["message"]


def test_a_second_start_is_refused_while_one_is_queued(no_worker):
    user = accountant()
    first = job_run_request(kind=JobRun.Kind.JOURNAL_CYCLE, user=user)

    with pytest.raises(JobAlreadyRunning, match=rf"already queued \(run {first.pk}, started by"):
        job_run_request(kind=JobRun.Kind.JOURNAL_CYCLE, user=user)

    assert JobRun.objects.count() == 1
    # The other job is not blocked by this one.
    job_run_request(kind=JobRun.Kind.ATLAS_MIRROR, user=user)
    assert JobRun.objects.count() == 2


def test_a_mirror_start_is_refused_while_a_scheduled_mirror_pass_runs(no_worker):
    from ledger_sync.services.mirror_records import ATLAS_ENTITIES as ENTITIES

    running = sync_run_start_exclusive(
        system=SyncRun.System.ATLAS, trigger="schedule", entities=ENTITIES, what="A pass"
    ).run

    with pytest.raises(JobAlreadyRunning, match=f"sync run {running.pk}"):
        job_run_request(kind=JobRun.Kind.ATLAS_MIRROR, user=accountant())
    assert not JobRun.objects.exists()


def test_a_run_no_worker_took_stops_blocking_once_stale(settings, no_worker):
    user = accountant()
    stuck = job_run_request(kind=JobRun.Kind.JOURNAL_CYCLE, user=user)

    later = timezone.now() + timedelta(seconds=settings.Q_CLUSTER["retry"] + 1)
    with time_machine.travel(later):
        fresh = job_run_request(kind=JobRun.Kind.JOURNAL_CYCLE, user=user)

    stuck.refresh_from_db()
    assert stuck.status == JobRun.Status.FAILED
    assert "Abandoned" in stuck.error_message
    assert fresh.status == JobRun.Status.QUEUED


def test_a_second_delivery_of_the_task_does_nothing(sandboxes):
    job = job_run_request(kind=JobRun.Kind.ATLAS_MIRROR, user=accountant())
    job.refresh_from_db()
    runs = SyncRun.objects.count()

    again = job_run_execute(job_run_id=job.pk)

    assert again.status == job.status != JobRun.Status.QUEUED
    assert SyncRun.objects.count() == runs


def test_a_crash_is_recorded_on_the_run_and_the_task_fails(settings, monkeypatch):
    settings.ATLAS_MAX_RETRIES = 0
    settings.GOTRANSVERSE_MAX_RETRIES = 0

    def broken(**kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr("ledger_sync.services.job_runs.cycle_run", broken)

    # In tests django-q2 runs the task in-process and lets the error through.
    with pytest.raises(RuntimeError):
        job_run_request(kind=JobRun.Kind.JOURNAL_CYCLE, user=accountant())

    job = JobRun.objects.get()
    assert job.status == JobRun.Status.FAILED
    assert job.error_message == "RuntimeError: database went away"


def test_the_scheduled_cycle_is_recorded_as_a_run_too(sandboxes):
    result = run_cycle_task(trigger="schedule")

    job = JobRun.objects.get(pk=result["job_run"])
    assert job.trigger == JobRun.Trigger.SCHEDULE and job.requested_by is None
    assert job.finished_at is not None
    assert result["problems"] == job.problems
    assert result["stages"]["post"] == job.result["stages"]["post"]


def test_an_unknown_job_is_refused_by_name():
    with pytest.raises(Exception, match="Unknown job 'reconcile'"):
        job_run_request(kind="reconcile", user=accountant())
