"""python manage.py sync_atlas: one synchronous ATLAS mirror pass (custom fields,
counterparties, orders, items, invoices, payments), a summary, exit 1 when it failed or records
failed."""

from __future__ import annotations

from typing import Any

from django.core.management import BaseCommand, CommandError

from ledger_sync.management.progress import TerminalProgress
from ledger_sync.models import SyncRun
from ledger_sync.services.atlas_mirror import (
    AtlasMirrorAlreadyRunning,
    atlas_mirror_run,
)
from ledger_sync.services.mirror_records import ATLAS_ENTITIES as ENTITIES
from ledger_sync.services.remote import atlas_client_from_settings
from ledger_sync.services.sync_runs import OUTCOMES

MAX_ERRORS_SHOWN = 50


class Command(BaseCommand):
    help = (
        "One synchronous ATLAS mirror pass: custom fields, counterparties, orders, order items, "
        "invoices and payments. Exits 1 when the pass failed or a record failed."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--no-progress", action="store_true", help="No progress bars, even on a terminal."
        )

    def handle(self, *args: Any, no_progress: bool = False, **options: Any) -> None:
        progress = None
        if not no_progress and self.stdout.isatty():
            # Bars on stderr, so the summary on stdout stays clean when it is captured.
            progress = TerminalProgress(self.stderr._out, label_width=22)
        try:
            run = atlas_mirror_run(
                client=atlas_client_from_settings(),
                trigger=SyncRun.Trigger.COMMAND,
                progress=progress,
            )
        except AtlasMirrorAlreadyRunning as skipped:
            raise CommandError(skipped.message) from None
        finally:
            if progress is not None:
                progress.close()
        self._summarise(run)
        if run.status == SyncRun.Status.FAILED:
            raise CommandError(f"ATLAS mirror run {run.pk} failed: {run.error_message}")
        failed = run.total("failed")
        if run.status == SyncRun.Status.COMPLETED_WITH_ERRORS or failed:
            raise CommandError(
                f"ATLAS mirror run {run.pk} completed, but {failed} record(s) failed "
                "(listed above)."
            )

    def _summarise(self, run: SyncRun) -> None:
        duration = (run.finished_at - run.started_at).total_seconds() if run.finished_at else 0
        self.stdout.write(
            f"ATLAS mirror: {run.get_status_display()} (sync run {run.pk}, {duration:.1f}s)"
        )
        self.stdout.write(f"  {'entity':<22}" + "".join(f"{outcome:>11}" for outcome in OUTCOMES))
        for entity in ENTITIES:
            counts = run.counts.get(entity, {})
            self.stdout.write(
                f"  {entity:<22}" + "".join(f"{counts.get(o, 0):>11}" for o in OUTCOMES)
            )
        self.stdout.write(f"  {'total':<22}" + "".join(f"{run.total(o):>11}" for o in OUTCOMES))
        self.stdout.write(f"  API calls: {run.api_calls}   rate limited (429): {run.rate_limited}")
        errors = list(run.errors.all()[: MAX_ERRORS_SHOWN + 1])
        if errors:
            self.stdout.write("Failed records:")
        for error in errors[:MAX_ERRORS_SHOWN]:
            self.stdout.write(self.style.WARNING(f"  ! {error.message}"))
        if len(errors) > MAX_ERRORS_SHOWN:
            self.stdout.write(f"  … and more: see sync run {run.pk} in the admin.")
        if run.error_message:
            self.stdout.write(self.style.ERROR(f"  Failed: {run.error_message}"))
