"""Documents by direction, end to end: both sandboxes over real HTTP, the cycle as production
runs it (automatic workflow), the ERP's invoice through POST /api/invoices/.

For each case of the document rule (the sandbox's document cases, integration/sandbox/
atlas_seed.py DOCUMENT_CASES) the test runs the cycle, reads the posted entries back from the
AR Ledger over HTTP and asserts every account's net (debit positive, credit negative), then
asserts which document, if any, was written to ATLAS: the exact Invoice/Post body.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.test import Client
from django.urls import reverse

from integration import wire
from integration.sandbox.atlas_seed import STATUS_DRAFT
from ledger_sync.models import (
    BlockedReason,
    IssuedInvoice,
    Journal,
    OrderState,
    OrderSync,
    OrderTransition,
    ReconciliationDifference,
    ReconciliationRun,
    WriteBackStep,
)
from ledger_sync.models.inbound import CallbackState
from ledger_sync.selectors.documents import order_document_text
from ledger_sync.services.api_clients import api_client_create
from ledger_sync.services.journal_corrections import journal_reverse
from ledger_sync.services.pipeline import cycle_run
from ledger_sync.services.reconciliation import reconciliation_run
from ledger_sync.services.remote import gotransverse_client_from_settings
from ledger_sync.services.write_back_steps import WAITING_FOR_ERP_INVOICE
from tests.factories.parties import accountant
from tests.fixtures.atlas_sandbox import SANDBOX_PASSWORD, SANDBOX_USERNAME

pytestmark = pytest.mark.django_db(transaction=True)

D = Decimal
# The sandbox chart (integration/sandbox/chart.py).
RECEIVABLES, PAYABLES, OUTPUT_VAT, INPUT_VAT = "1200", "2000", "2200", "1400"
# What the finance lead set for a Passive item nothing else gives an expense account.
DEFAULT_EXPENSE = "5010"


@pytest.fixture
def atlas(make_atlas_sandbox, settings):
    """The ATLAS sandbox with the document cases; every other order back to draft, so that the
    cycle handles just the cases (and the invoice numbers are the first of their series)."""
    served = make_atlas_sandbox(document_cases=True, webhook_secret=settings.ATLAS_WEBHOOK_SECRET)
    settings.ATLAS_BASE_URL = served.url
    settings.ATLAS_USERNAME = SANDBOX_USERNAME
    settings.ATLAS_PASSWORD = SANDBOX_PASSWORD
    dataset = served.app.dataset
    cases = set(dataset.document_cases.values())
    for order_id, order in dataset.orders.items():
        if order_id not in cases:
            order["status"] = STATUS_DRAFT
    return served


@pytest.fixture
def cases(atlas, gotransverse_sandbox, settings):
    settings.JOURNAL_WORKFLOW = "auto"
    settings.ATLAS_MAX_RETRIES = 0
    settings.GOTRANSVERSE_MAX_RETRIES = 0
    settings.LEDGER_ACCOUNT_DEFAULT_EXPENSE = DEFAULT_EXPENSE
    cache.clear()  # API throttles live in the cache
    return atlas.app.dataset.document_cases


def _cycle():
    return cycle_run(trigger="command", actor="documents test")


def _nets(*references: str) -> dict[str, Decimal]:
    """Per GL account, debit minus credit of the posted entries of `references`, read from the
    AR Ledger over HTTP (GET /ledgers/{id}/accounting-entries)."""
    client = gotransverse_client_from_settings()
    nets: dict[str, Decimal] = defaultdict(lambda: D("0.00"))
    for reference in references:
        entries = list(client.list_accounting_entries(1, source_transaction_reference=reference))
        assert entries, f"no posted entries for {reference}"
        for entry in entries:
            amount = entry.amount.amount
            nets[entry.gl_account_num] += -amount if entry.credit else amount
    return {account: net for account, net in nets.items() if net}


def _reference(order_id: int, revision: int = 1) -> str:
    return f"ATLAS-ORDER-{order_id}-R{revision}"


def _invoice_posts(atlas, order_id: int) -> list[dict]:
    return [
        record
        for call in atlas.app.calls_to("/api/Invoice/Post")
        for record in call.body["data"]
        if record["orderId"] == order_id
    ]


def _erp_token() -> str:
    return api_client_create(name="erp", permissions=["invoices"]).token


def _report_invoice(token: str, order_id: int, *, external_id: str, number: str, amount: str):
    """POST /api/invoices/ as the ERP does."""
    return Client().post(
        "/api/invoices/",
        data=wire.dumps(
            {
                "externalId": external_id,
                "order": order_id,
                "invoiceNumber": number,
                "amount": D(amount),
                "currency": "EUR",
                "invoiceDate": "2026-06-05",
                "dueDate": "2026-06-19",
            }
        ).encode(),
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )


def _state(order_id: int) -> str:
    return OrderSync.objects.get(order__atlas_id=order_id).state


def _our_invoice(order_id: int, number: str, amount: str) -> dict:
    return {
        "orderId": order_id,
        "externalId": f"LS-INV-{order_id}",
        "invoiceNumber": number,
        "amount": D(amount),
        "invoiceDate": "2026-06-03T00:00:00",
        "dueDate": "2026-06-17T00:00:00",
        "isPaid": False,
    }


def test_a_receivable_gets_our_invoice_for_its_open_item(atlas, cases):
    order_id = cases["receivable"]

    _cycle()

    assert _nets(_reference(order_id)) == {
        RECEIVABLES: D("17850.00"),
        "4001": D("-15000.00"),
        OUTPUT_VAT: D("-2850.00"),
    }
    ((invoice,),) = [_invoice_posts(atlas, order_id)]
    assert invoice == _our_invoice(order_id, invoice["invoiceNumber"], "17850.00")
    # The two receivables of the cases took the first two numbers of the INV series.
    (other,) = _invoice_posts(atlas, cases["passive_item_revenue_gl"])
    assert sorted([invoice["invoiceNumber"], other["invoiceNumber"]]) == [
        "INV-2026-0001",
        "INV-2026-0002",
    ]
    assert _state(order_id) == OrderState.INVOICED


def test_a_self_billing_suppliers_payable_gets_our_self_billing_invoice(atlas, cases):
    order_id = cases["self_billing_payable"]

    _cycle()

    assert _nets(_reference(order_id)) == {
        "5001": D("8000.00"),
        INPUT_VAT: D("1520.00"),
        PAYABLES: D("-9520.00"),
    }
    assert _invoice_posts(atlas, order_id) == [_our_invoice(order_id, "SB-2026-0001", "9520.00")]
    assert _state(order_id) == OrderState.INVOICED


def test_a_suppliers_payable_waits_for_the_erps_invoice_then_writes_exactly_that_one(atlas, cases):
    order_id = cases["payable"]

    report = _cycle()

    assert _nets(_reference(order_id)) == {
        "5002": D("20000.00"),
        INPUT_VAT: D("3800.00"),
        PAYABLES: D("-23800.00"),
    }
    assert _invoice_posts(atlas, order_id) == []
    order_sync = OrderSync.objects.get(order__atlas_id=order_id)
    assert order_sync.state == OrderState.ERP_CODE_WRITTEN  # waiting, not blocked
    step = WriteBackStep.objects.get(order_sync=order_sync, kind=WriteBackStep.Kind.INVOICE)
    assert (step.status, step.waiting_for) == (
        WriteBackStep.Status.PENDING,
        WAITING_FOR_ERP_INVOICE,
    )
    note = OrderTransition.objects.filter(order_sync=order_sync).latest("at", "id").note
    assert "waiting for the supplier's invoice from the ERP" in note and "23,800.00 EUR" in note
    assert report.stages["write_back"]["waiting_for_erp"] == 2  # this one and mixed_payable
    assert not [p for p in report.problems if p.atlas_order_id == order_id]

    # A second cycle issues nothing either.
    atlas.app.reset_calls()
    _cycle()
    assert _invoice_posts(atlas, order_id) == []

    # The supplier's invoice arrives from the ERP.
    token = _erp_token()
    response = _report_invoice(
        token, order_id, external_id="NG-AP-2026-0611", number="NG-2026-0611", amount="23800.00"
    )

    assert response.status_code == 202, response.json()
    assert _invoice_posts(atlas, order_id) == [
        {
            "orderId": order_id,
            "externalId": "NG-AP-2026-0611",
            "invoiceNumber": "NG-2026-0611",
            "amount": D("23800.00"),
            "invoiceDate": "2026-06-05T00:00:00",
            "dueDate": "2026-06-19T00:00:00",
            "isPaid": False,
        }
    ]
    status = Client().get(
        response.json()["statusUrl"], headers={"Authorization": f"Bearer {token}"}
    )
    assert status.json()["status"] == CallbackState.WRITTEN_TO_ATLAS
    assert _state(order_id) == OrderState.INVOICED
    # And nothing more from us afterwards.
    atlas.app.reset_calls()
    _cycle()
    assert _invoice_posts(atlas, order_id) == []


def test_a_customers_passive_item_books_the_default_expense_and_nets_to_one_receivable(
    atlas, cases
):
    order_id = cases["passive_item_revenue_gl"]

    _cycle()

    # The customer's only account is revenue (4001): the Passive item goes to the default
    # expense account, and one receivable carries the net, which the invoice states.
    assert _nets(_reference(order_id)) == {
        RECEIVABLES: D("11900.00"),
        "4001": D("-12000.00"),
        OUTPUT_VAT: D("-2280.00"),
        DEFAULT_EXPENSE: D("2000.00"),
        INPUT_VAT: D("380.00"),
    }
    ((invoice,),) = [_invoice_posts(atlas, order_id)]
    assert invoice == _our_invoice(order_id, invoice["invoiceNumber"], "11900.00")
    assert invoice["invoiceNumber"].startswith("INV-2026-")


def test_without_a_default_expense_account_that_order_is_blocked_and_nothing_is_posted(
    atlas, cases, gotransverse_sandbox, settings
):
    settings.LEDGER_ACCOUNT_DEFAULT_EXPENSE = ""
    order_id = cases["passive_item_revenue_gl"]

    _cycle()

    order_sync = OrderSync.objects.get(order__atlas_id=order_id)
    assert (order_sync.state, order_sync.blocked_reason) == (
        OrderState.BLOCKED,
        BlockedReason.WRONG_ACCOUNT_ROLE,
    )
    assert "LEDGER_ACCOUNT_DEFAULT_EXPENSE" in order_sync.blocked_message
    assert gotransverse_sandbox.app.transactions_with_reference(_reference(order_id)) == []
    assert _invoice_posts(atlas, order_id) == []


def test_a_mixed_order_netting_to_a_payable_books_one_payable_and_waits_for_the_erp(atlas, cases):
    order_id = cases["mixed_payable"]

    _cycle()

    assert _nets(_reference(order_id)) == {
        "5002": D("30000.00"),
        INPUT_VAT: D("5700.00"),
        "4010": D("-4000.00"),
        OUTPUT_VAT: D("-760.00"),
        PAYABLES: D("-30940.00"),
    }
    assert RECEIVABLES not in _nets(_reference(order_id))
    assert _invoice_posts(atlas, order_id) == []
    assert _state(order_id) == OrderState.ERP_CODE_WRITTEN


def test_a_mixed_order_netting_to_zero_gets_no_document_and_says_so(atlas, cases):
    order_id = cases["mixed_zero"]

    _cycle()

    assert _nets(_reference(order_id)) == {
        "4001": D("-5000.00"),
        OUTPUT_VAT: D("-950.00"),
        "5001": D("5000.00"),
        INPUT_VAT: D("950.00"),
    }
    assert _invoice_posts(atlas, order_id) == []
    order_sync = OrderSync.objects.get(order__atlas_id=order_id)
    assert order_sync.state == OrderState.PAID
    last = OrderTransition.objects.filter(order_sync=order_sync).latest("at", "id")
    assert (last.from_state, last.to_state) == (OrderState.ERP_CODE_WRITTEN, OrderState.PAID)
    assert last.note.startswith("No document:") and "0.00 EUR" in last.note


def test_a_correction_reversed_and_reposted_nets_to_the_corrected_figures(atlas, cases):
    order_id = cases["receivable"]
    _cycle()
    first_item = min(i["id"] for i in atlas.app.dataset.items_of(order_id))
    # ATLAS corrects the delivered volume of the first item: 10,000.00 + 1,900.00 VAT becomes
    # 9,000.00 + 1,710.00.
    atlas.app.tamper_order(
        order_id, item_id=first_item, net_amount=D("9000.00"), vat_amount=D("1710.00")
    )
    original = Journal.objects.get(
        order_sync__order__atlas_id=order_id, kind=Journal.Kind.POSTING, revision=1
    )

    journal_reverse(journal=original, user=accountant(), reason="Delivered volume corrected")
    _cycle()

    reposted = Journal.objects.get(
        order_sync__order__atlas_id=order_id, kind=Journal.Kind.POSTING, revision=2
    )
    assert reposted.status == Journal.Status.POSTED
    references = (_reference(order_id), _reference(order_id) + "-REV", _reference(order_id, 2))
    assert _nets(*references) == {
        RECEIVABLES: D("16660.00"),
        "4001": D("-14000.00"),
        OUTPUT_VAT: D("-2660.00"),
    }
    assert _nets(references[1]) == {
        RECEIVABLES: D("-17850.00"),
        "4001": D("15000.00"),
        OUTPUT_VAT: D("2850.00"),
    }
    # The invoice issued with R1 is not re-issued; the history and the order page say that it
    # no longer states the open item.
    order_sync = OrderSync.objects.get(order__atlas_id=order_id)
    assert order_sync.state == OrderState.INVOICED
    invoice = IssuedInvoice.objects.get(order_sync=order_sync)
    last = OrderTransition.objects.filter(order_sync=order_sync).latest("at", "id")
    assert f"{invoice.number} states 17,850.00 EUR" in last.note
    assert f"{_reference(order_id, 2)} leaves 16,660.00 EUR open" in last.note
    assert "differs from the open item" in order_document_text(order_sync)


def test_every_case_reconciles_clean_also_while_payables_wait_for_the_erps_invoice(atlas, cases):
    _cycle()

    waiting = reconciliation_run(trigger="test")

    assert waiting.status == ReconciliationRun.Status.DONE, waiting.error
    assert list(ReconciliationDifference.objects.filter(run=waiting)) == []
    assert waiting.counterparties_checked == 3

    response = _report_invoice(
        _erp_token(), cases["payable"], external_id="NG-1", number="NG-1", amount="23800.00"
    )
    assert response.status_code == 202, response.json()

    invoiced = reconciliation_run(trigger="test")

    assert list(ReconciliationDifference.objects.filter(run=invoiced)) == []


@pytest.mark.parametrize(
    ("case", "amount", "code"),
    [
        ("receivable", "17850.00", "invoiced_by_us"),
        ("self_billing_payable", "9520.00", "invoiced_by_us"),
        ("mixed_zero", "0.01", "no_document"),
    ],
)
def test_the_erp_cannot_report_an_invoice_for_an_order_we_invoice_or_that_nets_to_zero(
    atlas, cases, case, amount, code
):
    order_id = cases[case]
    _cycle()
    atlas.app.reset_calls()

    response = _report_invoice(
        _erp_token(), order_id, external_id="ERP-X-1", number="ERP-X-1", amount=amount
    )

    assert response.status_code == 422
    error = response.json()["error"]
    assert (error["code"], error["field"]) == (code, "order")
    assert f"Order {order_id} " in error["message"]
    assert atlas.app.calls_to("/api/Invoice/Post") == []


def test_the_order_page_names_the_document(atlas, cases, admin_client):
    _cycle()
    pages = {
        case: admin_client.get(
            reverse(
                "admin:ledger_sync_ordersync_change",
                args=[OrderSync.objects.get(order__atlas_id=order_id).pk],
            )
        ).content.decode()
        for case, order_id in cases.items()
    }

    receivable = IssuedInvoice.objects.get(order_sync__order__atlas_id=cases["receivable"])
    assert f"Our invoice {receivable.number} (17,850.00 EUR)" in pages["receivable"]
    assert "Self-billing invoice SB-2026-0001 (9,520.00 EUR)" in pages["self_billing_payable"]
    assert (
        "Awaiting the supplier&#x27;s invoice from the ERP for the payable of 23,800.00 EUR"
        in pages["payable"]
    )
    assert "No document: the order nets to 0.00 EUR" in pages["mixed_zero"]
    listing = admin_client.get(reverse("admin:ledger_sync_ordersync_changelist")).content.decode()
    assert listing.count("waiting for the supplier&#x27;s invoice from the ERP") == 2
