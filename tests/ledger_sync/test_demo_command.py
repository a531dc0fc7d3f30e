"""`python manage.py demo --no-serve`: what the README's `make run` does before it serves.

The sandboxes run as a real child process (`manage.py sandbox`) on free loopback ports; the
demo mirrors both systems, imports the sample ERP register, runs one cycle and creates the
demo logins. Migrating and collecting static files are the test database's and runner's job.
"""

from __future__ import annotations

import io
import socket

import pytest
from django.contrib.auth import get_user_model
from django.core import management

from ledger_sync.management.commands import demo
from ledger_sync.models import (
    AccountingPeriod,
    ErpParty,
    GLAccount,
    Order,
    OrderSync,
    SyncRun,
)

pytestmark = pytest.mark.django_db(transaction=True)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def demo_ports(monkeypatch, settings):
    atlas_port, ledger_port, web_port = _free_port(), _free_port(), _free_port()
    # The sandbox child reads its ports from the environment; this process from settings.
    monkeypatch.setenv("SANDBOX_ATLAS_PORT", str(atlas_port))
    monkeypatch.setenv("SANDBOX_GOTRANSVERSE_PORT", str(ledger_port))
    settings.SANDBOX_ATLAS_PORT = atlas_port
    settings.SANDBOX_GOTRANSVERSE_PORT = ledger_port
    settings.ATLAS_BASE_URL = f"http://127.0.0.1:{atlas_port}"
    settings.GOTRANSVERSE_BASE_URL = f"http://127.0.0.1:{ledger_port}"
    settings.ATLAS_MAX_RETRIES = 0
    settings.GOTRANSVERSE_MAX_RETRIES = 0
    return web_port


@pytest.fixture
def no_migrate_or_collectstatic(monkeypatch):
    real = management.call_command

    def call_command(name, *args, **kwargs):
        if name in {"migrate", "collectstatic"}:
            return None
        kwargs.setdefault("stdout", io.StringIO())
        return real(name, *args, **kwargs)

    monkeypatch.setattr(demo, "call_command", call_command)


def test_demo_starts_both_sandboxes_mirrors_both_runs_a_cycle_and_creates_the_logins(
    demo_ports, no_migrate_or_collectstatic
):
    out = io.StringIO()

    management.call_command("demo", "--no-serve", "--port", str(demo_ports), stdout=out)

    assert SyncRun.objects.filter(system=SyncRun.System.ATLAS).exists()
    assert SyncRun.objects.filter(system=SyncRun.System.GOTRANSVERSE).exists()
    assert Order.objects.count() > 100
    assert GLAccount.objects.exists()
    assert AccountingPeriod.objects.filter(is_open=False).exists()
    assert ErpParty.objects.exists()
    assert OrderSync.objects.exists()
    users = get_user_model().objects
    assert users.get(username="admin").is_superuser
    for username, group in (("finance.lead", "Finance lead"), ("accountant", "Accountant")):
        user = users.get(username=username)
        assert user.is_staff and not user.is_superuser
        assert list(user.groups.values_list("name", flat=True)) == [group]
        assert user.check_password("ledger-sync-demo")
    assert "Set up; not serving (--no-serve)" in out.getvalue()
