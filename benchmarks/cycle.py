"""The whole cycle end to end: mirror, select, build, post, write back.

    .venv/bin/python benchmarks/cycle.py [--orders 10000] [--items-per-order 5] [--seed 2026]
                                         [--unpaced] [--workflow auto]

Sets Django up on a fresh temporary SQLite database, serves the ATLAS and the AR Ledger
sandboxes in-process on free loopback ports (ATLAS's 100 requests/minute limit on, and the
client paced at ATLAS_REQUESTS_PER_MINUTE unless --unpaced), gives every counterparty an ERP
code (externalId) so that every healthy order is bookable, then runs one cycle and a second one
over the same data. Prints for each: wall time, orders per second, the calls each remote system
recorded (by endpoint, and per 1,000 orders) against the calls the batch sizes require, and
what the cycle blocked. Goals: the first cycle of 10,000 orders / 50,000 items under 60 s on
SQLite; no more remote calls than the batches need; the second cycle posts and writes nothing.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument("--items-per-order", type=int, default=5)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--workflow", choices=("auto", "review"), default="auto")
    parser.add_argument(
        "--unpaced", action="store_true", help="Do not pace ATLAS calls (measure our own speed)."
    )
    args = parser.parse_args()

    workdir = tempfile.TemporaryDirectory(prefix="ledger_sync_cycle_")
    database = Path(workdir.name) / "bench.sqlite3"
    # Before Django reads its settings: a database of our own, never the project's.
    os.environ["DATABASE_URL"] = f"sqlite:///{database}"
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.base"
    os.environ["JOURNAL_WORKFLOW"] = args.workflow
    os.environ.setdefault("LOG_LEVEL", "ERROR")

    import django

    django.setup()

    from django.conf import settings
    from django.core.management import call_command

    from integration.atlas.client import AtlasClient
    from integration.atlas.ratelimit import UnlimitedPacer, memory_pacer
    from integration.gotransverse.client import GotransverseClient
    from integration.sandbox.atlas import create_atlas_sandbox
    from integration.sandbox.gotransverse import create_gotransverse_sandbox
    from integration.sandbox.server import SandboxServer
    from ledger_sync.models import Journal, OrderSync
    from ledger_sync.services.pipeline import cycle_run

    migrations_dir = Path(__file__).resolve().parent.parent / "ledger_sync" / "migrations"
    if not any(migrations_dir.glob("0*.py")):
        settings.MIGRATION_MODULES = {"ledger_sync": None}
    call_command("migrate", run_syncdb=True, verbosity=0)

    pacing = "unpaced" if args.unpaced else f"paced at {settings.ATLAS_REQUESTS_PER_MINUTE}/min"
    started = time.perf_counter()
    atlas_app = create_atlas_sandbox(
        seed=args.seed,
        orders=args.orders,
        items_per_order=args.items_per_order,
        max_recorded_calls=None,
    )
    for counterparty in atlas_app.dataset.counterparties.values():
        counterparty["externalId"] = counterparty["externalId"] or f"CUST-{counterparty['id']:04d}"
    ledger_app = create_gotransverse_sandbox(seed=args.seed, max_recorded_calls=None)
    print(
        f"sandboxes: {len(atlas_app.dataset.orders):,} orders, "
        f"{len(atlas_app.dataset.order_items):,} items, "
        f"{len(atlas_app.dataset.counterparties):,} counterparties "
        f"(built in {time.perf_counter() - started:.1f}s); workflow {args.workflow}; "
        f"ATLAS {pacing}"
    )

    with SandboxServer(atlas_app) as atlas_server, SandboxServer(ledger_app) as ledger_server:
        settings.ATLAS_BASE_URL = atlas_server.url
        settings.GOTRANSVERSE_BASE_URL = ledger_server.url
        settings.GOTRANSVERSE_API_KEY = ledger_app.api_key
        _onboard(atlas_server.url, atlas_app, settings)
        for label in ("first cycle", "second cycle"):
            atlas_app.reset_calls()
            ledger_app.reset_calls()
            atlas = AtlasClient(
                base_url=atlas_server.url,
                username=atlas_app.username,
                password="sandbox-password",
                batch_size=settings.ATLAS_BATCH_SIZE,
                limiter=(
                    UnlimitedPacer()
                    if args.unpaced
                    else memory_pacer(requests_per_minute=settings.ATLAS_REQUESTS_PER_MINUTE)
                ),
            )
            ledger = GotransverseClient(base_url=ledger_server.url, api_key=ledger_app.api_key)
            posted_before = Journal.objects.filter(status=Journal.Status.POSTED).count()
            started = time.perf_counter()
            report = cycle_run(
                trigger="command",
                actor="system:benchmark",
                atlas_client=atlas,
                gotransverse_client=ledger,
            )
            elapsed = time.perf_counter() - started
            _print_cycle(
                label=label,
                elapsed=elapsed,
                report=report,
                atlas_calls=atlas_app.calls,
                ledger_calls=list(ledger_app.calls),
                orders=len(atlas_app.dataset.orders),
                posted=Journal.objects.filter(status=Journal.Status.POSTED).count() - posted_before,
                synced=OrderSync.objects.count(),
                settings=settings,
            )
        duplicates = [
            ref
            for ref, n in Counter(
                t.source_transaction_reference for t in ledger_app.transactions
            ).items()
            if n > 1
        ]
        print(
            f"\nledger holds {len(ledger_app.transactions):,} transactions, "
            f"{len(duplicates)} duplicated references"
        )
    workdir.cleanup()
    return 0


def _onboard(url, atlas_app, settings) -> None:
    """What a finance lead does once before the first cycle: map ATLAS's custom fields to
    journal entry_values keys (a required, unmapped field blocks every journal)."""
    from django.contrib.auth import get_user_model
    from django.utils.text import slugify

    from integration.atlas.client import AtlasClient
    from integration.atlas.ratelimit import UnlimitedPacer
    from ledger_sync.models import CustomFieldDefinition
    from ledger_sync.services.atlas_mirror import atlas_mirror_records
    from ledger_sync.services.custom_fields import custom_field_mapping_set

    client = AtlasClient(
        base_url=url,
        username=atlas_app.username,
        password="sandbox-password",
        limiter=UnlimitedPacer(),
    )
    atlas_mirror_records(
        client=client,
        entity="CustomFieldDefinition",
        atlas_ids=list(atlas_app.dataset.counterparty_custom_fields),
        trigger="command",
    )
    lead = get_user_model().objects.create_superuser("benchmark-lead", password="unused-pw-1")
    for definition in CustomFieldDefinition.objects.all():
        custom_field_mapping_set(
            definition=definition, user=lead, target_key=slugify(definition.name).replace("-", "_")
        )
    atlas_app.reset_calls()


def _print_cycle(
    *, label, elapsed, report, atlas_calls, ledger_calls, orders, posted, synced, settings
) -> None:
    per_second = posted / elapsed if elapsed else 0.0
    print(
        f"\n{label}: {elapsed:.2f}s wall, {orders / elapsed:,.0f} orders/s through the cycle, "
        f"{posted:,} journals posted ({per_second:,.0f}/s)"
    )
    for stage, counts in report.stages.items():
        seconds = report.stage_seconds.get(stage)
        took = f" [{seconds:.1f}s]" if seconds is not None else ""
        print(f"  {stage:<20}{took} {', '.join(f'{k}={v}' for k, v in counts.items())}")
    for system, calls in (("ATLAS", atlas_calls), ("AR Ledger", ledger_calls)):
        by_endpoint = Counter(f"{c.method} {c.path}" for c in calls)
        per_thousand = len(calls) / max(orders, 1) * 1000
        print(f"  {system} calls: {len(calls)} ({per_thousand:.2f} per 1,000 orders)")
        for endpoint, n in sorted(by_endpoint.items()):
            print(f"    {n:>5}  {endpoint}")
    write_back = report.stages.get("write_back", {})
    post = report.stages.get("post", {})
    need_ledger = math.ceil(post.get("sent", 0) / settings.LEDGER_POST_BATCH_SIZE)
    need_orders = math.ceil(write_back.get("erp_codes_written", 0) / settings.ATLAS_BATCH_SIZE)
    need_invoices = math.ceil(write_back.get("invoices_created", 0) / settings.ATLAS_BATCH_SIZE)
    print(
        f"  batches required: {need_ledger} AR Ledger bulk create(s) "
        f"({settings.LEDGER_POST_BATCH_SIZE}/call), {need_orders} Order/Post, "
        f"{need_invoices} Invoice/GetByExternalIds + {need_invoices} Invoice/Post "
        f"({settings.ATLAS_BATCH_SIZE}/call)"
    )
    reasons = Counter(p.reason for p in report.problems)
    print(
        f"  {len(report.blocked)} blocked, {len(report.failed)} failed "
        f"({', '.join(f'{r}={n}' for r, n in reasons.most_common()) or 'none'}); "
        f"{synced:,} orders tracked; {len(report.errors)} stage error(s)"
    )


if __name__ == "__main__":
    raise SystemExit(main())
