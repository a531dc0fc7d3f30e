"""The recurring django-q2 schedules, created idempotently (by a migration and by `demo`).

Each entry is keyed by its name: running this again updates the interval and never adds a
second copy. Nothing here is set up by hand in the admin.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django_q.models import Schedule


@dataclass(frozen=True)
class ScheduleSpec:
    name: str
    func: str
    minutes: int


def default_schedules() -> list[ScheduleSpec]:
    """Every recurring task of ledger_sync. Areas add their entry here."""
    return [
        ScheduleSpec(
            name="ATLAS mirror",
            func="ledger_sync.tasks.sync_atlas_task",
            minutes=settings.ATLAS_SYNC_INTERVAL_MINUTES,
        ),
        ScheduleSpec(
            name="Gotransverse reference data",
            func="ledger_sync.tasks.sync_gotransverse_task",
            minutes=settings.GOTRANSVERSE_SYNC_INTERVAL_MINUTES,
        ),
        ScheduleSpec(
            name="Inbound sweep (webhooks, payments, invoices)",
            func="ledger_sync.tasks.inbound_sweep_task",
            minutes=settings.INBOUND_SWEEP_INTERVAL_MINUTES,
        ),
        ScheduleSpec(
            name="Journal cycle",
            func="ledger_sync.tasks.run_cycle_task",
            minutes=settings.JOURNAL_CYCLE_INTERVAL_MINUTES,
        ),
        ScheduleSpec(
            name="Error queue refresh",
            func="ledger_sync.tasks.problems_refresh_task",
            minutes=settings.PROBLEMS_REFRESH_INTERVAL_MINUTES,
        ),
        ScheduleSpec(
            name="Reconciliation (ATLAS, journals, AR Ledger)",
            func="ledger_sync.tasks.reconcile_task",
            minutes=settings.RECONCILE_INTERVAL_MINUTES,
        ),
    ]


def schedules_ensure() -> int:
    """Create or update every default schedule; returns how many were created."""
    created = 0
    for spec in default_schedules():
        _, was_created = Schedule.objects.update_or_create(
            name=spec.name,
            defaults={
                "func": spec.func,
                "kwargs": repr({"trigger": "schedule"}),
                "schedule_type": Schedule.MINUTES,
                "minutes": spec.minutes,
                "repeats": -1,
            },
        )
        created += int(was_created)
    return created
