"""The pure double-entry rules: plain values in, journal lines out (no database)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from ledger_sync.services.journal_rules import (
    ControlAccounts,
    CounterpartyFacts,
    ItemFacts,
    LineRole,
    OrderFacts,
    Side,
    build_journal_lines,
    control_balance,
    journal_lines_problems,
    lines_totals,
)

D = Decimal
CONTROL = ControlAccounts(receivables="1200", payables="2000", output_vat="2200", input_vat="1400")
ORDER = OrderFacts(
    atlas_id=210,
    currency="EUR",
    registration_date=date(2026, 4, 1),
    total_amount=D("85500.00"),
    document_reference="SO-2026-04-0042",
    period_from=date(2026, 3, 1),
    period_to=date(2026, 3, 31),
)
COUNTERPARTY = CounterpartyFacts(atlas_id=42, name="Energy Trader", gl_account="4001")


def item(**kwargs) -> ItemFacts:
    values = {
        "atlas_id": 9001,
        "cashflow": 0,
        "net_amount": D("71848.74"),
        "vat_amount": D("13651.26"),
        "description": "Baseload power 2026-03",
        "deal_id": 5001,
        "vat_rate": D("19.0"),
        "period_from": date(2026, 3, 1),
        "period_to": date(2026, 3, 31),
    }
    values.update(kwargs)
    return ItemFacts(**values)


def build(items, *, order=ORDER, counterparty=COUNTERPARTY, zero=False, custom=None):
    return build_journal_lines(
        order=order,
        items=items,
        counterparty=counterparty,
        mapping_code="BA-100042",
        control_accounts=CONTROL,
        custom_field_values=custom or {},
        zero_amount_entries=zero,
    )


def shape(lines):
    return [(str(line.side), line.gl_account, line.amount) for line in lines]


def test_active_item_debits_receivables_gross_and_credits_revenue_net_and_output_vat():
    lines = build([item()])

    assert shape(lines) == [
        ("debit", "1200", D("85500.00")),
        ("credit", "4001", D("71848.74")),
        ("credit", "2200", D("13651.26")),
    ]
    assert [line.role for line in lines] == [
        LineRole.RECEIVABLES,
        LineRole.REVENUE,
        LineRole.OUTPUT_VAT,
    ]


def test_passive_item_debits_expense_net_and_input_vat_and_credits_payables_gross():
    lines = build(
        [item(cashflow=1, net_amount=D("-1000.00"), vat_amount=D("-190.00"), gl_account="5001")]
    )

    assert shape(lines) == [
        ("debit", "5001", D("1000.00")),
        ("debit", "1400", D("190.00")),
        ("credit", "2000", D("1190.00")),
    ]


def test_active_correction_swaps_every_side():
    lines = build([item(net_amount=D("-100.00"), vat_amount=D("-19.00"))])

    assert shape(lines) == [
        ("credit", "1200", D("119.00")),
        ("debit", "4001", D("100.00")),
        ("debit", "2200", D("19.00")),
    ]
    assert all(line.correction for line in lines)
    assert all("(correction)" in line.description for line in lines)


def test_passive_correction_swaps_every_side():
    lines = build(
        [item(cashflow=1, net_amount=D("50.00"), vat_amount=D("9.50"), gl_account="5001")]
    )

    assert shape(lines) == [
        ("credit", "5001", D("50.00")),
        ("credit", "1400", D("9.50")),
        ("debit", "2000", D("59.50")),
    ]


def test_amounts_on_lines_are_never_negative():
    lines = build(
        [
            item(atlas_id=1, net_amount=D("-5.00"), vat_amount=D("-0.95")),
            item(atlas_id=2, cashflow=1, net_amount=D("7.00"), vat_amount=D("1.33")),
        ]
    )

    assert lines and all(line.amount >= 0 for line in lines)


def test_zero_vat_line_is_dropped_by_default():
    lines = build([item(net_amount=D("100.00"), vat_amount=D("0.00"), vat_rate=D("0"))])

    assert shape(lines) == [("debit", "1200", D("100.00")), ("credit", "4001", D("100.00"))]


def test_zero_lines_are_kept_when_the_ledger_creates_zero_amount_entries():
    lines = build([item(net_amount=D("100.00"), vat_amount=D("0.00"))], zero=True)

    assert shape(lines) == [
        ("debit", "1200", D("100.00")),
        ("credit", "4001", D("100.00")),
        ("credit", "2200", D("0.00")),
    ]


def test_item_with_every_amount_zero_yields_no_line():
    assert build([item(net_amount=D("0.00"), vat_amount=D("0.00"))]) == []


def test_item_gl_account_wins_over_the_counterpartys():
    lines = build([item(gl_account="4002")])

    assert lines[1].gl_account == "4002"


def test_counterparty_gl_account_is_the_fallback_when_the_item_has_none():
    lines = build([item(gl_account="")])

    assert lines[1].gl_account == "4001"


def test_no_gl_account_anywhere_leaves_the_revenue_line_without_account():
    lines = build([item(gl_account="")], counterparty=CounterpartyFacts(atlas_id=42, gl_account=""))

    assert lines[1].role is LineRole.REVENUE and lines[1].gl_account == ""


def test_each_line_carries_billing_account_dates_currency():
    lines = build([item()])

    for line in lines:
        assert line.billing_account_num == "BA-100042"
        assert line.occurred_on == date(2026, 4, 1)
        assert line.event_date == date(2026, 4, 1)
        assert line.currency == "EUR"
        assert line.item_atlas_id == 9001


def test_entry_values_hold_mapped_custom_fields_and_atlas_references():
    lines = build([item()], custom={"cost_centre": "CC-100", "atlas_order_id": "spoofed"})

    assert lines[0].entry_values == {
        "cost_centre": "CC-100",
        "atlas_order_id": 210,
        "atlas_order_item_id": 9001,
        "atlas_deal_id": 5001,
    }


def test_entry_values_omit_a_missing_deal_id():
    lines = build([item(deal_id=None)])

    assert "atlas_deal_id" not in lines[0].entry_values


def test_description_names_order_item_period_and_role():
    lines = build([item()])

    assert lines[0].description == (
        "SO-2026-04-0042 · Baseload power 2026-03 · 2026-03-01 to 2026-03-31 · receivable"
    )
    assert lines[2].description.endswith("· output VAT 19%")


def test_description_falls_back_to_order_period_and_atlas_id():
    order = OrderFacts(
        atlas_id=77,
        currency="EUR",
        registration_date=date(2026, 4, 1),
        total_amount=D("1.00"),
        period_from=date(2026, 2, 1),
        period_to=date(2026, 2, 28),
    )
    lines = build([item(description="", period_from=None, period_to=None)], order=order)

    assert lines[1].description == "ATLAS order 77 · item 9001 · 2026-02-01 to 2026-02-28 · revenue"


def test_description_is_cut_to_255_characters():
    lines = build([item(description="x" * 400)])

    assert all(len(line.description) <= 255 for line in lines)


def test_mixed_order_balances_and_control_lines_equal_signed_total():
    items = [
        item(atlas_id=1),
        item(atlas_id=2, cashflow=1, net_amount=D("-1000.00"), vat_amount=D("-190.00")),
        item(atlas_id=3, net_amount=D("-10.00"), vat_amount=D("-1.90")),
    ]
    lines = build(items)
    debit, credit = lines_totals(lines)

    assert debit == credit
    assert control_balance(lines) == sum((i.gross_amount for i in items), D("0"))


def test_lines_are_in_item_id_order_whatever_the_input_order():
    lines = build([item(atlas_id=2), item(atlas_id=1)])

    # The order's one control line first (no item), then each item's lines.
    assert [line.item_atlas_id for line in lines] == [None, 1, 1, 2, 2]


def test_pure_checks_accept_a_correct_journal():
    items = [item()]

    assert journal_lines_problems(order=ORDER, items=items, lines=build(items)) == []


def test_pure_checks_report_totals_with_both_figures():
    items = [item()]
    order = OrderFacts(**{**ORDER.__dict__, "total_amount": D("85400.00")})

    problems = journal_lines_problems(order=order, items=items, lines=build(items, order=order))

    assert [p.reason for p in problems] == ["totals_disagree"]
    assert "85,400.00 EUR" in problems[0].message
    assert "85,500.00 EUR" in problems[0].message


def test_pure_checks_report_unbalanced_lines_with_both_figures():
    items = [item()]
    lines = build(items)
    lines[1] = type(lines[1])(**{**lines[1].__dict__, "amount": D("71848.00")})

    problems = journal_lines_problems(order=ORDER, items=items, lines=lines)

    assert [p.reason for p in problems] == ["unbalanced"]
    assert "85,500.00 EUR" in problems[0].message and "85,499.26 EUR" in problems[0].message


def test_pure_checks_refuse_sub_cent_amounts():
    items = [item(net_amount=D("1.005"), vat_amount=D("0.00"))]
    order = OrderFacts(**{**ORDER.__dict__, "total_amount": D("1.005")})

    problems = journal_lines_problems(order=order, items=items, lines=build(items, order=order))

    assert "invalid_record" in [p.reason for p in problems]


def test_pure_checks_refuse_an_unknown_currency():
    items = [item()]
    order = OrderFacts(**{**ORDER.__dict__, "currency": "EURO"})

    problems = journal_lines_problems(order=order, items=items, lines=build(items, order=order))

    assert [p.reason for p in problems] == ["currency_mismatch"]


def test_side_opposite():
    assert Side.DEBIT.opposite is Side.CREDIT and Side.CREDIT.opposite is Side.DEBIT


# --- one control line per order: mixed orders net under one billing account ------------------


def test_a_mixed_order_gets_one_receivable_for_its_net_and_vat_lines_per_direction():
    sale = item(atlas_id=1, net_amount=D("1000.00"), vat_amount=D("190.00"))
    purchase = item(
        atlas_id=2, cashflow=1, net_amount=D("-400.00"), vat_amount=D("-76.00"), gl_account="5001"
    )

    lines = build([sale, purchase])

    assert shape(lines) == [
        ("debit", "1200", D("714.00")),  # 1,190.00 - 476.00: what the one invoice says
        ("credit", "4001", D("1000.00")),
        ("credit", "2200", D("190.00")),
        ("debit", "5001", D("400.00")),
        ("debit", "1400", D("76.00")),
    ]
    assert lines[0].entry_values == {"atlas_order_id": 210}
    assert control_balance(lines) == D("714.00")


def test_a_mixed_order_owing_net_gets_one_payable():
    sale = item(atlas_id=1, net_amount=D("100.00"), vat_amount=D("19.00"))
    purchase = item(
        atlas_id=2, cashflow=1, net_amount=D("-400.00"), vat_amount=D("-76.00"), gl_account="5001"
    )

    lines = build([sale, purchase])

    assert shape(lines)[-1] == ("credit", "2000", D("357.00"))
    assert [line.role for line in lines].count(LineRole.PAYABLES) == 1
    assert LineRole.RECEIVABLES not in [line.role for line in lines]
    assert lines_totals(lines) == (D("476.00"), D("476.00"))


def test_a_mixed_order_netting_to_zero_has_no_control_line():
    sale = item(atlas_id=1, net_amount=D("100.00"), vat_amount=D("0.00"), vat_rate=None)
    purchase = item(atlas_id=2, cashflow=1, net_amount=D("-100.00"), vat_amount=D("0.00"))

    lines = build([sale, purchase], counterparty=CounterpartyFacts(atlas_id=42, gl_account=""))

    assert [line.role for line in lines] == [LineRole.REVENUE, LineRole.EXPENSE]


def test_a_receivable_order_of_several_items_has_one_receivables_line():
    lines = build([item(atlas_id=1), item(atlas_id=2)])

    assert [line.role for line in lines].count(LineRole.RECEIVABLES) == 1
    assert lines[0].amount == D("171000.00")


# --- which account an item's own line goes to ------------------------------------------------


def _fits_revenue_only(number: str, role: LineRole) -> bool:
    return (role is LineRole.REVENUE) == number.startswith("4")


def test_a_passive_item_never_falls_back_to_the_counterpartys_revenue_account():
    purchase = item(cashflow=1, net_amount=D("-100.00"), vat_amount=D("-19.00"), gl_account="")

    lines = build_journal_lines(
        order=ORDER,
        items=[purchase],
        counterparty=COUNTERPARTY,  # a customer: glAccount 4001, a revenue account
        mapping_code="BA-100042",
        control_accounts=CONTROL,
        custom_field_values={},
        zero_amount_entries=False,
        account_fits=_fits_revenue_only,
    )

    assert lines[0].role is LineRole.EXPENSE and lines[0].gl_account == ""


def test_the_default_expense_account_takes_a_passive_item_nothing_else_fits():
    purchase = item(cashflow=1, net_amount=D("-100.00"), vat_amount=D("-19.00"), gl_account="")
    control = ControlAccounts(
        receivables="1200",
        payables="2000",
        output_vat="2200",
        input_vat="1400",
        default_revenue="4010",
        default_expense="5010",
    )

    lines = build_journal_lines(
        order=ORDER,
        items=[purchase],
        counterparty=COUNTERPARTY,
        mapping_code="BA-100042",
        control_accounts=control,
        custom_field_values={},
        zero_amount_entries=False,
        account_fits=_fits_revenue_only,
    )

    assert shape(lines) == [
        ("debit", "5010", D("100.00")),
        ("debit", "1400", D("19.00")),
        ("credit", "2000", D("119.00")),
    ]


def test_the_counterpartys_account_of_the_right_role_wins_over_the_default():
    control = ControlAccounts(
        receivables="1200",
        payables="2000",
        output_vat="2200",
        input_vat="1400",
        default_revenue="4010",
    )

    lines = build_journal_lines(
        order=ORDER,
        items=[item(gl_account="")],
        counterparty=COUNTERPARTY,
        mapping_code="BA-100042",
        control_accounts=control,
        custom_field_values={},
        zero_amount_entries=False,
        account_fits=_fits_revenue_only,
    )

    assert lines[1].gl_account == "4001"


# --- VAT ----------------------------------------------------------------------------------------


def test_vat_within_a_cent_of_net_times_rate_passes():
    items = [item(net_amount=D("100.00"), vat_amount=D("19.01"), vat_rate=D("19"))]
    order = OrderFacts(
        atlas_id=1, currency="EUR", registration_date=date(2026, 4, 1), total_amount=D("119.01")
    )

    assert journal_lines_problems(order=order, items=items, lines=build(items, order=order)) == []


def test_vat_more_than_a_cent_off_is_a_problem_with_both_figures():
    items = [item(atlas_id=7, net_amount=D("100.00"), vat_amount=D("19.02"), vat_rate=D("19"))]
    order = OrderFacts(
        atlas_id=1, currency="EUR", registration_date=date(2026, 4, 1), total_amount=D("119.02")
    )

    (problem,) = journal_lines_problems(order=order, items=items, lines=build(items, order=order))

    assert problem.reason == "vat_mismatch"
    assert "Item 7" in problem.message
    assert "vatAmount 19.02 EUR" in problem.message
    assert "netAmount 100.00 EUR x vatRate 19% is 19.00 EUR" in problem.message


def test_a_passive_items_vat_is_checked_with_its_sign():
    items = [item(cashflow=1, net_amount=D("-200.00"), vat_amount=D("-38.00"), vat_rate=D("19"))]
    order = OrderFacts(
        atlas_id=1, currency="EUR", registration_date=date(2026, 4, 1), total_amount=D("-238.00")
    )

    assert journal_lines_problems(order=order, items=items, lines=build(items, order=order)) == []
