"""python manage.py sync_atlas against the ATLAS sandbox."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from ledger_sync.models import Order, SyncRun
from tests.ledger_sync.services.test_atlas_mirror import running_full_pass

pytestmark = pytest.mark.django_db


def run_command() -> tuple[str, CommandError | None]:
    out = io.StringIO()
    try:
        call_command("sync_atlas", stdout=out, stderr=io.StringIO())
    except CommandError as error:
        return out.getvalue(), error
    return out.getvalue(), None


def test_command_mirrors_and_lists_the_failed_record_then_exits_1(atlas_sandbox):
    broken = atlas_sandbox.app.dataset.broken["order_missing_due_date"][0]

    output, error = run_command()

    assert error is not None and error.returncode == 1
    assert "1 record(s) failed" in str(error)
    run = SyncRun.objects.get()
    assert run.trigger == SyncRun.Trigger.COMMAND
    assert Order.objects.count() == len(atlas_sandbox.app.dataset.orders) - 1
    order_line = next(line for line in output.splitlines() if line.strip().startswith("Order "))
    assert order_line.split()[1:] == [str(len(atlas_sandbox.app.dataset.orders) - 1), "0", "0", "1"]
    assert f"API calls: {run.api_calls}" in output
    assert "rate limited (429): 0" in output
    assert f"Order {broken}: field 'dueDate' is missing" in output


def test_command_exits_0_when_everything_mirrored(atlas_sandbox):
    broken = atlas_sandbox.app.dataset.broken["order_missing_due_date"][0]
    atlas_sandbox.app.dataset.orders[broken]["dueDate"] = "2026-04-15T00:00:00"

    output, error = run_command()

    assert error is None
    assert "Succeeded" in output
    assert "Failed records" not in output


def test_command_reports_atlas_down_and_exits_1(atlas_sandbox, settings):
    atlas_sandbox.server.stop()
    settings.ATLAS_MAX_RETRIES = 0

    output, error = run_command()

    assert error is not None and error.returncode == 1
    assert "failed: ATLAS /api/token failed" in str(error)
    assert "Failed: ATLAS /api/token failed" in output
    assert SyncRun.objects.get().status == SyncRun.Status.FAILED


def test_command_refuses_to_run_beside_a_running_pass(atlas_sandbox):
    running_full_pass()

    _, error = run_command()

    assert error is not None and "already running" in str(error)
    assert atlas_sandbox.app.calls == []


def test_scheduled_task_runs_one_pass_and_returns_its_id(atlas_sandbox):
    from ledger_sync.tasks import sync_atlas_task

    run_id = sync_atlas_task()

    run = SyncRun.objects.get(pk=run_id)
    assert (run.system, run.trigger) == ("atlas", "schedule")
    assert run.status == SyncRun.Status.COMPLETED_WITH_ERRORS


def test_scheduled_task_skips_when_a_pass_is_running(atlas_sandbox):
    from ledger_sync.tasks import sync_atlas_task

    running = running_full_pass()

    assert sync_atlas_task() == running.pk
    assert SyncRun.objects.count() == 1


class TerminalOutput(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_command_draws_progress_bars_only_on_a_terminal(atlas_sandbox):
    bars = io.StringIO()
    with pytest.raises(CommandError):
        call_command("sync_atlas", stdout=TerminalOutput(), stderr=bars)
    assert "OrderItem" in bars.getvalue()
    assert f"{len(atlas_sandbox.app.dataset.order_items)}/" in bars.getvalue()

    quiet = io.StringIO()
    with pytest.raises(CommandError):
        call_command("sync_atlas", stdout=io.StringIO(), stderr=quiet)
    assert quiet.getvalue() == ""
