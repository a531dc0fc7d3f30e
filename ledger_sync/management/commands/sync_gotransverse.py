"""python manage.py sync_gotransverse: one synchronous pass of the Gotransverse reference data
(ledger, calendar years and accounting periods, GL accounts), a summary, exit 1 when it failed."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management import BaseCommand, CommandError

from ledger_sync.management.progress import TerminalProgress
from ledger_sync.models import SyncRun
from ledger_sync.services.gotransverse_mirror import (
    GotransverseMirrorAlreadyRunning,
    gotransverse_mirror_run,
)
from ledger_sync.services.mirror_records import GOTRANSVERSE_ENTITIES as ENTITIES
from ledger_sync.services.remote import gotransverse_client_from_settings

MAX_ERRORS_SHOWN = 20


class Command(BaseCommand):
    help = (
        "One synchronous pass of the Gotransverse reference data (ledger, calendar and "
        "accounting periods, GL accounts). Exits 1 when the pass failed or a record failed."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--ledger-id",
            default=None,
            help="AR Ledger id (default: GOTRANSVERSE_LEDGER_ID).",
        )
        parser.add_argument(
            "--no-progress", action="store_true", help="No progress bars, even on a terminal."
        )

    def handle(self, *args: Any, ledger_id: str | None, no_progress: bool, **options: Any) -> None:
        ledger_id = ledger_id or settings.GOTRANSVERSE_LEDGER_ID
        progress = None
        if not no_progress and self.stderr.isatty():
            progress = TerminalProgress(self.stderr._out, label_width=16)
        try:
            run = gotransverse_mirror_run(
                client=gotransverse_client_from_settings(),
                ledger_id=ledger_id,
                trigger=SyncRun.Trigger.COMMAND,
                progress=progress,
            )
        except GotransverseMirrorAlreadyRunning as skipped:
            raise CommandError(skipped.message) from None
        finally:
            if progress is not None:
                progress.close()
        self._summarise(run, ledger_id)
        if run.status == SyncRun.Status.FAILED:
            raise CommandError(f"Gotransverse sync run {run.pk} failed: {run.error_message}")
        if run.status == SyncRun.Status.COMPLETED_WITH_ERRORS:
            raise CommandError(
                f"Gotransverse sync run {run.pk} completed, but {run.errors.count()} record(s) "
                "failed (listed above)."
            )

    def _summarise(self, run: SyncRun, ledger_id: Any) -> None:
        self.stdout.write(
            f"Gotransverse reference data, ledger {ledger_id}: "
            f"{run.get_status_display()} (sync run {run.pk}, {run.api_calls} API calls)"
        )
        for entity in ENTITIES:
            counts = run.counts.get(entity, {})
            self.stdout.write(
                f"  {entity:<16} {counts.get('created', 0):>5} created  "
                f"{counts.get('updated', 0):>5} updated  "
                f"{counts.get('unchanged', 0):>5} unchanged  "
                f"{counts.get('failed', 0):>5} failed  "
                f"{counts.get('missing', 0):>5} missing"
            )
        errors = list(run.errors.all()[: MAX_ERRORS_SHOWN + 1])
        for error in errors[:MAX_ERRORS_SHOWN]:
            self.stdout.write(self.style.WARNING(f"  ! {error.message}"))
        if len(errors) > MAX_ERRORS_SHOWN:
            self.stdout.write(f"  … and more: see sync run {run.pk} in the admin.")
        if run.error_message:
            self.stdout.write(self.style.ERROR(f"  Failed: {run.error_message}"))
