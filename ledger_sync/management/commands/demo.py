"""The README's main job on the embedded default: everything on one machine, one command.

Migrates the SQLite database, starts both sandboxes and a django-q2 worker as child processes,
mirrors both remote systems, creates the demo logins and serves the back office on
http://127.0.0.1:8000 until interrupted; the children stop with it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

from django.conf import settings
from django.core.management import BaseCommand, CommandError, call_command

SAMPLE_ERP_PARTIES = settings.BASE_DIR / "integration" / "sandbox" / "data" / "erp_parties.csv"
DEMO_USERS = (
    # username, password, group (None: superuser)
    ("admin", "ledger-sync-demo", None),
    ("finance.lead", "ledger-sync-demo", "Finance lead"),
    ("accountant", "ledger-sync-demo", "Accountant"),
)


class Command(BaseCommand):
    help = "Run the demo: sandboxes, worker, a full sync and the back office on 127.0.0.1:8000."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--orders", type=int, default=settings.SANDBOX_ORDERS)
        parser.add_argument(
            "--no-serve",
            action="store_true",
            help="Set everything up and sync, then stop (no web server, no worker).",
        )

    def handle(self, *args: Any, port: int, orders: int, no_serve: bool, **options: Any) -> None:
        if not settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
            self.stdout.write("Using the database from DATABASE_URL.")
        for taken in (settings.SANDBOX_ATLAS_PORT, settings.SANDBOX_GOTRANSVERSE_PORT, port):
            if _port_open(settings.SANDBOX_HOST, taken):
                raise CommandError(
                    f"Port {taken} on {settings.SANDBOX_HOST} is already in use: stop the other "
                    "demo (or whatever listens there) and run again."
                )

        self._step("Migrating the database")
        call_command("migrate", interactive=False, verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)

        children: list[subprocess.Popen[bytes]] = []
        # SIGTERM (a supervisor, `kill`) must stop the children too, as Ctrl-C does.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        try:
            self._step("Starting the ATLAS and Gotransverse sandboxes")
            children.append(
                _spawn(
                    "sandbox",
                    "--orders",
                    str(orders),
                    "--webhook-url",
                    f"http://127.0.0.1:{port}/api/webhooks/atlas/",
                )
            )
            _wait_for_port(settings.SANDBOX_HOST, settings.SANDBOX_ATLAS_PORT, children[0])
            _wait_for_port(settings.SANDBOX_HOST, settings.SANDBOX_GOTRANSVERSE_PORT, children[0])

            self._step("Mirroring ATLAS")
            _call_reporting_failure(self, "sync_atlas")
            self._step("Mirroring the Gotransverse reference data")
            _call_reporting_failure(self, "sync_gotransverse")

            self._step("Importing the sample ERP party register")
            call_command("import_erp_parties", str(SAMPLE_ERP_PARTIES))

            self._step("Running one journal cycle (matching, journals, posting, write-back)")
            _call_reporting_failure(self, "run_cycle")

            self._step("Creating roles, schedules and demo logins")
            _ensure_setup()
            logins = _ensure_demo_users()

            if no_serve:
                self._step("Set up; not serving (--no-serve)")
                return

            self._step("Starting the django-q2 worker")
            children.append(_spawn("qcluster"))

            self.stdout.write(
                self.style.SUCCESS(f"\nThe back office is at http://127.0.0.1:{port}/admin/")
            )
            for username, password, role in logins:
                self.stdout.write(f"  login: {username} / {password}   ({role})")
            self.stdout.write("Press Ctrl-C to stop the server, the worker and the sandboxes.\n")
            call_command("runserver", f"127.0.0.1:{port}", use_reloader=False)
        finally:
            for child in reversed(children):
                _stop(child)

    def _step(self, text: str) -> None:
        self.stdout.write(self.style.MIGRATE_HEADING(f"== {text}"))


def _spawn(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(  # noqa: S603 - our own manage.py with fixed arguments
        [sys.executable, str(settings.BASE_DIR / "manage.py"), *args],
        env=os.environ.copy(),
        start_new_session=True,
    )


def _stop(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is not None:
        return
    os.killpg(child.pid, signal.SIGTERM)
    try:
        child.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0


def _wait_for_port(host: str, port: int, child: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise CommandError(f"The sandbox exited with code {child.returncode}; see its output.")
        if _port_open(host, port):
            return
        time.sleep(0.2)
    raise CommandError(f"The sandbox did not answer on {host}:{port} within 60 seconds.")


def _call_reporting_failure(command: BaseCommand, name: str) -> None:
    """Blocked or failed records are shown, not fatal: the demo is about looking at them."""
    try:
        call_command(name)
    except CommandError as problem:
        command.stdout.write(command.style.WARNING(f"{name} finished with problems: {problem}"))


def _ensure_setup() -> None:
    from ledger_sync.services.roles import roles_ensure
    from ledger_sync.services.schedules import schedules_ensure

    schedules_ensure()
    roles_ensure()


def _ensure_demo_users() -> list[tuple[str, str, str]]:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    user_model = get_user_model()
    logins = []
    for username, password, group_name in DEMO_USERS:
        group = Group.objects.filter(name=group_name).first() if group_name else None
        if group_name and group is None:
            continue
        user, _ = user_model.objects.get_or_create(username=username)
        user.is_staff = True
        user.is_superuser = group_name is None
        user.set_password(password)
        user.save()
        if group is not None:
            user.groups.set([group])
        logins.append((username, password, group_name or "superuser"))
    return logins
