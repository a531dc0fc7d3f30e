"""Serve the ATLAS and Gotransverse sandboxes on loopback until interrupted (demo, load tests)."""

from __future__ import annotations

import signal
import threading
from collections import Counter
from typing import Any

from django.conf import settings
from django.core.management import BaseCommand, CommandError

from integration.sandbox.atlas import create_atlas_sandbox
from integration.sandbox.faults import FaultConfig
from integration.sandbox.gotransverse import create_gotransverse_sandbox
from integration.sandbox.server import SandboxServer


class Command(BaseCommand):
    help = "Serve the ATLAS and Gotransverse sandboxes on 127.0.0.1, seeded with realistic data."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--seed", type=int, default=settings.SANDBOX_SEED)
        parser.add_argument("--orders", type=int, default=settings.SANDBOX_ORDERS)
        parser.add_argument("--items-per-order", type=int, default=5)
        parser.add_argument("--atlas-port", type=int, default=settings.SANDBOX_ATLAS_PORT)
        parser.add_argument(
            "--gotransverse-port", type=int, default=settings.SANDBOX_GOTRANSVERSE_PORT
        )
        parser.add_argument(
            "--webhook-url",
            default=settings.SANDBOX_WEBHOOK_URL,
            help="Where ATLAS webhooks go ('' for none).",
        )
        parser.add_argument(
            "--error-rate", type=float, default=0.0, help="Share of ATLAS calls answered 5xx."
        )
        parser.add_argument(
            "--slow-rate", type=float, default=0.0, help="Share of ATLAS calls answered slowly."
        )
        parser.add_argument("--slow-seconds", type=float, default=2.0)
        parser.add_argument("--token-lifetime", type=int, default=3600, help="Seconds.")
        parser.add_argument(
            "--no-rate-limit", action="store_true", help="Lift ATLAS's 100 calls per minute."
        )
        parser.add_argument(
            "--no-payment-case",
            action="store_true",
            help="Leave out the payment case (a customer and a self-billing supplier whose "
            "invoices get paid: integration/sandbox/payment_case.py).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        host = settings.SANDBOX_HOST
        try:
            faults = FaultConfig(
                seed=options["seed"],
                error_rate=options["error_rate"],
                slow_rate=options["slow_rate"],
                slow_seconds=options["slow_seconds"],
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"Seeding ATLAS: seed {options['seed']}, {options['orders']} orders ...")
        atlas = create_atlas_sandbox(
            seed=options["seed"],
            orders=options["orders"],
            items_per_order=options["items_per_order"],
            document_cases=True,
            payment_case=not options["no_payment_case"],
            username=settings.ATLAS_USERNAME,
            password=settings.ATLAS_PASSWORD,
            token_lifetime_seconds=options["token_lifetime"],
            rate_limit_per_minute=None if options["no_rate_limit"] else 100,
            faults=faults,
            webhook_url=options["webhook_url"] or None,
            webhook_secret=settings.ATLAS_WEBHOOK_SECRET,
            max_recorded_calls=10_000,
        )
        self._describe(atlas)
        servers: list[SandboxServer] = []
        try:
            servers.append(SandboxServer(atlas, host=host, port=options["atlas_port"]).start())
            self.stdout.write(self.style.SUCCESS(f"ATLAS sandbox:        {servers[0].url}"))
            self.stdout.write(f"  controls:           {servers[0].url}/_sandbox/...")
            if atlas.webhook_url:
                self.stdout.write(f"  webhooks go to:     {atlas.webhook_url}")
            gotransverse = create_gotransverse_sandbox(
                seed=options["seed"],
                api_key=settings.GOTRANSVERSE_API_KEY,
                # The AR Ledger answers an outage with 503, the one status its client retries.
                faults=FaultConfig(
                    seed=options["seed"],
                    error_rate=options["error_rate"],
                    slow_rate=options["slow_rate"],
                    slow_seconds=options["slow_seconds"],
                    error_statuses=(503,),
                ),
            )
            servers.append(
                SandboxServer(gotransverse, host=host, port=options["gotransverse_port"]).start()
            )
            self.stdout.write(self.style.SUCCESS(f"Gotransverse sandbox: {servers[-1].url}"))
            self._tamper_help(servers[0].url, servers[-1].url)
        except OSError as exc:
            for server in servers:
                server.stop()
            raise CommandError(f"Cannot listen on {host}: {exc}") from exc

        stop = threading.Event()
        # The demo stops its children with SIGTERM: shut the servers down cleanly on it too.
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        self.stdout.write("Serving until interrupted (Ctrl-C).")
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            for server in servers:
                server.stop()
            self.stdout.write("Sandboxes stopped.")

    def _tamper_help(self, atlas_url: str, ledger_url: str) -> None:
        """Tampering is done once journals are posted, so it is a control, not a flag: these
        are what the reconciliation demo sends (integration/sandbox/tampering.py)."""
        self.stdout.write(
            "  tamper (for `python manage.py reconcile`), POST JSON to /_sandbox/tamper:"
        )
        self.stdout.write(f'    {atlas_url}  {{"orderId": 210, "totalAmount": "1.00"}}')
        for body in (
            '{"action": "drop", "transaction_id": 1001}',
            '{"action": "duplicate", "transaction_id": 1001}',
            '{"action": "edit", "transaction_id": 1001, "entry_index": 0, "amount": "1.00"}',
            '{"action": "add", "source_transaction_reference": "ATLAS-ORDER-1-R9", '
            '"entries": [...]}',
        ):
            self.stdout.write(f"    {ledger_url}  {body}")

    def _describe(self, atlas: Any) -> None:
        dataset = atlas.dataset
        statuses = Counter(order["status"] for order in dataset.orders.values())
        self.stdout.write(
            f"  {len(dataset.counterparties)} counterparties, {len(dataset.orders)} orders, "
            f"{len(dataset.order_items)} items, {len(dataset.invoices)} invoices, "
            f"{len(dataset.payments)} payments"
        )
        for status, count in statuses.most_common():
            self.stdout.write(f"  {count:6d}  {status}")
        self.stdout.write("  One order per case of the document rule (for the demo):")
        for case, order_id in dataset.document_cases.items():
            self.stdout.write(f"    {case}: order {order_id}")
        self.stdout.write("  Deliberately broken records (for the demo):")
        for kind, ids in dataset.broken.items():
            if ids:
                self.stdout.write(f"    {kind}: {', '.join(map(str, ids))}")
