"""A payment case for the ATLAS sandbox: two orders whose invoices get paid, so that the demo
and the tests meet settlements in the AR Ledger.

- a receivable: a customer (externalId set, so it is mapped at once) with one Active order in
  the trigger status, gross 11,900.00 EUR, paid by a partial payment of 5,000.00 and a final
  one of 6,900.00;
- a payable: a self-billing supplier with one Passive order, gross -4,760.00 EUR (we pay it),
  paid by one payment of 4,760.00.

Both are dated October 2026 (an open period of the AR Ledger sandbox) and use the sandbox
chart's accounts. The payments are what the bank would confirm through POST /api/payments/ once
the orders' journals are posted and their invoices issued. No Django imports.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from integration.sandbox.atlas_seed import STATUS_APPROVED, AtlasDataset

CUSTOMER_EXTERNAL_ID = "CUST-PAY-0001"
SUPPLIER_EXTERNAL_ID = "VEND-PAY-0001"


@dataclass(frozen=True)
class CasePayment:
    external_id: str
    amount: Decimal
    payment_date: str  # ISO date, as POST /api/payments/ takes it


@dataclass(frozen=True)
class PaymentCaseOrder:
    order_id: int
    counterparty_id: int
    erp_code: str
    gross: Decimal  # positive: what the invoice says
    receivable: bool
    payments: tuple[CasePayment, ...]


@dataclass(frozen=True)
class PaymentCase:
    receivable: PaymentCaseOrder
    payable: PaymentCaseOrder


def add_payment_case(dataset: AtlasDataset) -> PaymentCase:
    """Add the case's counterparties, orders and items to `dataset` (fresh ids); the case."""
    receivable = _add(
        dataset,
        name="Stadtwerke Zahlungstest",
        external_id=CUSTOMER_EXTERNAL_ID,
        self_billing=False,
        cashflow=0,
        gl_account="4001",
        net=Decimal("10000.00"),
        vat=Decimal("1900.00"),
        payments=(
            ("PAY-CASE-RECV-1", Decimal("5000.00"), "2026-10-20"),
            ("PAY-CASE-RECV-2", Decimal("6900.00"), "2026-10-30"),
        ),
    )
    payable = _add(
        dataset,
        name="Windpark Selbstfakturierung",
        external_id=SUPPLIER_EXTERNAL_ID,
        self_billing=True,
        cashflow=1,
        gl_account="5001",
        net=Decimal("-4000.00"),
        vat=Decimal("-760.00"),
        payments=(("PAY-CASE-PAY-1", Decimal("4760.00"), "2026-10-25"),),
    )
    return PaymentCase(receivable=receivable, payable=payable)


def _add(
    dataset: AtlasDataset,
    *,
    name: str,
    external_id: str,
    self_billing: bool,
    cashflow: int,
    gl_account: str,
    net: Decimal,
    vat: Decimal,
    payments: tuple[tuple[str, Decimal, str], ...],
) -> PaymentCaseOrder:
    cp_id = dataset.next_id("counterparties")
    dataset.counterparties[cp_id] = {
        "id": cp_id,
        "name": name,
        "legalName": f"{name} GmbH",
        "externalId": external_id,
        "counterpartyTypeId": 1 if cashflow == 0 else 2,
        "vat": None,
        "glAccount": gl_account,
        "iban": None,
        "swiftBic": None,
        "selfBilling": self_billing,
        "customFieldValues": [],
    }
    order_id = dataset.next_id("orders")
    gross = net + vat
    dataset.orders[order_id] = {
        "id": order_id,
        "counterpartyId": cp_id,
        "status": STATUS_APPROVED,
        "erpCode": None,
        "documentReference": f"SO-2026-10-{order_id:04d}",
        "currency": "EUR",
        "registrationDate": "2026-10-01T00:00:00",
        "dueDate": "2026-10-31T00:00:00",
        "periodFrom": "2026-09-01T00:00:00",
        "periodTo": "2026-09-30T23:59:59",
        "totalAmount": gross,
    }
    item_id = dataset.next_id("order_items")
    item: dict[str, Any] = {
        "id": item_id,
        "orderId": order_id,
        "dealId": 7000 + order_id,
        "description": "Baseload power 2026-09" if cashflow == 0 else "Wind power 2026-09",
        "netAmount": net,
        "vatAmount": vat,
        "vatRate": Decimal("19.0"),
        "volume": Decimal("100.0"),
        "volumeUnit": "MWh",
        "periodFrom": "2026-09-01T00:00:00",
        "periodTo": "2026-09-30T23:59:59",
        "cashflow": cashflow,
        "glAccount": None,
        "iban": None,
        "status": 2,
    }
    dataset.order_items[item_id] = item
    dataset.notable.setdefault("payment_case_orders", []).append(order_id)
    return PaymentCaseOrder(
        order_id=order_id,
        counterparty_id=cp_id,
        erp_code=external_id,
        gross=abs(gross),
        receivable=cashflow == 0,
        payments=tuple(CasePayment(*p) for p in payments),
    )
