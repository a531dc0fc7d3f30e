"""Accounting correctness of built journals against the mirrored chart: account roles, the
default revenue/expense accounts, VAT, mixed orders, and every problem of an order at once."""

from __future__ import annotations

from decimal import Decimal

import pytest

from ledger_sync.models import BlockedReason, OrderState, OrderSync, PostingSettings
from ledger_sync.services.journals import order_build_journal, orders_build_ready
from tests.factories.journals import (
    OrderSyncFactory,
    journal_world,
    mapped_counterparty,
    order_with_items,
)

pytestmark = pytest.mark.django_db
S = OrderState
D = Decimal
ACTOR = "system:test"
PASSIVE = {"cashflow": 1, "net_amount": D("-1000.00"), "vat_amount": D("-190.00")}


@pytest.fixture
def world():
    return journal_world()


def build(order) -> tuple[OrderSync, object]:
    order_sync = OrderSyncFactory(order=order, state=S.READY)
    journal = order_build_journal(order_sync=order_sync, actor=ACTOR)
    order_sync.refresh_from_db()
    return order_sync, journal


def lines_of(journal) -> list[tuple[str, str, Decimal]]:
    return [
        (line.side, line.gl_account, line.amount) for line in journal.lines.order_by("position")
    ]


def test_a_passive_item_of_a_customer_with_only_a_revenue_account_blocks_naming_it(world):
    customer = mapped_counterparty(gl_account="4001", name="Stadtwerke Nord")
    order = order_with_items(counterparty=customer, items=[{**PASSIVE, "gl_account": ""}])

    order_sync, journal = build(order)

    assert journal is None
    assert order_sync.state == S.BLOCKED
    assert order_sync.blocked_reason == BlockedReason.WRONG_ACCOUNT_ROLE
    message = order_sync.blocked_message
    assert "the account 4001 of its counterparty Stadtwerke Nord" in message
    assert "type REVENUE" in message and "expense line" in message
    assert "default_expense_account" in message and "LEDGER_ACCOUNT_DEFAULT_EXPENSE" in message
    assert order_sync.blocked_fix_url.endswith("/postingsettings/1/change/")


def test_the_default_expense_account_books_that_item_once_set(world):
    PostingSettings.objects.filter(pk=1).update(default_expense_account="5010")
    customer = mapped_counterparty(gl_account="4001")
    order = order_with_items(counterparty=customer, items=[{**PASSIVE, "gl_account": ""}])

    order_sync, journal = build(order)

    assert order_sync.state == S.JOURNAL_BUILT, order_sync.blocked_message
    assert lines_of(journal) == [
        ("debit", "5010", D("1000.00")),
        ("debit", "1400", D("190.00")),
        ("credit", "2000", D("1190.00")),
    ]


def test_an_items_own_account_of_the_wrong_role_blocks(world):
    order = order_with_items(items=[{"gl_account": "5001"}])  # an Active item on an expense account

    order_sync, _ = build(order)

    assert order_sync.blocked_reason == BlockedReason.WRONG_ACCOUNT_ROLE
    assert "GL account 5001 (Power purchases) has type EXPENSE" in order_sync.blocked_message
    assert "revenue line" in order_sync.blocked_message
    assert "glaccount" in order_sync.blocked_fix_url


def test_a_control_account_of_the_wrong_role_blocks_every_order_on_the_settings(world):
    PostingSettings.objects.filter(pk=1).update(receivables_account="1000")  # the bank

    order_sync, _ = build(order_with_items())

    assert order_sync.blocked_reason == BlockedReason.MISSING_CONTROL_ACCOUNT
    assert "receivables_account" in order_sync.blocked_message
    assert "designation CASH" in order_sync.blocked_message
    assert "ACCOUNTS_RECEIVABLE" in order_sync.blocked_message


def test_a_vat_amount_off_by_more_than_a_cent_blocks_with_both_figures(world):
    order = order_with_items(items=[{"net_amount": D("1000.00"), "vat_amount": D("191.00")}])

    order_sync, _ = build(order)

    assert order_sync.blocked_reason == BlockedReason.VAT_MISMATCH
    assert "vatAmount 191.00 EUR" in order_sync.blocked_message
    assert "is 190.00 EUR" in order_sync.blocked_message


def test_a_mixed_order_books_one_receivable_for_its_net(world):
    order = order_with_items(items=[{}, {**PASSIVE, "gl_account": "5001"}])

    _, journal = build(order)

    assert order.total_amount == D("84310.00")
    assert lines_of(journal)[0] == ("debit", "1200", D("84310.00"))
    assert [gl for _, gl, _ in lines_of(journal)].count("2000") == 0


def test_every_problem_of_an_order_is_reported_at_once(world):
    unmapped = mapped_counterparty(gl_account="4001")
    unmapped.erp_mapping.delete()
    order = order_with_items(
        counterparty=unmapped,
        items=[
            {"atlas_id": 71, "gl_account": "4099"},  # not in the chart
            {"atlas_id": 72, "net_amount": D("100.00"), "vat_amount": D("25.00")},  # VAT 19%
            {"atlas_id": 73, **PASSIVE, "gl_account": ""},  # customer's revenue account only
        ],
    )

    order_sync, _ = build(order)

    reasons = [problem["reason"] for problem in order_sync.blocked_problems]
    assert reasons == [
        BlockedReason.UNMATCHED_COUNTERPARTY,
        BlockedReason.VAT_MISMATCH,
        BlockedReason.UNKNOWN_GL_ACCOUNT,
        BlockedReason.WRONG_ACCOUNT_ROLE,
    ]
    # The first is the order's blocked reason, for filtering and the error queue.
    first = order_sync.blocked_problems[0]
    assert (order_sync.blocked_reason, order_sync.blocked_message, order_sync.blocked_fix_url) == (
        first["reason"],
        first["message"],
        first["fix_url"],
    )
    assert all(problem["message"] and problem["fix_url"] for problem in order_sync.blocked_problems)
    assert "Item 72" in order_sync.blocked_problems[1]["message"]
    assert "4099" in order_sync.blocked_problems[2]["message"]
    assert "Item 73" in order_sync.blocked_problems[3]["message"]
    note = order_sync.transitions.order_by("-at", "-id").first().note
    assert note.endswith("(and 3 more problems)")


def test_fixing_one_of_several_problems_updates_the_list_and_keeps_the_order_blocked(world):
    order = order_with_items(
        items=[
            {"atlas_id": 81, "gl_account": "4099"},
            {"atlas_id": 82, "net_amount": D("100.00"), "vat_amount": D("25.00")},
        ]
    )
    order_sync, _ = build(order)
    assert len(order_sync.blocked_problems) == 2
    item = order.items.get(atlas_id=81)
    item.gl_account = "4002"
    item.save()

    orders_build_ready(actor=ACTOR)

    order_sync.refresh_from_db()
    assert order_sync.state == S.BLOCKED
    assert [p["reason"] for p in order_sync.blocked_problems] == [BlockedReason.VAT_MISMATCH]
    assert order_sync.blocked_reason == BlockedReason.VAT_MISMATCH


def test_an_unblocked_order_keeps_no_problems(world):
    order = order_with_items(items=[{"gl_account": "4099"}])
    order_sync, _ = build(order)
    item = order.items.get()
    item.gl_account = "4002"
    item.save()

    orders_build_ready(actor=ACTOR)

    order_sync.refresh_from_db()
    assert order_sync.state == S.JOURNAL_BUILT
    assert (order_sync.blocked_reason, order_sync.blocked_problems) == ("", [])
