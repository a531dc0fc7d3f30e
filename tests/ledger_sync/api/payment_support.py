"""An ATLAS invoice (in the sandbox and in the mirror) for an order in INVOICED, to pay."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from integration.atlas.client import AtlasClient
from ledger_sync.models import Order, OrderState, OrderSync
from ledger_sync.services.atlas_mirror import atlas_mirror_records


@dataclass
class PayableInvoice:
    atlas_id: int
    external_id: str
    order_atlas_id: int
    amount: Decimal
    currency: str
    invoice_number: str


def atlas_client_for(atlas) -> AtlasClient:
    return AtlasClient(
        base_url=atlas.url,
        username=atlas.username,
        password="sandbox-password",
        max_retries=0,
        sleep=lambda _s: None,
    )


def order_without_invoice(dataset) -> int:
    with_invoice = {invoice["orderId"] for invoice in dataset.invoices.values()}
    return next(oid for oid in sorted(dataset.orders) if oid not in with_invoice)


def payable_invoice(
    atlas,
    *,
    amount: Decimal = Decimal("1000.00"),
    external_id: str = "INV-T-0001",
    state: str = OrderState.INVOICED,
) -> PayableInvoice:
    client = atlas_client_for(atlas)
    order_id = order_without_invoice(atlas.app.dataset)
    (created,) = client.post_invoices(
        [
            {
                "orderId": order_id,
                "externalId": external_id,
                "invoiceNumber": "INV-2026-0001",
                "amount": amount,
                "invoiceDate": "2026-04-01T00:00:00",
                "dueDate": "2026-04-15T00:00:00",
                "isPaid": False,
            }
        ]
    ).records
    atlas_mirror_records(client=client, entity="Order", atlas_ids=[order_id], trigger="command")
    atlas_mirror_records(client=client, entity="Invoice", atlas_ids=[created.id], trigger="command")
    order = Order.objects.get(atlas_id=order_id)
    OrderSync.objects.create(order=order, state=state)
    atlas.app.reset_calls()
    return PayableInvoice(
        atlas_id=created.id,
        external_id=external_id,
        order_atlas_id=order_id,
        amount=amount,
        currency=order.currency,
        invoice_number="INV-2026-0001",
    )
