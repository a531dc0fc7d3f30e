"""The document rule: which document an order gets, by the direction of its open item."""

from __future__ import annotations

from decimal import Decimal

import pytest

from ledger_sync.services.documents import (
    Direction,
    OrderDocument,
    open_item_direction,
    order_document_for,
)

D = Decimal


@pytest.mark.parametrize(
    ("direction", "self_billing", "document"),
    [
        (Direction.RECEIVABLE, False, OrderDocument.OUR_INVOICE),
        # Self-billing is about what we pay: a self-billing counterparty's receivable is ours.
        (Direction.RECEIVABLE, True, OrderDocument.OUR_INVOICE),
        (Direction.PAYABLE, True, OrderDocument.SELF_BILLING),
        (Direction.PAYABLE, False, OrderDocument.AWAIT_ERP),
        (Direction.NOTHING_OPEN, False, OrderDocument.NONE),
        (Direction.NOTHING_OPEN, True, OrderDocument.NONE),
    ],
)
def test_the_document_follows_the_direction_and_self_billing(direction, self_billing, document):
    assert order_document_for(direction=direction, self_billing=self_billing) is document


@pytest.mark.parametrize(
    ("receivables", "payables", "direction"),
    [
        # One netted control line (what journals.build_journal_lines books).
        (D("17850.00"), D("0"), Direction.RECEIVABLE),  # debit receivables
        (D("-500.00"), D("0"), Direction.RECEIVABLE),  # a credit note to the customer
        (D("0"), D("-23800.00"), Direction.PAYABLE),  # credit payables
        (D("0"), D("120.00"), Direction.PAYABLE),  # a supplier's credit note
        (D("0"), D("0"), Direction.NOTHING_OPEN),  # a mixed order that nets to zero
        # Lines on both (journals from before the control line was netted): by the net.
        (D("1000.00"), D("-400.00"), Direction.RECEIVABLE),
        (D("400.00"), D("-1000.00"), Direction.PAYABLE),
        (D("400.00"), D("-400.00"), Direction.NOTHING_OPEN),
    ],
)
def test_the_direction_is_the_control_line_account_or_the_sign_of_the_net(
    receivables, payables, direction
):
    assert open_item_direction(receivables=receivables, payables=payables) is direction
