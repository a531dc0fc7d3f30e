"""python manage.py run_cycle: one whole synchronous cycle (CONTRACT.md).

Both mirrors, matching, selection, build, posting and write-backs; prints per-stage counts and
every order that is blocked or failed and why. Exit 0 when nothing is blocked or failed, 1
otherwise (so a scheduler or CI notices).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from ledger_sync.services.pipeline import cycle_run

SHOWN_PROBLEMS = 50


class Command(BaseCommand):
    help = "Run one whole cycle: mirror, build, post and write back; list what is blocked."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--all-problems",
            action="store_true",
            help=f"List every blocked or failed order (default: the first {SHOWN_PROBLEMS}).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        report = cycle_run(trigger="command", actor="system:run_cycle")
        out = self.stdout
        for stage, counts in report.stages.items():
            shown = ", ".join(f"{k}={v}" for k, v in counts.items()) or "nothing to do"
            out.write(f"{stage:<20} {shown}")
        calls = ", ".join(f"{system}={n}" for system, n in report.remote_calls.items())
        out.write(f"{'remote calls':<20} {calls}")
        out.write(f"{'seconds':<20} {report.seconds:.1f}")
        for error in report.errors:
            out.write(self.style.ERROR(f"error: {error}"))

        if report.problems:
            out.write(
                self.style.WARNING(f"{len(report.blocked)} blocked, {len(report.failed)} failed:")
            )
            limit = None if options["all_problems"] else SHOWN_PROBLEMS
            for problem in report.problems[:limit]:
                out.write(
                    f"  order {problem.atlas_order_id} {problem.document_reference} "
                    f"[{problem.state}: {problem.reason}] {problem.message}"
                )
                for reason, message in problem.more:
                    out.write(f"      also [{reason}] {message}")
            if limit is not None and len(report.problems) > limit:
                out.write(f"  ... and {len(report.problems) - limit} more (--all-problems)")
        else:
            out.write(self.style.SUCCESS("nothing blocked or failed"))
        if not report.ok:
            raise CommandError(
                f"{len(report.blocked)} blocked, {len(report.failed)} failed, "
                f"{len(report.errors)} stage error(s)",
                returncode=1,
            )
