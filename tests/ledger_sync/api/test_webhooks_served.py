"""Copies of one webhook arriving at the same moment at a real server (gunicorn, several
processes and threads) over a SQLite file database: stored once, every copy acknowledged.

The in-process test database (in-memory SQLite) locks whole tables across threads, so the
SQLite race is run here against the served setup ledger_sync uses with SQLite; on PostgreSQL
the same race also runs in-process (test_webhooks.py).
"""

from __future__ import annotations

import importlib.util
import secrets
import sqlite3
import sys
import threading
from pathlib import Path

import pytest
import requests

LOAD_SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "webhooks_load.py"


@pytest.fixture(scope="module")
def load():
    spec = importlib.util.spec_from_file_location("webhooks_load", LOAD_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def served(load):
    secret = secrets.token_hex(16)
    database = load.prepare_database(None)
    server = load.start_server(database_url=database.url, secret=secret, workers=2, threads=4)
    try:
        yield server, database, secret
    finally:
        server.stop()
        database.drop()


@pytest.mark.timeout(120)
def test_copies_arriving_at_once_on_sqlite_are_stored_once(load, served):
    server, database, secret = served
    body, signature = load.signed(
        {
            "event": "order.status_changed",
            "entityType": "Order",
            "entityId": 210,
            "newStatus": "Approved order by ETRM",
            "timestamp": "2026-04-01T08:30:00Z",
        },
        secret,
    )
    copies = 8
    start = threading.Barrier(copies)
    answers: list[tuple[int, str]] = []

    def deliver() -> None:
        start.wait(timeout=10)
        response = requests.post(
            server.url + load.WEBHOOK_PATH,
            data=body,
            headers={"Content-Type": "application/json", "X-Atlas-Signature": signature},
            timeout=30,
        )
        answers.append((response.status_code, response.json()["status"]))

    threads = [threading.Thread(target=deliver) for _ in range(copies)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(answers) == [(200, "accepted")] + [(200, "duplicate")] * (copies - 1)
    with sqlite3.connect(database.url.removeprefix("sqlite:///")) as conn:
        (stored,) = conn.execute("SELECT count(*) FROM ledger_sync_inbounddelivery").fetchone()
        (queued,) = conn.execute("SELECT count(*) FROM django_q_ormq").fetchone()
    assert (stored, queued) == (1, 1)
