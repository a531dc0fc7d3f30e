"""The README's screenshot of the back-office home (docs/dashboard.png), made from demo data.

    .venv/bin/python docs/screenshot.py [--out docs/dashboard.png] [--orders 120]

Everything happens in a temporary directory, on free loopback ports, so it never touches the
project's own database or a demo that is running: a fresh SQLite database is migrated, both
sandboxes are started, ATLAS and the AR Ledger reference data are mirrored, the sample ERP party
register imported, one journal cycle run (drafts for review), two thirds of the drafts approved
and posted (so the charts have figures) and the books reconciled; then the back office is served
and Debian's headless Chromium, 1,280 px wide, logs in as the finance lead and photographs the
home page. Needs chromium and chromium-driver (as the browser tests do).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WIDTH = 1280
# Tall enough for the cards, the pipeline, both charts, Run now and the schedules; the
# navigation below is left out.
HEIGHT = 1780
LOGIN = ("finance.lead", "screenshot-only-password")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for_port(port: int, child: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if child.poll() is not None:
            sys.exit(f"{what} exited with code {child.returncode}")
        with socket.socket() as probe:
            probe.settimeout(0.5)
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    sys.exit(f"{what} did not answer on port {port} within 60 seconds")


def _spawn(*args: str, **env: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(  # noqa: S603 - our own manage.py with fixed arguments
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _stop(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is None:
        os.killpg(child.pid, signal.SIGTERM)
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)


def _seed(orders: int) -> None:
    """The demo's data, through the same commands `manage.py demo` runs. Django is imported
    here, once the environment above has chosen the database and the ports."""
    import django
    from django.core.management import CommandError, call_command

    django.setup()
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from ledger_sync.models import Journal, OrderState
    from ledger_sync.services.posting import journal_approve
    from ledger_sync.services.roles import FINANCE_LEAD, roles_ensure
    from ledger_sync.services.schedules import schedules_ensure

    quiet = {"stdout": io.StringIO(), "stderr": io.StringIO()}
    call_command("migrate", interactive=False, verbosity=0)
    roles_ensure()
    schedules_ensure()
    for name, *args in (
        ("sync_atlas",),
        ("sync_gotransverse",),
        ("import_erp_parties", str(ROOT / "integration/sandbox/data/erp_parties.csv")),
        ("run_cycle",),
    ):
        with contextlib.suppress(CommandError):  # blocked orders are part of the picture
            call_command(name, *args, **quiet)
    user = get_user_model().objects.create_user(username=LOGIN[0], password=LOGIN[1], is_staff=True)
    user.groups.add(Group.objects.get(name=FINANCE_LEAD))
    user = get_user_model().objects.get(pk=user.pk)
    drafts = list(
        Journal.objects.filter(
            status=Journal.Status.DRAFT, order_sync__state=OrderState.AWAITING_REVIEW
        ).order_by("pk")
    )
    journal_approve(journals=drafts[: len(drafts) * 2 // 3], user=user)
    with contextlib.suppress(CommandError):  # differences are what its card is for
        call_command("reconcile", "--no-mirror", **quiet)
    print(f"seeded: {orders} ATLAS orders, {len(drafts)} drafts, two thirds approved")


def _photograph(url: str, out: Path) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        f"--window-size={WIDTH},{HEIGHT}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    try:
        driver.get(f"{url}/admin/login/?next=/admin/")
        driver.find_element(By.NAME, "username").send_keys(LOGIN[0])
        driver.find_element(By.NAME, "password").send_keys(LOGIN[1])
        driver.find_element(By.CSS_SELECTOR, "form#login-form [type=submit]").click()
        driver.find_element(By.ID, "card-matches_to_approve")  # the dashboard is there
        out.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(out))
    finally:
        driver.quit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "dashboard.png")
    parser.add_argument("--orders", type=int, default=120)
    options = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="ledger-sync-screenshot-"))
    atlas_port, ledger_port, web_port = _free_port(), _free_port(), _free_port()
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings.base",
            "DATABASE_URL": f"sqlite:///{work / 'screenshot.sqlite3'}",
            "SANDBOX_ATLAS_PORT": str(atlas_port),
            "SANDBOX_GOTRANSVERSE_PORT": str(ledger_port),
            "SANDBOX_WEBHOOK_URL": f"http://127.0.0.1:{web_port}/api/webhooks/atlas/",
            "JOURNAL_WORKFLOW": "review",
            "SANDBOX_ORDERS": str(options.orders),
        }
    )
    sys.path.insert(0, str(ROOT))
    children: list[subprocess.Popen[bytes]] = []
    try:
        children.append(_spawn("sandbox", "--orders", str(options.orders), "--webhook-url", ""))
        _wait_for_port(atlas_port, children[-1], "the ATLAS sandbox")
        _wait_for_port(ledger_port, children[-1], "the Gotransverse sandbox")
        _seed(options.orders)
        # DEBUG: static files straight from the apps, with no collectstatic into var/.
        children.append(_spawn("runserver", f"127.0.0.1:{web_port}", "--noreload", DEBUG="true"))
        _wait_for_port(web_port, children[-1], "the web server")
        _photograph(f"http://127.0.0.1:{web_port}", options.out)
    finally:
        for child in reversed(children):
            _stop(child)
        shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {options.out} ({options.out.stat().st_size // 1024} kB)")


if __name__ == "__main__":
    main()
