"""Shared set-up of the posting, claims, write-back and cycle tests: built journals and a
Gotransverse sandbox served over loopback."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from integration.gotransverse.client import GotransverseClient
from integration.sandbox.gotransverse import GotransverseSandbox
from integration.sandbox.server import SandboxServer
from ledger_sync.models import Journal, JournalLine, Order, OrderState, OrderSync
from tests.factories.atlas import OrderFactory

API_KEY = "test-api-key"


class ServedLedger:
    def __init__(self, app: GotransverseSandbox, server: SandboxServer):
        self.app = app
        self.server = server
        self.url = server.url

    def client(self, **options: Any) -> GotransverseClient:
        options.setdefault("max_retries", 0)
        options.setdefault("sleep", lambda _seconds: None)
        return GotransverseClient(base_url=self.url, api_key=API_KEY, **options)

    def bulk_creates(self) -> list[Any]:
        return self.app.calls_to("/ledgers/1/accounting-transactions/bulk", "POST")


@pytest.fixture(name="ledger")
def ledger_fixture(settings) -> Iterator[ServedLedger]:
    """A fresh AR Ledger sandbox on loopback, with the settings pointed at it."""
    app = GotransverseSandbox(api_key=API_KEY)
    server = SandboxServer(app).start()
    settings.GOTRANSVERSE_BASE_URL = server.url
    settings.GOTRANSVERSE_API_KEY = API_KEY
    settings.GOTRANSVERSE_LEDGER_ID = "1"
    settings.GOTRANSVERSE_MAX_RETRIES = 0
    try:
        yield ServedLedger(app, server)
    finally:
        server.stop()


def standard_lines(
    *, receivables: str = "1200", revenue: str = "4001", output_vat: str = "2200"
) -> list[tuple[str, str, Decimal]]:
    """The guide's order 210: gross 85,500.00 = net 71,848.74 + VAT 13,651.26."""
    return [
        ("debit", receivables, Decimal("85500.00")),
        ("credit", revenue, Decimal("71848.74")),
        ("credit", output_vat, Decimal("13651.26")),
    ]


def built_journal(
    *,
    order: Order | None = None,
    workflow: str = Journal.Workflow.AUTO,
    lines: list[tuple[str, str, Decimal]] | None = None,
    state: str = OrderState.JOURNAL_BUILT,
    occurred_on: date = date(2026, 4, 1),
    billing_account_num: str = "CUST-0042",
    **order_fields: Any,
) -> Journal:
    """An order in JOURNAL_BUILT with its stored journal, as the builder leaves it."""
    order = order or OrderFactory(**order_fields)
    order_sync, _ = OrderSync.objects.get_or_create(order=order, defaults={"state": state})
    lines = lines if lines is not None else standard_lines()
    debit = sum((amount for side, _, amount in lines if side == "debit"), Decimal("0"))
    credit = sum((amount for side, _, amount in lines if side == "credit"), Decimal("0"))
    journal = Journal.objects.create(
        order_sync=order_sync,
        revision=order_sync.revision,
        kind=Journal.Kind.POSTING,
        status=Journal.Status.BUILT,
        source_transaction_reference=f"ATLAS-ORDER-{order.atlas_id}-R{order_sync.revision}",
        workflow=workflow,
        currency="EUR",
        total_debit=debit,
        total_credit=credit,
        occurred_on=occurred_on,
        event_date=occurred_on,
    )
    JournalLine.objects.bulk_create(
        JournalLine(
            journal=journal,
            position=position,
            side=side,
            gl_account=account,
            amount=amount,
            currency="EUR",
            billing_account_num=billing_account_num,
            description=f"{order.document_reference} line {position}",
            entry_values={"atlas_order_id": order.atlas_id},
        )
        for position, (side, account, amount) in enumerate(lines, start=1)
    )
    return journal


def refreshed(instance: Any) -> Any:
    instance.refresh_from_db()
    return instance
