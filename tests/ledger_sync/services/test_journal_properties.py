"""Property: every journal the builder accepts balances to the cent, and what it books on the
receivables and payables accounts equals the order's signed gross total — for any mix of items."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from ledger_sync.services.journal_rules import (
    ControlAccounts,
    CounterpartyFacts,
    ItemFacts,
    OrderFacts,
    build_journal_lines,
    control_balance,
    journal_lines_problems,
    lines_totals,
)

CONTROL = ControlAccounts(receivables="1200", payables="2000", output_vat="2200", input_vat="1400")
LIMIT = 10**12

cents = st.integers(min_value=-LIMIT * 100, max_value=LIMIT * 100).map(
    lambda n: Decimal(n).scaleb(-2)
)
small_or_zero = st.one_of(st.just(Decimal("0.00")), cents)


@st.composite
def order_items(draw):
    count = draw(st.integers(min_value=1, max_value=8))
    items = []
    for index in range(count):
        cashflow = draw(st.sampled_from([0, 1]))
        net = draw(small_or_zero)
        vat = draw(st.one_of(st.just(Decimal("0.00")), small_or_zero))
        items.append(
            ItemFacts(
                atlas_id=1000 + index,
                cashflow=cashflow,
                net_amount=net,
                vat_amount=vat,
                description=f"item {index}",
                deal_id=draw(st.one_of(st.none(), st.integers(min_value=1, max_value=10**6))),
                gl_account=draw(st.sampled_from(["", "4001", "5001"])),
            )
        )
    return items


@settings(max_examples=300, deadline=None)
@given(
    items=order_items(),
    zero_amount_entries=st.booleans(),
    total_offset=st.one_of(st.just(Decimal("0.00")), cents),
)
def test_every_accepted_journal_balances_and_books_the_signed_total(
    items, zero_amount_entries, total_offset
):
    gross_total = sum((item.gross_amount for item in items), Decimal("0.00"))
    order = OrderFacts(
        atlas_id=1,
        currency="EUR",
        registration_date=date(2026, 4, 1),
        total_amount=gross_total + total_offset,
    )
    lines = build_journal_lines(
        order=order,
        items=items,
        counterparty=CounterpartyFacts(atlas_id=1, gl_account="4001"),
        mapping_code="BA-1",
        control_accounts=CONTROL,
        custom_field_values={},
        zero_amount_entries=zero_amount_entries,
    )
    problems = journal_lines_problems(order=order, items=items, lines=lines)

    if total_offset != 0:
        assert "totals_disagree" in [p.reason for p in problems]
    if problems:
        return
    debit, credit = lines_totals(lines)
    assert debit == credit
    assert control_balance(lines) == order.total_amount
    assert all(line.amount >= 0 for line in lines)
    assert all(line.amount == line.amount.quantize(Decimal("0.01")) for line in lines)
    if not zero_amount_entries:
        assert all(line.amount != 0 for line in lines)


@settings(max_examples=200, deadline=None)
@given(items=order_items())
def test_a_correct_order_is_always_accepted(items):
    order = OrderFacts(
        atlas_id=1,
        currency="EUR",
        registration_date=date(2026, 4, 1),
        total_amount=sum((item.gross_amount for item in items), Decimal("0.00")),
    )
    lines = build_journal_lines(
        order=order,
        items=items,
        counterparty=CounterpartyFacts(atlas_id=1, gl_account="4001"),
        mapping_code="BA-1",
        control_accounts=CONTROL,
        custom_field_values={},
        zero_amount_entries=False,
    )

    assert journal_lines_problems(order=order, items=items, lines=lines) == []
