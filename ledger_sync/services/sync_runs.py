"""Recording passes against remote systems: start, count, record errors, finish."""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from integration import wire
from ledger_sync.errors import ApplicationError
from ledger_sync.models import SyncRun, SyncRunError

logger = logging.getLogger(__name__)

OUTCOMES = ("created", "updated", "unchanged", "failed")


class RunRecorder:
    """Counts what one pass did and stores it on its SyncRun when the pass ends.

    Counting is in memory and written once at the end, so a pass over 100,000 records does not
    rewrite the run row 100,000 times; errors are written as they happen so that a pass that
    dies half-way still shows what it met.
    """

    def __init__(self, run: SyncRun):
        self.run = run
        self._counts: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(OUTCOMES, 0))

    def count(self, entity: str, outcome: str, n: int = 1) -> None:
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}; use one of {OUTCOMES}")
        self._counts[entity][outcome] += n

    def error(
        self,
        *,
        entity: str,
        remote_id: Any = None,
        field: str = "",
        message: str,
        raw: Any = None,
        count: bool = True,
    ) -> None:
        SyncRunError.objects.create(
            sync_run=self.run,
            entity=entity,
            remote_id="" if remote_id is None else str(remote_id),
            field=field,
            message=message,
            raw_json="" if raw is None else wire.dumps(raw),
        )
        if count:
            self.count(entity, "failed")
        # The message may quote the record's values (an IBAN, say): it stays in the database.
        logger.warning(
            "sync run %s: %s %s failed on field %r",
            self.run.pk,
            entity,
            remote_id,
            field,
            extra={"entity": entity, "remote_id": remote_id, "run": self.run.pk},
        )

    @property
    def counts(self) -> dict[str, dict[str, int]]:
        return {entity: dict(outcomes) for entity, outcomes in self._counts.items()}

    def finish(self, *, api_calls: int = 0, rate_limited: int = 0, error: str = "") -> SyncRun:
        run = self.run
        run.counts = self.counts
        run.api_calls = api_calls
        run.rate_limited = rate_limited
        run.finished_at = timezone.now()
        run.error_message = error
        if error:
            run.status = SyncRun.Status.FAILED
        elif run.errors.exists():
            run.status = SyncRun.Status.COMPLETED_WITH_ERRORS
        else:
            run.status = SyncRun.Status.SUCCEEDED
        run.save(
            update_fields=[
                "counts",
                "api_calls",
                "rate_limited",
                "finished_at",
                "error_message",
                "status",
            ]
        )
        return run


def sync_run_start(*, system: str, trigger: str, user: Any = None) -> RunRecorder:
    run = SyncRun.objects.create(
        system=system,
        trigger=trigger,
        triggered_by=user if getattr(user, "is_authenticated", False) else None,
        started_at=timezone.now(),
    )
    return RunRecorder(run)


class SyncRunAlreadyRunning(ApplicationError):
    """A full pass of this system is already running; this one was skipped, nothing was done.

    details["running_run_id"] is the running pass's SyncRun id."""


def sync_run_start_exclusive(
    *,
    system: str,
    trigger: str,
    entities: Sequence[str],
    what: str,
    user: Any = None,
    already_running: type[SyncRunAlreadyRunning] = SyncRunAlreadyRunning,
) -> RunRecorder:
    """Start a full pass of `system` unless one is already running (checked and claimed
    atomically); raise `already_running` naming the running pass otherwise, having done nothing.

    A full pass announces itself by counting every one of `entities` from zero while it runs
    (the real counts replace these when it finishes), which tells it from a resync of a few
    records: only full passes exclude each other. A RUNNING pass older than the task timeout
    (Q_CLUSTER["timeout"]) was abandoned by a worker that died: it is marked FAILED and does not
    block. `what` names the pass in the message ("An ATLAS mirror pass").
    """
    if not entities:
        raise ValueError("a full pass announces the entities it reads")
    stale_after = timedelta(seconds=int(settings.Q_CLUSTER.get("timeout", 900)))
    with transaction.atomic():
        if connection.vendor == "postgresql":
            # Serialises the check-and-claim across workers on any number of machines; SQLite
            # needs nothing more: its IMMEDIATE transactions already hold the write lock.
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_advisory_lock_key(system)])
        running = SyncRun.objects.filter(system=system, status=SyncRun.Status.RUNNING)
        now = timezone.now()
        running.filter(started_at__lt=now - stale_after).update(
            status=SyncRun.Status.FAILED,
            finished_at=now,
            error_message="Abandoned: the pass stopped before it finished (worker died?).",
        )
        current = running.filter(counts__has_key=entities[0]).order_by("-started_at").first()
        if current is not None:
            raise already_running(
                f"{what} is already running (run {current.pk}, started "
                f"{current.started_at:%Y-%m-%d %H:%M:%S} UTC); this one was skipped.",
                details={"running_run_id": current.pk, "system": system},
            )
        recorder = sync_run_start(system=system, trigger=trigger, user=user)
        recorder.run.counts = {entity: dict.fromkeys(OUTCOMES, 0) for entity in entities}
        recorder.run.save(update_fields=["counts"])
        return recorder


def _advisory_lock_key(system: str) -> int:
    """A stable PostgreSQL advisory-lock key per system (ATLAS's is the one it always had)."""
    return int.from_bytes(hashlib.sha256(f"ledger_sync.{system}_mirror".encode()).digest()[:7])
