"""Reconciling 10,000 orders: wall time and remote calls per system.

    .venv/bin/python benchmarks/reconcile.py [--orders 10000] [--items-per-order 5]
                                             [--seed 2026] [--unpaced]

Sets up as benchmarks/cycle.py does (a fresh temporary SQLite database, both sandboxes served
in-process on loopback, every counterparty given an ERP code, custom fields mapped), runs one
cycle so that the orders are posted and written back, then reconciles twice:
1. the clean book (a fresh ATLAS mirror pass first) — expected 0 differences;
2. after one tampering of each kind (an order changed in ATLAS, a stray transaction, one dropped,
   one edited, one duplicated) — expected one level-1 difference of each kind.
Prints, for each: wall time, the calls each sandbox recorded by endpoint, the AR Ledger calls
the formula predicts (⌈T / 50⌉ transaction pages + one balance call per period compared), and
the differences found per level and kind.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument("--items-per-order", type=int, default=5)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--unpaced", action="store_true", help="Do not pace ATLAS calls.")
    args = parser.parse_args()

    workdir = tempfile.TemporaryDirectory(prefix="ledger_sync_reconcile_")
    os.environ["DATABASE_URL"] = f"sqlite:///{Path(workdir.name) / 'bench.sqlite3'}"
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.base"
    os.environ["JOURNAL_WORKFLOW"] = "auto"
    os.environ.setdefault("LOG_LEVEL", "ERROR")

    import django

    django.setup()

    from django.conf import settings
    from django.core.management import call_command

    from benchmarks.cycle import _onboard
    from integration.atlas.client import AtlasClient
    from integration.atlas.ratelimit import UnlimitedPacer, memory_pacer
    from integration.gotransverse.client import GotransverseClient
    from integration.sandbox.atlas import create_atlas_sandbox
    from integration.sandbox.gotransverse import create_gotransverse_sandbox
    from integration.sandbox.server import SandboxServer
    from ledger_sync.models import Journal
    from ledger_sync.services.pipeline import cycle_run
    from ledger_sync.services.reconciliation import reconciliation_run

    call_command("migrate", verbosity=0)
    atlas_app = create_atlas_sandbox(
        seed=args.seed,
        orders=args.orders,
        items_per_order=args.items_per_order,
        max_recorded_calls=None,
    )
    for counterparty in atlas_app.dataset.counterparties.values():
        counterparty["externalId"] = counterparty["externalId"] or f"CUST-{counterparty['id']:04d}"
    ledger_app = create_gotransverse_sandbox(seed=args.seed, max_recorded_calls=None)

    with SandboxServer(atlas_app) as atlas_server, SandboxServer(ledger_app) as ledger_server:
        settings.ATLAS_BASE_URL = atlas_server.url
        settings.GOTRANSVERSE_BASE_URL = ledger_server.url
        settings.GOTRANSVERSE_API_KEY = ledger_app.api_key
        _onboard(atlas_server.url, atlas_app, settings)

        def clients() -> tuple[AtlasClient, GotransverseClient]:
            pacer = (
                UnlimitedPacer()
                if args.unpaced
                else memory_pacer(requests_per_minute=settings.ATLAS_REQUESTS_PER_MINUTE)
            )
            atlas = AtlasClient(
                base_url=atlas_server.url,
                username=atlas_app.username,
                password="sandbox-password",
                batch_size=settings.ATLAS_BATCH_SIZE,
                limiter=pacer,
            )
            return atlas, GotransverseClient(base_url=ledger_server.url, api_key=ledger_app.api_key)

        started = time.perf_counter()
        atlas, ledger = clients()
        cycle_run(trigger="command", actor="system:benchmark", atlas_client=atlas,
                  gotransverse_client=ledger)  # fmt: skip
        posted = Journal.objects.filter(status=Journal.Status.POSTED).count()
        print(
            f"setup: {len(atlas_app.dataset.orders):,} orders, "
            f"{len(atlas_app.dataset.order_items):,} items; one cycle posted {posted:,} "
            f"journals in {time.perf_counter() - started:.1f}s"
        )

        for label in ("clean book", "after one tampering of each kind"):
            if label != "clean book":
                _tamper(atlas_app, ledger_app)
            atlas_app.reset_calls()
            ledger_app.reset_calls()
            atlas, ledger = clients()
            started = time.perf_counter()
            run = reconciliation_run(
                trigger="benchmark", atlas_client=atlas, gotransverse_client=ledger
            )
            elapsed = time.perf_counter() - started
            _print_run(label, run, elapsed, atlas_app.calls, list(ledger_app.calls), args.orders)
    workdir.cleanup()
    return 0


def _tamper(atlas_app, ledger_app) -> None:
    from ledger_sync.models import Journal

    journals = list(Journal.objects.filter(status=Journal.Status.POSTED).order_by("pk")[:4])
    changed, dropped, edited, duplicated = journals
    order_id = changed.order_sync.order.atlas_id
    total = Decimal(str(atlas_app.dataset.orders[order_id]["totalAmount"]))
    atlas_app.tamper_order(order_id, total_amount=total + Decimal("1.00"))
    ledger_app.tamper_drop_transaction(int(dropped.ledger_transaction_id))
    stored = ledger_app.transaction(int(edited.ledger_transaction_id))
    ledger_app.tamper_edit_entry(stored.id, amount=stored.entries[0].amount + Decimal("0.01"))
    ledger_app.tamper_duplicate_transaction(int(duplicated.ledger_transaction_id))
    template = ledger_app.transaction(int(duplicated.ledger_transaction_id))
    ledger_app.tamper_add_transaction(
        source_transaction_reference="ATLAS-ORDER-99999999-R1",
        entries=[
            {
                "gl_account_num": e.gl_account_num,
                "credit": e.credit,
                "amount": {"amount": str(e.amount), "currency": e.currency},
                "billing_account_num": e.billing_account_num,
                "occurred_on": e.occurred_on.isoformat(),
            }
            for e in template.entries
        ],
    )


def _print_run(label, run, elapsed, atlas_calls, ledger_calls, orders) -> None:
    print(f"\nreconciliation, {label}: {elapsed:.2f}s wall; run {run.pk} {run.status}")
    if run.error:
        print(f"  error: {run.error}")
    print(
        f"  {run.orders_checked:,} orders, {run.accounts_checked:,} account rows, "
        f"{run.counterparties_checked:,} counterparty rows, "
        f"{run.ledger_transactions_read:,} ledger transactions read"
    )
    for system, calls in (("ATLAS", atlas_calls), ("AR Ledger", ledger_calls)):
        by_endpoint = Counter(f"{c.method} {c.path}" for c in calls)
        print(
            f"  {system} calls: {len(calls)} ({len(calls) / max(orders, 1) * 1000:.2f} per "
            f"1,000 orders)"
        )
        for endpoint, n in sorted(by_endpoint.items()):
            print(f"    {n:>5}  {endpoint}")
    balance_calls = sum(1 for c in ledger_calls if c.path.endswith("/balance"))
    predicted = math.ceil(run.ledger_transactions_read / 50) + balance_calls
    print(
        f"  formula: ceil({run.ledger_transactions_read} / 50) + {balance_calls} periods = "
        f"{predicted} AR Ledger calls (recorded: {len(ledger_calls)})"
    )
    kinds = run.summary.get("differences", {})
    print(f"  {run.difference_count} differences: {kinds or 'none'}")


if __name__ == "__main__":
    raise SystemExit(main())
