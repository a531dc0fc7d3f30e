"""How long the error-queue refresh takes, and what it writes, at volume.

    .venv/bin/python benchmarks/problems_refresh.py [--orders 10000] [--blocked 3000]

Fills a fresh SQLite database with `--orders` orders, `--blocked` of them blocked and 5% of the
rest failed, then prints, first line first: the first refresh (every problem created), a
second one with nothing changed (must write nothing), and one after a tenth of the blocked
orders were released (those resolved), each with its time and SQL query count.
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
    parser.add_argument("--blocked", type=int, default=3_000)
    args = parser.parse_args()

    workdir = tempfile.TemporaryDirectory(prefix="ledger_sync_problems_")
    # Before Django reads its settings: a database of our own, never the project's.
    os.environ["DATABASE_URL"] = f"sqlite:///{Path(workdir.name) / 'bench.sqlite3'}"
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.base"
    os.environ.setdefault("LOG_LEVEL", "ERROR")

    import django

    django.setup()

    from django.core.management import call_command
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from ledger_sync.models import BlockedReason, Counterparty, Order, OrderState, OrderSync
    from ledger_sync.services.problems import problems_refresh

    call_command("migrate", verbosity=0)
    now = timezone.now()
    mirrored = {
        "raw_json": "{}",
        "content_hash": "0" * 64,
        "first_seen_at": now,
        "last_seen_at": now,
        "last_changed_at": now,
    }
    counterparty = Counterparty.objects.create(atlas_id=1, name="Energy Trader", **mirrored)
    Order.objects.bulk_create(
        [
            Order(
                atlas_id=n,
                counterparty=counterparty,
                counterparty_atlas_id=1,
                status="Approved order by ETRM",
                document_reference=f"SO-{n:06d}",
                currency="EUR",
                registration_date=now,
                due_date=now,
                total_amount="100.00",
                **mirrored,
            )
            for n in range(1, args.orders + 1)
        ],
        batch_size=2000,
    )
    syncs = []
    for index, order_pk in enumerate(Order.objects.order_by("pk").values_list("pk", flat=True)):
        if index < args.blocked:
            syncs.append(
                OrderSync(
                    order_id=order_pk,
                    state=OrderState.BLOCKED,
                    blocked_reason=BlockedReason.UNKNOWN_GL_ACCOUNT,
                    blocked_message=f"GL account 4999 of order {order_pk} is not in the chart.",
                )
            )
        elif index % 20 == 0:
            syncs.append(
                OrderSync(order_id=order_pk, state=OrderState.FAILED, attempts=2, last_error="503")
            )
        else:
            syncs.append(OrderSync(order_id=order_pk, state=OrderState.POSTED))
    OrderSync.objects.bulk_create(syncs, batch_size=2000)

    def measure(label: str) -> None:
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            report = problems_refresh()
            seconds = time.perf_counter() - started
        totals = {k: sum(r.get(k, 0) for r in report.values()) for k in ("created", "updated")}
        resolved = sum(r.get("resolved", 0) for r in report.values())
        print(
            f"{label}: {seconds:.2f} s, {len(queries)} queries; created {totals['created']}, "
            f"updated {totals['updated']}, resolved {resolved}"
        )

    measure("first refresh")
    measure("second refresh, nothing changed")
    released = list(
        OrderSync.objects.filter(state=OrderState.BLOCKED).values_list("pk", flat=True)[
            : args.blocked // 10
        ]
    )
    OrderSync.objects.filter(pk__in=released).update(state=OrderState.READY, blocked_reason="")
    measure(f"after {len(released)} orders were released")
    workdir.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
