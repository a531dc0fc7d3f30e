"""Recording passes against remote systems: start, count, record errors, finish."""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

from django.utils import timezone

from integration import wire
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
