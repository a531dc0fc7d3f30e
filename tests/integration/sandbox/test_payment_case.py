"""The sandbox's payment case: a customer's and a self-billing supplier's order, each ready to be
journaled as the guide says, whose payments add up to exactly what the invoice will say."""

from __future__ import annotations

from decimal import Decimal

from integration.sandbox import chart
from integration.sandbox.atlas import create_atlas_sandbox
from integration.sandbox.atlas_seed import STATUS_APPROVED, build_atlas_dataset
from integration.sandbox.payment_case import add_payment_case


def test_the_case_adds_a_receivable_and_a_payable_order_paid_in_full():
    dataset = build_atlas_dataset(seed=7, orders=16)
    before = set(dataset.orders)

    case = add_payment_case(dataset)

    assert {case.receivable.order_id, case.payable.order_id}.isdisjoint(before)
    for order, cashflow, sign in ((case.receivable, 0, 1), (case.payable, 1, -1)):
        record = dataset.orders[order.order_id]
        items = dataset.items_of(order.order_id)
        assert (record["status"], record["erpCode"]) == (STATUS_APPROVED, None)
        assert record["totalAmount"] == sum(i["netAmount"] + i["vatAmount"] for i in items)
        assert record["totalAmount"] == sign * order.gross
        assert all(i["status"] == 2 and i["cashflow"] == cashflow for i in items)
        counterparty = dataset.counterparties[record["counterpartyId"]]
        assert counterparty["externalId"] == order.erp_code
        assert counterparty["glAccount"] in (chart.REVENUE_ACCOUNTS + chart.EXPENSE_ACCOUNTS)
        assert sum(p.amount for p in order.payments) == order.gross
    assert [p.amount for p in case.receivable.payments] == [Decimal("5000.00"), Decimal("6900.00")]
    assert dataset.counterparties[dataset.orders[case.payable.order_id]["counterpartyId"]][
        "selfBilling"
    ]


def test_the_sandbox_serves_the_case_only_when_asked():
    plain = create_atlas_sandbox(seed=7, orders=16)
    with_case = create_atlas_sandbox(seed=7, orders=16, payment_case=True)

    assert plain.payment_case is None
    assert len(with_case.dataset.orders) == len(plain.dataset.orders) + 2
    assert with_case.payment_case.receivable.order_id in with_case.dataset.orders
