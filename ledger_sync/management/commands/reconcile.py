"""python manage.py reconcile [--period YYYY-MM]: ATLAS vs our journals vs the AR Ledger at the
three levels; prints the differences; exit 0 when everything agrees, 1 when a difference was
found or the run failed."""

from __future__ import annotations

from typing import Any

from django.core.management import BaseCommand, CommandError

from ledger_sync.models import ReconciliationRun
from ledger_sync.services.reconciliation import ReconciliationPeriodInvalid, reconciliation_run
from ledger_sync.services.reconciliation_values import money

MAX_SHOWN = 30


class Command(BaseCommand):
    help = (
        "Reconcile ATLAS, ledger_sync's posted journals and the AR Ledger (per order, per GL "
        "account and period, per counterparty). Exits 1 when a difference is found or the run "
        "failed."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--period", default=None, help="Accounting period as YYYY-MM (default: all)."
        )
        parser.add_argument(
            "--no-mirror",
            action="store_true",
            help="Compare with the ATLAS mirror as it is (no fresh mirror pass first).",
        )

    def handle(self, *args: Any, period: str | None, no_mirror: bool, **options: Any) -> None:
        try:
            run = reconciliation_run(trigger="command", period=period, mirror_atlas=not no_mirror)
        except ReconciliationPeriodInvalid as exc:
            raise CommandError(exc.message) from None
        scope = run.period or "all periods"
        self.stdout.write(
            f"Reconciliation run {run.pk} ({scope}): {run.get_status_display()}; "
            f"{run.orders_checked} orders, {run.accounts_checked} account rows, "
            f"{run.counterparties_checked} counterparty rows; "
            f"{run.ledger_transactions_read} ledger transactions read; remote calls: "
            f"AR Ledger {run.ledger_calls}, ATLAS {run.atlas_calls}"
        )
        if run.status == ReconciliationRun.Status.FAILED:
            raise CommandError(f"Reconciliation run {run.pk} failed: {run.error}")
        for note in run.summary.get("notes", []):
            self.stdout.write(self.style.WARNING(f"  note: {note}"))
        differences = list(run.differences.all()[: MAX_SHOWN + 1])
        for difference in differences[:MAX_SHOWN]:
            self.stdout.write(
                f"  L{difference.level} {difference.kind} {difference.record_label}: "
                f"{money(difference.amount, difference.currency)} — {difference.likely_cause}"
            )
        if len(differences) > MAX_SHOWN:
            self.stdout.write(f"  … and more: see reconciliation run {run.pk} in the admin.")
        if run.difference_count:
            raise CommandError(f"{run.difference_count} difference(s) found (run {run.pk}).")
        self.stdout.write(self.style.SUCCESS("  0 differences: ATLAS, journals and ledger agree."))
