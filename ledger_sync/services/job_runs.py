"""Run now: a person starts the ATLAS mirror or the journal cycle from the back office.

`job_run_request` records the request (a JobRun, queued) and enqueues it through django-q2
once the transaction commits; nothing runs in the request. `job_run_execute` is what the worker
runs: it claims the queued row, runs the existing service (the mirror pass or the whole cycle),
writes its progress to the row while it runs and its result at the end. A second start while
one of the same kind is queued or running is refused, naming the running one; the services
underneath keep their own "one pass at a time" guard as well (a scheduled pass, say).
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django_q.tasks import async_task

from ledger_sync.errors import ApplicationError
from ledger_sync.models import JobRun, SyncRun
from ledger_sync.services.atlas_mirror import AtlasMirrorAlreadyRunning, atlas_mirror_run
from ledger_sync.services.mirror_records import ATLAS_ENTITIES as ENTITIES
from ledger_sync.services.order_states import actor_for
from ledger_sync.services.pipeline import cycle_run
from ledger_sync.services.remote import atlas_client_from_settings

logger = logging.getLogger(__name__)

TASK = "ledger_sync.tasks.job_run_task"
# Progress is written at most this often during a pass (each write is one UPDATE).
PROGRESS_WRITE_SECONDS = 0.5
# What a run's problems list keeps (the cycle can report thousands of blocked orders).
PROBLEMS_KEPT = 50


class JobAlreadyRunning(ApplicationError):
    """A run of this kind is queued or running; nothing was started.

    details["running_job_run_id"] is its JobRun id (or None when it is a scheduled mirror pass,
    then details["running_sync_run_id"] is set)."""


def job_run_request(*, kind: str, user: Any) -> JobRun:
    """Queue a run of `kind` (JobRun.Kind) for `user`, unless one is queued or running."""
    if kind not in JobRun.Kind.values:
        raise ApplicationError(
            f"Unknown job {kind!r}; use one of {', '.join(JobRun.Kind.values)}.",
            details={"kind": kind},
        )
    with transaction.atomic():
        _lock(kind)
        _abandon_stale(kind)
        running = JobRun.objects.filter(kind=kind, status__in=JobRun.ACTIVE).first()
        if running is not None:
            who = running.requested_by.get_username() if running.requested_by else "the schedule"
            raise JobAlreadyRunning(
                f"The {running.get_kind_display().lower()} is already "
                f"{running.get_status_display().split(',')[0].lower()} (run {running.pk}, "
                f"started by {who} at {running.requested_at:%H:%M:%S} UTC); wait for it to "
                "finish before starting another.",
                details={"running_job_run_id": running.pk, "kind": kind},
            )
        if kind == JobRun.Kind.ATLAS_MIRROR:
            _refuse_while_mirror_pass_runs()
        job = JobRun.objects.create(
            kind=kind,
            trigger=JobRun.Trigger.ADMIN,
            requested_by=user if getattr(user, "is_authenticated", False) else None,
            requested_at=timezone.now(),
        )
        transaction.on_commit(lambda: _enqueue(job.pk))
    logger.info("job_run.requested", extra={"job_run": job.pk, "kind": kind})
    return job


def job_run_execute(*, job_run_id: int) -> JobRun:
    """Run a queued JobRun to its end (the worker's side); returns it finished.

    Idempotent: a second delivery of the same task finds the row no longer queued and returns
    it untouched. A failure of the run itself is recorded on the row, then raised, so that the
    task is listed under Failed tasks as well."""
    claimed = JobRun.objects.filter(pk=job_run_id, status=JobRun.Status.QUEUED).update(
        status=JobRun.Status.RUNNING, started_at=timezone.now()
    )
    job = JobRun.objects.select_related("requested_by").get(pk=job_run_id)
    if not claimed:
        logger.info("job_run.not_queued", extra={"job_run": job.pk, "status": job.status})
        return job
    try:
        if job.kind == JobRun.Kind.ATLAS_MIRROR:
            _run_mirror(job)
        else:
            _run_cycle(job)
    except Exception as exc:
        _finish(job, status=JobRun.Status.FAILED, error=f"{type(exc).__name__}: {exc}")
        raise
    return job


def journal_cycle_scheduled(*, trigger: str = "schedule") -> JobRun:
    """The scheduled journal cycle, recorded as a JobRun like a "Run now" one (so the dashboard
    shows its result). Runs in the calling worker; never refused: every stage is safe to run
    next to another."""
    job = JobRun.objects.create(
        kind=JobRun.Kind.JOURNAL_CYCLE,
        trigger=JobRun.Trigger.SCHEDULE if trigger == "schedule" else JobRun.Trigger.ADMIN,
        requested_at=timezone.now(),
        started_at=timezone.now(),
        status=JobRun.Status.RUNNING,
    )
    try:
        _run_cycle(job, trigger=trigger)
    except Exception as exc:
        _finish(job, status=JobRun.Status.FAILED, error=f"{type(exc).__name__}: {exc}")
        raise
    return job


# --- running ------------------------------------------------------------------------------------


class _Progress:
    """Writes a running job's progress to its row, at most every PROGRESS_WRITE_SECONDS."""

    def __init__(self, job: JobRun):
        self.job = job
        self.state: dict[str, Any] = {"stages_done": []}
        self._written = 0.0

    def stage(self, name: str) -> None:
        self.state["stages_done"] = [*self.state["stages_done"], name]
        self.state.pop("entity", None)
        self._write(force=True)

    def entity(self, entity: str, done: int, total: int | None) -> None:
        self.state.update(entity=entity, done=done, total=total)
        self._write(force=done == 0)

    def _write(self, *, force: bool) -> None:
        now = time.monotonic()
        if not force and now - self._written < PROGRESS_WRITE_SECONDS:
            return
        self._written = now
        self.job.progress = dict(self.state)
        JobRun.objects.filter(pk=self.job.pk).update(progress=self.job.progress)


def _run_mirror(job: JobRun) -> None:
    progress = _Progress(job)
    try:
        run = atlas_mirror_run(
            client=atlas_client_from_settings(),
            trigger=SyncRun.Trigger.ADMIN,
            user=job.requested_by,
            progress=progress.entity,
        )
    except AtlasMirrorAlreadyRunning as skipped:
        # A scheduled pass began between the request and now: it does the same work.
        _finish(job, status=JobRun.Status.FAILED, error=skipped.message)
        return
    job.sync_run = run
    failed = run.total("failed")
    if run.status == SyncRun.Status.FAILED:
        status = JobRun.Status.FAILED
    elif failed or run.status == SyncRun.Status.COMPLETED_WITH_ERRORS:
        status = JobRun.Status.NEEDS_ATTENTION
    else:
        status = JobRun.Status.SUCCEEDED
    _finish(
        job,
        status=status,
        result={"counts": run.counts, "api_calls": run.api_calls, "sync_run": run.pk},
        problems=failed,
        error=run.error_message,
    )


def _run_cycle(job: JobRun, *, trigger: str = SyncRun.Trigger.ADMIN) -> None:
    progress = _Progress(job)
    user = job.requested_by
    report = cycle_run(
        trigger=trigger,
        actor=actor_for(user, default=f"system:journal_cycle:{trigger}"),
        user=user,
        stage_done=progress.stage,
        mirror_progress=progress.entity,
    )
    problems = [
        {
            "atlas_order_id": p.atlas_order_id,
            "document_reference": p.document_reference,
            "state": p.state,
            "reason": p.reason,
            "message": p.message,
        }
        for p in report.problems[:PROBLEMS_KEPT]
    ]
    _finish(
        job,
        status=JobRun.Status.SUCCEEDED if report.ok else JobRun.Status.NEEDS_ATTENTION,
        result={
            "stages": report.stages,
            "remote_calls": report.remote_calls,
            "problems": problems,
            "errors": report.errors,
            "seconds": round(report.seconds, 1),
        },
        problems=len(report.problems),
    )


def _finish(
    job: JobRun,
    *,
    status: str,
    result: dict[str, Any] | None = None,
    problems: int = 0,
    error: str = "",
) -> None:
    job.status = status
    job.finished_at = timezone.now()
    job.result = result or {}
    job.problems = problems
    job.error_message = error
    job.save(
        update_fields=[
            "status",
            "finished_at",
            "result",
            "problems",
            "error_message",
            "sync_run",
        ]
    )
    logger.info("job_run.finished", extra={"job_run": job.pk, "kind": job.kind, "status": status})


# --- guards -------------------------------------------------------------------------------------


def _enqueue(job_run_id: int) -> None:
    async_task(TASK, job_run_id, task_name=f"job_run_{job_run_id}")


def _lock(kind: str) -> None:
    if connection.vendor == "postgresql":
        # Serialises check-and-create across web processes; SQLite's IMMEDIATE transactions
        # already hold the write lock.
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(hashtext(%s))", [f"ledger_sync.job.{kind}"]
            )


def _abandon_stale(kind: str) -> None:
    """A run queued or running for longer than a task may take belongs to a worker that died
    (or to no worker at all): it is marked failed, so that it does not block for ever."""
    timeout = int(settings.Q_CLUSTER.get("retry", 1200))
    now = timezone.now()
    JobRun.objects.filter(
        kind=kind, status__in=JobRun.ACTIVE, requested_at__lt=now - timedelta(seconds=timeout)
    ).update(
        status=JobRun.Status.FAILED,
        finished_at=now,
        error_message=(
            "Abandoned: no worker finished it in time (is the django-q2 worker running?)."
        ),
    )


def _refuse_while_mirror_pass_runs() -> None:
    stale_after = timedelta(seconds=int(settings.Q_CLUSTER.get("timeout", 900)))
    running = (
        SyncRun.objects.filter(
            system=SyncRun.System.ATLAS,
            status=SyncRun.Status.RUNNING,
            counts__has_key=ENTITIES[0],
            started_at__gte=timezone.now() - stale_after,
        )
        .order_by("-started_at")
        .first()
    )
    if running is not None:
        raise JobAlreadyRunning(
            f"An ATLAS mirror pass is already running (sync run {running.pk}, started "
            f"{running.started_at:%H:%M:%S} UTC); wait for it to finish.",
            details={"running_job_run_id": None, "running_sync_run_id": running.pk},
        )
