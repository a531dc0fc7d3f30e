"""ATLAS mirror speed and API economy against the ATLAS sandbox.

    .venv/bin/python benchmarks/mirror.py [--orders 10000] [--items-per-order 5] [--seed 2026]

Sets Django up on a fresh temporary SQLite database, serves the ATLAS sandbox in-process on a
free loopback port (with ATLAS's 100 requests/minute limit on), runs one full mirror pass and
then a second one over the same data, and prints for each: wall time, the ATLAS calls the
sandbox recorded, calls per 1,000 orders, 429s received and the run's counts.
Goals: the first pass of 10,000 orders / 50,000 items well under a minute, under 5 ATLAS calls
per 1,000 orders, no 429; the second pass creates and updates nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument("--items-per-order", type=int, default=5)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()

    workdir = tempfile.TemporaryDirectory(prefix="ledger_sync_bench_")
    database = Path(workdir.name) / "bench.sqlite3"
    # Before Django reads its settings: a database of our own, never the project's.
    os.environ["DATABASE_URL"] = f"sqlite:///{database}"
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.base"
    os.environ.setdefault("LOG_LEVEL", "WARNING")

    import django

    django.setup()

    from django.conf import settings
    from django.core.management import call_command

    from integration.atlas.client import AtlasClient
    from integration.atlas.ratelimit import memory_pacer
    from integration.sandbox.atlas import create_atlas_sandbox
    from integration.sandbox.server import SandboxServer
    from ledger_sync.services.atlas_mirror import atlas_mirror_run

    # migrate applies ledger_sync's migrations once they exist; until then run_syncdb creates
    # its tables straight from the models (an app with an empty migrations package gets none).
    migrations_dir = Path(__file__).resolve().parent.parent / "ledger_sync" / "migrations"
    if not any(migrations_dir.glob("0*.py")):
        settings.MIGRATION_MODULES = {"ledger_sync": None}
    call_command("migrate", run_syncdb=True, verbosity=0)

    started = time.perf_counter()
    app = create_atlas_sandbox(
        seed=args.seed, orders=args.orders, items_per_order=args.items_per_order
    )
    print(
        f"sandbox: {len(app.dataset.orders):,} orders, {len(app.dataset.order_items):,} items, "
        f"{len(app.dataset.invoices):,} invoices, {len(app.dataset.payments):,} payments, "
        f"{len(app.dataset.counterparties):,} counterparties "
        f"(built in {time.perf_counter() - started:.1f}s)"
    )
    with SandboxServer(app) as server:
        for label in ("first pass", "second pass"):
            app.reset_calls()
            client = AtlasClient(
                base_url=server.url,
                username=app.username,
                password="sandbox-password",
                batch_size=settings.ATLAS_BATCH_SIZE,
                limiter=memory_pacer(requests_per_minute=settings.ATLAS_REQUESTS_PER_MINUTE),
            )
            started = time.perf_counter()
            run = atlas_mirror_run(client=client, trigger="command")
            elapsed = time.perf_counter() - started
            calls = len(app.calls)
            rate_limited = sum(1 for call in app.calls if call.status == 429)
            per_thousand = calls / max(len(app.dataset.orders), 1) * 1000
            print(f"\n{label}: {elapsed:.2f}s wall, run {run.pk} {run.status}")
            print(
                f"  ATLAS calls: {calls} (client counted {run.api_calls}), "
                f"{per_thousand:.2f} per 1,000 orders, 429s: {rate_limited} "
                f"(client counted {run.rate_limited})"
            )
            print(f"  {'entity':<24}{'created':>9}{'updated':>9}{'unchanged':>11}{'failed':>8}")
            for entity, counts in run.counts.items():
                print(
                    f"  {entity:<24}{counts['created']:>9}{counts['updated']:>9}"
                    f"{counts['unchanged']:>11}{counts['failed']:>8}"
                )
            if run.error_message:
                print(f"  error: {run.error_message}")
    workdir.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
