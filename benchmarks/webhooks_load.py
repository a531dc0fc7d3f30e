"""Load test of the ATLAS webhook receiver: acknowledgement latency under a steady rate, and
every event stored exactly once.

    .venv/bin/python benchmarks/webhooks_load.py [--count 10000] [--rate 200] [--clients 8]
        [--duplicates 0.02] [--workers 2] [--threads 4] [--max-seconds 180]

Serves ledger_sync with gunicorn on a free loopback port against a database of its own: a new
PostgreSQL database beside the one in DATABASE_URL when that is set (dropped afterwards),
otherwise a temporary SQLite file. Posts `--count` signed `order.status_changed` webhooks at
`--rate` requests per second (0 = as fast as possible) from `--clients` threads with keep-alive
sessions; a share `--duplicates` of them are resent copies of earlier events. Prints the
throughput and the p50/p90/p99/max acknowledgement latency, then checks that every distinct
event is stored exactly once and every copy was answered "duplicate".
Goal: p99 under 50 ms at 200 requests per second on one machine with PostgreSQL.
Bounded: stops sending after --max-seconds; loopback only.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import random
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PYTHON = sys.executable
WEBHOOK_PATH = "/api/webhooks/atlas/"

# Creates the tables in a fresh database: ledger_sync's migrations once they exist, until then
# straight from the models (run_syncdb; an app with an empty migrations package gets none).
_PREPARE = """
import django, os
from pathlib import Path
django.setup()
from django.conf import settings
from django.core.management import call_command
if not any((Path(os.environ["LS_ROOT"]) / "ledger_sync" / "migrations").glob("0*.py")):
    settings.MIGRATION_MODULES = {"ledger_sync": None}
    # The other apps first: ledger_sync's tables point at auth's (PostgreSQL checks at once).
    call_command("migrate", verbosity=0)
call_command("migrate", run_syncdb=True, verbosity=0)
"""


@dataclass
class Database:
    url: str
    cleanup: list = field(default_factory=list)

    def drop(self) -> None:
        for step in reversed(self.cleanup):
            step()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(database_url: str, secret: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": database_url,
            "DJANGO_SETTINGS_MODULE": "config.settings.base",
            "ATLAS_WEBHOOK_SECRET": secret,
            "LOG_LEVEL": "WARNING",
            "DEBUG": "false",
            "LS_ROOT": str(ROOT),
            "PYTHONPATH": str(ROOT),
        }
    )
    return env


def prepare_database(database_url: str | None) -> Database:
    """A fresh database: a new PostgreSQL database on the server of `database_url`, or a
    temporary SQLite file when it is None or SQLite."""
    if database_url and database_url.startswith(("postgres://", "postgresql://")):
        import psycopg

        parts = urllib.parse.urlsplit(database_url)
        name = f"ledger_sync_webhooks_{os.getpid()}"
        admin = parts._replace(path="/postgres").geturl().replace("postgresql://", "postgres://")
        with psycopg.connect(
            admin.replace("postgres://", "postgresql://", 1), autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')

        def drop() -> None:
            with psycopg.connect(
                admin.replace("postgres://", "postgresql://", 1), autocommit=True
            ) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

        database = Database(parts._replace(path=f"/{name}").geturl(), [drop])
    else:
        workdir = tempfile.TemporaryDirectory(prefix="ledger_sync_webhooks_")
        database = Database(f"sqlite:///{Path(workdir.name) / 'load.sqlite3'}", [workdir.cleanup])
    env = server_env(database.url, "unused")
    subprocess.run([PYTHON, "-c", _PREPARE], env=env, check=True, cwd=ROOT)
    return database


@dataclass
class Server:
    url: str
    process: subprocess.Popen

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def start_server(*, database_url: str, secret: str, workers: int, threads: int) -> Server:
    """gunicorn (gthread workers, keep-alive) on a free loopback port; waits for /healthz."""
    port = free_port()
    process = subprocess.Popen(
        [
            PYTHON,
            "-m",
            "gunicorn",
            "config.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--threads",
            str(threads),
            "--worker-class",
            "gthread",
            "--keep-alive",
            "30",
            "--log-level",
            "warning",
        ],
        env=server_env(database_url, secret),
        cwd=ROOT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode}")
        try:
            if requests.get(f"{url}/healthz", timeout=2).status_code == 200:
                return Server(url, process)
        except requests.RequestException:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError("gunicorn did not answer /healthz within 60 s")


def signed(payload: dict, secret: str) -> tuple[bytes, str]:
    body = json.dumps(payload, separators=(",", ":")).encode()
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return body, f"sha256={digest}"


def events(count: int, duplicates: float, seed: int) -> tuple[list[dict], int]:
    """`count` payloads; a share `duplicates` are copies of earlier ones. (payloads, unique)."""
    rng = random.Random(seed)
    copies = int(count * duplicates)
    unique = count - copies
    payloads = [
        {
            "event": "order.status_changed",
            "entityType": "Order",
            "entityId": 100_000 + index,
            "newStatus": "Approved order by ETRM",
            "timestamp": f"2026-04-01T08:{(index // 60) % 60:02d}:{index % 60:02d}Z",
        }
        for index in range(unique)
    ]
    for _ in range(copies):
        at = rng.randrange(len(payloads))
        payloads.insert(rng.randrange(at + 1, len(payloads) + 1), dict(payloads[at]))
    return payloads, unique


@dataclass
class Result:
    latencies: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    sent: int = 0


def fire(
    *,
    url: str,
    bodies: list[tuple[bytes, str]],
    rate: float,
    clients: int,
    max_seconds: float,
) -> tuple[Result, float]:
    """Send every body at `rate` per second (open loop: request i is due at start + i/rate)."""
    result = Result()
    lock = threading.Lock()
    cursor = iter(range(len(bodies)))
    start = time.perf_counter() + 0.5
    stop_at = start + max_seconds

    def worker() -> None:
        session = requests.Session()
        local: list[float] = []
        while True:
            with lock:
                index = next(cursor, None)
            if index is None:
                break
            due = start + (index / rate if rate > 0 else 0)
            now = time.perf_counter()
            if due > stop_at:
                break
            if due > now:
                time.sleep(due - now)
            body, signature = bodies[index]
            sent = time.perf_counter()
            try:
                response = session.post(
                    url,
                    data=body,
                    headers={"Content-Type": "application/json", "X-Atlas-Signature": signature},
                    timeout=10,
                )
                elapsed = time.perf_counter() - sent
                outcome = (
                    response.json().get("status", "?")
                    if response.status_code == 200
                    else f"HTTP {response.status_code}"
                )
            except requests.RequestException as exc:
                elapsed = time.perf_counter() - sent
                outcome = f"error {type(exc).__name__}"
            local.append(elapsed)
            with lock:
                result.sent += 1
                result.statuses[outcome] = result.statuses.get(outcome, 0) + 1
        with lock:
            result.latencies.extend(local)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=max_seconds + 60)
    return result, time.perf_counter() - start


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def stored_keys(database_url: str) -> list[str]:
    """Every dedup key the server stored (read straight from the database)."""
    if database_url.startswith("sqlite:///"):
        import sqlite3

        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as conn:
            rows = conn.execute("SELECT dedup_key FROM ledger_sync_inbounddelivery").fetchall()
    else:
        import psycopg

        with psycopg.connect(database_url.replace("postgres://", "postgresql://", 1)) as conn:
            rows = conn.execute("SELECT dedup_key FROM ledger_sync_inbounddelivery").fetchall()
    return [row[0] for row in rows]


def expected_key(payload: dict) -> str:
    # Mirrors ledger_sync.services.inbound.webhook_dedup_key (checked by importing it lazily).
    from ledger_sync.services.inbound import WebhookEvent, webhook_dedup_key

    event = WebhookEvent(
        event_type=payload["event"],
        entity_type=payload["entityType"],
        entity_id=payload["entityId"],
        new_status=payload["newStatus"],
        timestamp=payload["timestamp"],
    )
    return webhook_dedup_key(event=event, headers={})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=200.0, help="requests/s; 0 = flat out")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--duplicates", type=float, default=0.02)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=4, help="threads per worker")
    parser.add_argument("--max-seconds", type=float, default=180.0)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    if args.count < 1 or args.count > 100_000:
        parser.error("--count must be between 1 and 100,000")

    secret = secrets.token_hex(16)
    database = prepare_database(os.environ.get("DATABASE_URL"))
    try:
        return _run(args, database=database, secret=secret)
    finally:
        # Also when the server never came up or a check raised: no database is left behind.
        database.drop()


def _run(args: argparse.Namespace, *, database: Database, secret: str) -> int:
    engine = "PostgreSQL" if not database.url.startswith("sqlite") else "SQLite"
    server = None
    try:
        server = start_server(
            database_url=database.url, secret=secret, workers=args.workers, threads=args.threads
        )
        payloads, unique = events(args.count, args.duplicates, args.seed)
        bodies = [signed(payload, secret) for payload in payloads]
        print(
            f"{len(bodies):,} webhooks ({unique:,} distinct events) → {server.url}{WEBHOOK_PATH} "
            f"on {engine}, target {args.rate or 'max'} req/s, {args.clients} clients, "
            f"gunicorn {args.workers}x{args.threads}"
        )
        result, seconds = fire(
            url=server.url + WEBHOOK_PATH,
            bodies=bodies,
            rate=args.rate,
            clients=args.clients,
            max_seconds=args.max_seconds,
        )
        ms = [value * 1000 for value in result.latencies] or [float("nan")]
        print(f"sent {result.sent:,} in {seconds:.1f} s = {result.sent / seconds:.1f} req/s")
        print(
            f"ack latency ms: p50 {percentile(ms, 0.50):.1f}  p90 {percentile(ms, 0.90):.1f}  "
            f"p99 {percentile(ms, 0.99):.1f}  max {max(ms):.1f}  "
            f"mean {statistics.fmean(ms):.1f}"
        )
        print("answers:", ", ".join(f"{k}: {v:,}" for k, v in sorted(result.statuses.items())))
    finally:
        if server is not None:
            server.stop()

    os.environ["DATABASE_URL"] = database.url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")
    import django

    django.setup()
    keys = stored_keys(database.url)
    sent_payloads = payloads[: result.sent]
    expected = {expected_key(payload) for payload in sent_payloads}
    stored_once = len(keys) == len(set(keys))
    all_stored = set(keys) == expected
    duplicates_answered = result.statuses.get("duplicate", 0) == len(sent_payloads) - len(expected)
    # Every answer must be an acknowledgement: a 5xx, a timeout or a refused connection is a
    # failure of the run even when the event was stored anyway.
    unexpected = {k: v for k, v in result.statuses.items() if k not in ("accepted", "duplicate")}
    ok = stored_once and all_stored and duplicates_answered and not unexpected
    if unexpected:
        print("UNEXPECTED answers:", ", ".join(f"{k}: {v:,}" for k, v in unexpected.items()))
    print(
        f"stored {len(keys):,} deliveries for {len(expected):,} distinct events sent: "
        f"{'each exactly once' if stored_once and all_stored else 'MISMATCH'}; "
        f"duplicates answered as such: {'yes' if duplicates_answered else 'NO'}"
    )
    p99 = percentile([v * 1000 for v in result.latencies], 0.99)
    print(f"goal p99 < 50 ms: {'met' if p99 < 50 else 'NOT met'} ({p99:.1f} ms)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
