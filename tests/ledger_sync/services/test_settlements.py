"""Payments in the AR Ledger: every accepted payment confirmation posts one settlement
transaction, exactly once, over real HTTP against both sandboxes (the sandbox's payment case:
a customer's order and a self-billing supplier's order, posted and invoiced by a real cycle)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from integration import wire
from integration.sandbox.faults import FaultConfig
from ledger_sync.models import (
    IssuedInvoice,
    Journal,
    LedgerSettlementState,
    OrderState,
    OrderSync,
    PaymentConfirmation,
    Problem,
)
from ledger_sync.services import settlements
from ledger_sync.services.api_clients import api_client_create
from ledger_sync.services.atlas_mirror import atlas_mirror_run
from ledger_sync.services.gotransverse_mirror import gotransverse_mirror_run
from ledger_sync.services.pipeline import cycle_run
from ledger_sync.services.posting import journal_approve
from ledger_sync.services.posting_settings import posting_settings_update
from ledger_sync.services.problems import problems_refresh
from ledger_sync.services.remote import gotransverse_client_from_settings
from ledger_sync.services.settlements import payment_settlement_retry, payment_settlements_due
from ledger_sync.services.sweep import inbound_sweep
from tests.concurrency import race
from tests.factories.parties import accountant, finance_lead
from tests.ledger_sync.api.payment_support import atlas_client_for, payable_invoice

pytestmark = pytest.mark.django_db(transaction=True)

D = Decimal
S = LedgerSettlementState
BANK, RECEIVABLES, PAYABLES = "1000", "1200", "2000"


def _after_lease(minutes: int = 16):
    """A moment after any claim (LEDGER_CLAIM_TIMEOUT_SECONDS, 900 s) and backoff has run out."""
    return timezone.now() + timedelta(minutes=minutes)


def _entry(account: str, *, credit: bool, amount: str, billing: str, number: str, payment, order):
    """One settlement entry exactly as it must be sent."""
    return {
        "gl_account_num": account,
        "credit": credit,
        "amount": {"amount": D(amount), "currency": "EUR"},
        "description": f"Payment {payment.external_id} of invoice {number} "
        f"(ATLAS-ORDER-{order.order_id}-R1)",
        "billing_account_num": billing,
        "occurred_on": f"{payment.payment_date}T00:00:00Z",
        "event_date": f"{payment.payment_date}T00:00:00Z",
        "entry_values": {
            "invoice_number": number,
            "payment_external_id": payment.external_id,
            "atlas_order_id": order.order_id,
        },
    }


def test_a_partial_then_a_final_payment_post_two_settlements_and_clear_the_receivable(
    payment_case,
):
    case = payment_case.case
    order = case.receivable
    billing = order.erp_code
    assert order.receivable and order.gross == D("11900.00")
    # The order's journal booked the receivable for the customer.
    assert payment_case.ledger_balance(billing_account=billing, gl_account=RECEIVABLES) == D(
        "11900.00"
    )
    number = payment_case.invoice_external_id(order)
    invoice_number = IssuedInvoice.objects.get(external_id=number).number
    partial, final = order.payments

    first = payment_case.pay(payment_case.body(order, partial))

    assert first.status_code == 202, first.json()
    confirmation = PaymentConfirmation.objects.get(external_id=partial.external_id)
    assert confirmation.ledger_state == S.POSTED, confirmation.ledger_error
    reference = f"ATLAS-PAYMENT-{confirmation.pk}"
    (create,) = payment_case.settlement_creates()
    assert create.query == {"auto_post": "true"}
    assert create.body == [
        {
            "source_transaction_reference": reference,
            "entries": [
                _entry(
                    BANK,
                    credit=False,
                    amount="5000.00",
                    billing=billing,
                    number=invoice_number,
                    payment=partial,
                    order=order,
                ),
                _entry(
                    RECEIVABLES,
                    credit=True,
                    amount="5000.00",
                    billing=billing,
                    number=invoice_number,
                    payment=partial,
                    order=order,
                ),
            ],
        }
    ]
    (stored,) = payment_case.ledger.app.transactions_with_reference(reference)
    assert stored.is_posted
    journal = confirmation.settlement_journal
    assert (journal.kind, journal.status, journal.source_transaction_reference) == (
        Journal.Kind.SETTLEMENT,
        Journal.Status.POSTED,
        reference,
    )
    assert journal.ledger_transaction_id == str(stored.id)
    assert journal.total_debit == journal.total_credit == D("5000.00")
    assert journal.landed_period  # the payment date's open period
    assert payment_case.ledger_balance(billing_account=billing, gl_account=RECEIVABLES) == D(
        "6900.00"
    )

    last = payment_case.pay(payment_case.body(order, final))

    assert last.status_code == 202, last.json()
    second = PaymentConfirmation.objects.get(external_id=final.external_id)
    assert second.ledger_state == S.POSTED, second.ledger_error
    assert len(payment_case.settlement_creates()) == 2
    (_, create_final) = payment_case.settlement_creates()
    assert [
        (e["gl_account_num"], e["credit"], e["amount"]["amount"])
        for e in create_final.body[0]["entries"]
    ] == [(BANK, False, D("6900.00")), (RECEIVABLES, True, D("6900.00"))]
    settled = [
        t
        for t in payment_case.ledger.app.posted_transactions()
        if t.source_transaction_reference.startswith("ATLAS-PAYMENT-")
    ]
    assert len(settled) == 2
    # The order's journal plus both settlements: nothing is owed by the customer any more,
    # and the bank received exactly the invoice's amount.
    assert payment_case.ledger_balance(billing_account=billing, gl_account=RECEIVABLES) == 0
    assert payment_case.ledger_balance(billing_account=billing, gl_account=BANK) == D("11900.00")
    # The payer can read it on the payment's status URL.
    status = Client().get(
        f"/api/payments/{final.external_id}/",
        headers={"Authorization": f"Bearer {payment_case.token}"},
    )
    assert status.json()["ledgerStatus"] == "posted"
    # The settlement did not wait for ATLAS, nor ATLAS for it: both are done.
    assert set(PaymentConfirmation.objects.values_list("state", flat=True)) == {"written_to_atlas"}
    assert OrderSync.objects.get(order__atlas_id=order.order_id).state == OrderState.PAID


def test_a_repeated_payment_posts_nothing(payment_case):
    case = payment_case.case
    order = case.receivable
    body = payment_case.body(order, order.payments[0])
    assert payment_case.pay(body).status_code == 202
    transactions = len(payment_case.ledger.app.transactions)
    calls = len(payment_case.ledger.app.calls)

    again = payment_case.pay(body)

    assert again.status_code == 200
    assert len(payment_case.settlement_creates()) == 1
    assert len(payment_case.ledger.app.transactions) == transactions
    # Not even a lookup: the confirmation's settlement is posted, nothing is left to do.
    assert len(payment_case.ledger.app.calls) == calls
    # Nor does the sweep find anything to send.
    inbound_sweep(now=_after_lease())
    assert len(payment_case.settlement_creates()) == 1
    assert Journal.objects.filter(kind=Journal.Kind.SETTLEMENT).count() == 1


def test_a_payable_is_settled_debit_payables_credit_bank(payment_case):
    case = payment_case.case
    order = case.payable
    billing = order.erp_code
    assert not order.receivable
    assert payment_case.ledger_balance(billing_account=billing, gl_account=PAYABLES) == D(
        "-4760.00"
    )
    (payment,) = order.payments

    answer = payment_case.pay(payment_case.body(order, payment))

    assert answer.status_code == 202, answer.json()
    confirmation = PaymentConfirmation.objects.get(external_id=payment.external_id)
    assert confirmation.ledger_state == S.POSTED, confirmation.ledger_error
    (create,) = payment_case.settlement_creates()
    assert [
        (e["gl_account_num"], e["credit"], e["amount"]["amount"], e["billing_account_num"])
        for e in create.body[0]["entries"]
    ] == [(PAYABLES, False, D("4760.00"), billing), (BANK, True, D("4760.00"), billing)]
    assert payment_case.ledger_balance(billing_account=billing, gl_account=PAYABLES) == 0
    assert payment_case.ledger_balance(billing_account=billing, gl_account=BANK) == D("-4760.00")


def test_a_crash_between_posting_and_recording_resumes_without_a_second_post(
    payment_case, monkeypatch
):
    order = payment_case.case.receivable
    real_record = settlements._record_posted
    crashes = []

    def crash(*args, **kwargs):
        crashes.append(args)
        raise RuntimeError("worker killed after the ledger answered")

    monkeypatch.setattr(settlements, "_record_posted", crash)

    payment_case.pay(payment_case.body(order, order.payments[0]))

    confirmation = PaymentConfirmation.objects.get()
    assert crashes and confirmation.ledger_state == S.PENDING
    journal = confirmation.settlement_journal
    assert journal.status == Journal.Status.BUILT and journal.request_json
    reference = journal.source_transaction_reference
    assert len(payment_case.ledger.app.transactions_with_reference(reference)) == 1
    # Another worker cannot take it while the dead one's claim lasts.
    assert payment_settlements_due(now=timezone.now(), limit=10) == []
    monkeypatch.setattr(settlements, "_record_posted", real_record)
    payment_case.ledger.app.reset_calls()

    swept = inbound_sweep(now=_after_lease())

    assert swept.ledger_settlements == 1
    confirmation.refresh_from_db()
    assert confirmation.ledger_state == S.POSTED
    journal.refresh_from_db()
    (stored,) = payment_case.ledger.app.transactions_with_reference(reference)
    assert (journal.status, journal.ledger_transaction_id) == (
        Journal.Status.POSTED,
        str(stored.id),
    )
    # Looked up by its reference and adopted; never sent again.
    assert payment_case.bulk_creates() == []
    (lookup,) = payment_case.ledger.app.calls_to("/ledgers/1/accounting-entries", "GET")
    assert lookup.query["source_transaction_reference"] == reference


def test_a_ledger_outage_is_retried_with_backoff_then_posted_once(payment_case):
    order = payment_case.case.receivable
    ledger = payment_case.ledger.app
    ledger.faults = FaultConfig(error_rate=1.0, error_statuses=(503,))

    before = timezone.now()
    payment_case.pay(payment_case.body(order, order.payments[0]))

    confirmation = PaymentConfirmation.objects.get()
    assert confirmation.ledger_state == S.FAILED
    assert "503" in confirmation.ledger_error
    assert confirmation.ledger_attempts == 1
    # LEDGER_RETRY_BASE_SECONDS (60 s) after the first attempt.
    wait = confirmation.ledger_next_attempt_at - before
    assert timedelta(seconds=59) < wait < timedelta(seconds=75)
    # ATLAS is another system: the payment reached it all the same.
    assert confirmation.state == "written_to_atlas"
    problems_refresh()
    problem = Problem.objects.get(key=f"payment_settlement:{confirmation.pk}")
    assert problem.kind == Problem.Kind.FAILED_POSTING and problem.status == Problem.Status.OPEN
    assert "Retried automatically" in problem.message
    # Not before its backoff is over.
    inbound_sweep(now=timezone.now())
    assert PaymentConfirmation.objects.get().ledger_attempts == 1

    ledger.faults = FaultConfig()
    inbound_sweep(now=_after_lease(2))

    confirmation.refresh_from_db()
    assert confirmation.ledger_state == S.POSTED, confirmation.ledger_error
    assert confirmation.ledger_attempts == 2
    reference = confirmation.settlement_journal.source_transaction_reference
    assert len(ledger.transactions_with_reference(reference)) == 1
    problem.refresh_from_db()
    assert problem.status == Problem.Status.RESOLVED


def test_a_refused_settlement_is_blocked_with_the_reason_shown_and_rebuilt_after_the_fix(
    payment_case, admin_client: Client
):
    order = payment_case.case.receivable
    ledger = payment_case.ledger.app
    # Deactivated in Gotransverse after our last reference sync: the ledger refuses it.
    ledger.set_account_status(BANK, "INACTIVE")

    payment_case.pay(payment_case.body(order, order.payments[0]))

    confirmation = PaymentConfirmation.objects.get()
    assert confirmation.ledger_state == S.BLOCKED
    assert "GL account '1000' is inactive" in confirmation.ledger_error
    assert confirmation.ledger_next_attempt_at is None
    assert len(payment_case.settlement_creates()) == 1
    reference = confirmation.settlement_journal.source_transaction_reference
    assert ledger.transactions_with_reference(reference) == []
    # Not retried by the sweep: a person must look.
    inbound_sweep(now=_after_lease())
    assert len(payment_case.settlement_creates()) == 1
    problems_refresh()
    problem = Problem.objects.get(key=f"payment_settlement:{confirmation.pk}")
    assert "inactive" in problem.message and "retry the settlement" in problem.message
    assert problem.fix_url.endswith(f"/paymentconfirmation/{confirmation.pk}/change/")
    page = admin_client.get(problem.fix_url)
    assert page.status_code == 200
    text = page.content.decode()
    assert "Blocked: a person must fix something" in text
    assert "is inactive" in text
    assert reference in text
    home = admin_client.get("/admin/").content.decode()
    assert "Payment settlements blocked" in home
    assert "?ledger_state__exact=blocked" in home
    listing = admin_client.get("/admin/ledger_sync/paymentconfirmation/?ledger_state=blocked")
    assert listing.status_code == 200 and order.payments[0].external_id in listing.content.decode()

    # The finance lead opens a new bank account in Gotransverse, syncs, and switches to it.
    ledger.add_gl_account(
        number="1010", name="Bank - settlement account", type="ASSET", designation="CASH"
    )
    gotransverse_mirror_run(
        client=gotransverse_client_from_settings(), ledger_id=1, trigger="command"
    )
    posting_settings_update(user=finance_lead(), bank_account="1010")
    payment_settlement_retry(confirmation=confirmation)

    confirmation.refresh_from_db()
    assert confirmation.ledger_state == S.POSTED, confirmation.ledger_error
    refused, posted = payment_case.settlement_creates()
    assert [e["gl_account_num"] for e in refused.body[0]["entries"]] == [BANK, RECEIVABLES]
    # Refused means nothing was booked: rebuilt from the settings as they are now.
    assert [e["gl_account_num"] for e in posted.body[0]["entries"]] == ["1010", RECEIVABLES]
    (stored,) = ledger.transactions_with_reference(reference)
    assert [e.gl_account_num for e in stored.entries] == ["1010", RECEIVABLES]
    journal = confirmation.settlement_journal
    assert journal.status == Journal.Status.POSTED and journal.rejected_reason == ""
    assert admin_client.get(f"/admin/ledger_sync/journal/{journal.pk}/change/").status_code == 200
    problems_refresh()
    problem.refresh_from_db()
    assert problem.status == Problem.Status.RESOLVED


def test_a_payment_in_a_closed_period_is_blocked_with_a_clear_reason(payment_case):
    order = payment_case.case.receivable
    payment = order.payments[0]

    payment_case.pay(payment_case.body(order, payment, paymentDate="2026-02-16"))

    confirmation = PaymentConfirmation.objects.get()
    assert confirmation.ledger_state == S.BLOCKED
    assert "closed accounting period" in confirmation.ledger_error
    assert "roll forward" in confirmation.ledger_error
    assert payment_case.settlement_creates() == []


def test_a_payment_waits_for_its_orders_journal_and_is_posted_once_it_is(
    make_payment_case, settings
):
    run = make_payment_case(workflow="review")
    order = run.case.receivable
    order_sync = OrderSync.objects.get(order__atlas_id=order.order_id)
    assert order_sync.state == OrderState.AWAITING_REVIEW
    # An invoice ATLAS already holds for the order (issued by the ERP), so the bank can pay.
    client = atlas_client_for(run.atlas)
    client.post_invoices(
        [
            {
                "orderId": order.order_id,
                "externalId": "INV-CASE-0001",
                "invoiceNumber": "ERP-2026-0001",
                "amount": order.gross,
                "invoiceDate": "2026-10-01T00:00:00",
                "dueDate": "2026-10-31T00:00:00",
                "isPaid": False,
            }
        ]
    )
    atlas_mirror_run(client=client, trigger="command")
    payment = order.payments[0]
    body = {
        "externalId": payment.external_id,
        "invoiceExternalId": "INV-CASE-0001",
        "amount": payment.amount,
        "currency": "EUR",
        "paymentDate": payment.payment_date,
    }

    assert run.pay(body).status_code == 202

    confirmation = PaymentConfirmation.objects.get()
    assert confirmation.ledger_state == S.PENDING
    assert "Waiting for order" in confirmation.ledger_error
    assert run.settlement_creates() == []
    assert payment_settlements_due(now=_after_lease(), limit=10) == []

    journal_approve(journals=[order_sync.journals.get()], user=accountant())
    swept = inbound_sweep(now=_after_lease())

    assert swept.ledger_settlements == 1
    confirmation.refresh_from_db()
    assert confirmation.ledger_state == S.POSTED, confirmation.ledger_error
    (create,) = run.settlement_creates()
    entries = create.body[0]["entries"]
    assert {e["entry_values"]["invoice_number"] for e in entries} == {"ERP-2026-0001"}
    assert [(e["gl_account_num"], e["credit"]) for e in entries] == [
        (BANK, False),
        (RECEIVABLES, True),
    ]


def test_a_settlement_a_live_worker_holds_is_not_sent_by_another(payment_case, monkeypatch):
    order = payment_case.case.receivable
    monkeypatch.setattr("ledger_sync.services.payments.payment_settlement_enqueue", lambda pk: None)
    payment_case.pay(payment_case.body(order, order.payments[0]))
    confirmation = PaymentConfirmation.objects.get()
    assert confirmation.ledger_state == S.PENDING and payment_case.bulk_creates() == []
    now = timezone.now()
    assert settlements._claim(confirmation.pk, now=now) is not None  # the first worker

    settlements.payment_settlement_post(confirmation_id=confirmation.pk, now=now)

    assert list(payment_case.ledger.app.calls) == []  # not even a lookup
    assert not Journal.objects.filter(kind=Journal.Kind.SETTLEMENT).exists()
    # Once its claim has run out (the worker died), the next one takes it, exactly once.
    settlements.payment_settlement_post(confirmation_id=confirmation.pk, now=_after_lease())
    settlements.payment_settlement_post(confirmation_id=confirmation.pk, now=_after_lease())
    assert len(payment_case.settlement_creates()) == 1
    confirmation.refresh_from_db()
    assert confirmation.ledger_state == S.POSTED


def test_a_worker_slowed_past_its_claim_does_not_send_what_the_next_one_sent(
    payment_case, monkeypatch
):
    order = payment_case.case.receivable
    monkeypatch.setattr("ledger_sync.services.payments.payment_settlement_enqueue", lambda pk: None)
    payment_case.pay(payment_case.body(order, order.payments[0]))
    confirmation = PaymentConfirmation.objects.get()
    real_input = settlements.journal_transaction_input
    taken_over = []

    def slow_input(journal):
        # The first worker stalls here, past its claim; the next worker takes the payment over
        # and posts it meanwhile.
        if not taken_over:
            taken_over.append(True)
            settlements.payment_settlement_post(confirmation_id=confirmation.pk, now=_after_lease())
        return real_input(journal)

    monkeypatch.setattr(settlements, "journal_transaction_input", slow_input)

    settlements.payment_settlement_post(confirmation_id=confirmation.pk, now=timezone.now())

    assert taken_over
    confirmation.refresh_from_db()
    assert confirmation.ledger_state == S.POSTED
    assert len(payment_case.settlement_creates()) == 1
    reference = confirmation.settlement_journal.source_transaction_reference
    assert len(payment_case.ledger.app.transactions_with_reference(reference)) == 1


def test_a_payment_for_an_order_processed_elsewhere_has_nothing_to_settle(atlas_sandbox, settings):
    settings.ATLAS_MAX_RETRIES = 0
    invoice = payable_invoice(atlas_sandbox, state=OrderState.PROCESSED_ELSEWHERE)
    token = api_client_create(name="bank", permissions=["payments"]).token

    answer = Client().post(
        "/api/payments/",
        data=wire.dumps(
            {
                "externalId": "PAY-ELSEWHERE-1",
                "invoiceExternalId": invoice.external_id,
                "amount": D("100.00"),
                "currency": invoice.currency,
                "paymentDate": "2026-11-01",
            }
        ).encode(),
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )

    assert answer.status_code == 202, answer.json()
    confirmation = PaymentConfirmation.objects.get()
    assert confirmation.ledger_state == S.NOT_OURS
    assert f"ATLAS order {invoice.order_atlas_id}" in confirmation.ledger_error
    assert not Journal.objects.filter(kind=Journal.Kind.SETTLEMENT).exists()
    assert payment_settlements_due(now=_after_lease(), limit=10) == []


def test_workers_racing_for_one_settlement_post_it_once(payment_case, monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("threads share the in-memory SQLite database's table locks; PostgreSQL only")
    order = payment_case.case.receivable
    monkeypatch.setattr("ledger_sync.services.payments.payment_settlement_enqueue", lambda pk: None)
    payment_case.pay(payment_case.body(order, order.payments[0]))
    confirmation = PaymentConfirmation.objects.get()

    states = race(
        4,
        lambda _i: (
            settlements.payment_settlement_post(confirmation_id=confirmation.pk).ledger_state
        ),
    )

    assert S.POSTED in states
    assert len(payment_case.settlement_creates()) == 1
    confirmation.refresh_from_db()
    assert confirmation.ledger_state == S.POSTED
    reference = confirmation.settlement_journal.source_transaction_reference
    assert len(payment_case.ledger.app.transactions_with_reference(reference)) == 1


def test_a_suppliers_payable_is_settled_against_the_erps_invoice(
    make_atlas_sandbox, gotransverse_sandbox, settings
):
    """A supplier that does not self-bill: no invoice from us; the ERP reports the supplier's
    invoice (POST /api/invoices/), the bank pays it (POST /api/payments/), and the settlement
    books Dr payables / Cr bank with the ERP's invoice number."""
    atlas = make_atlas_sandbox(document_cases=True, webhook_secret=settings.ATLAS_WEBHOOK_SECRET)
    settings.ATLAS_BASE_URL = atlas.url
    settings.ATLAS_USERNAME = "ledger-sync"
    settings.ATLAS_PASSWORD = "sandbox-password"
    settings.JOURNAL_WORKFLOW = "auto"
    settings.ATLAS_MAX_RETRIES = 0
    settings.GOTRANSVERSE_MAX_RETRIES = 0
    order_id = atlas.app.dataset.document_cases["payable"]
    cycle_run(trigger="command", actor="settlement test")
    billing = (
        Journal.objects.get(order_sync__order__atlas_id=order_id, kind=Journal.Kind.POSTING)
        .lines.first()
        .billing_account_num
    )
    token = api_client_create(name="erp-and-bank", permissions=["invoices", "payments"]).token
    headers = {"Authorization": f"Bearer {token}"}
    reported = Client().post(
        "/api/invoices/",
        data=wire.dumps(
            {
                "externalId": "NG-AP-2026-0611",
                "order": order_id,
                "invoiceNumber": "NG-2026-0611",
                "amount": D("23800.00"),
                "currency": "EUR",
                "invoiceDate": "2026-06-05",
                "dueDate": "2026-06-19",
            }
        ).encode(),
        content_type="application/json",
        headers=headers,
    )
    assert reported.status_code == 202, reported.json()
    gotransverse_sandbox.app.reset_calls()

    paid = Client().post(
        "/api/payments/",
        data=wire.dumps(
            {
                "externalId": "PAY-NG-0611",
                "invoiceExternalId": "NG-AP-2026-0611",
                "amount": D("23800.00"),
                "currency": "EUR",
                "paymentDate": "2026-06-18",
            }
        ).encode(),
        content_type="application/json",
        headers=headers,
    )

    assert paid.status_code == 202, paid.json()
    confirmation = PaymentConfirmation.objects.get()
    assert confirmation.ledger_state == S.POSTED, confirmation.ledger_error
    (create,) = gotransverse_sandbox.app.calls_to("/ledgers/1/accounting-transactions/bulk", "POST")
    entries = create.body[0]["entries"]
    assert [
        (e["gl_account_num"], e["credit"], e["amount"]["amount"], e["billing_account_num"])
        for e in entries
    ] == [(PAYABLES, False, D("23800.00"), billing), (BANK, True, D("23800.00"), billing)]
    assert {e["entry_values"]["invoice_number"] for e in entries} == {"NG-2026-0611"}
    # The order's payable and its settlement net to zero (the supplier has other orders).
    references = {f"ATLAS-ORDER-{order_id}-R1", f"ATLAS-PAYMENT-{confirmation.pk}"}
    payables = D("0.00")
    for stored in gotransverse_sandbox.app.posted_transactions():
        if stored.source_transaction_reference in references:
            for e in stored.entries:
                if (e.gl_account_num, e.billing_account_num) == (PAYABLES, billing):
                    payables += -e.amount if e.credit else e.amount
    assert payables == 0
