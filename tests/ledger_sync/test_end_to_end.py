"""One order through the whole handshake, the way production runs it: both sandboxes over real
HTTP on loopback, our REST API through the Django test client, django-q2 tasks run in-process.

The story: mirror both systems; import the ERP party register and approve a counterparty match
(externalId written back once); ATLAS moves a draft order of that counterparty to the trigger
status and sends the signed webhook (stored once, a copy acknowledged as a duplicate); the order
is journaled balanced and sent to the ledger as a draft (review workflow); an accountant
approves it and it is posted by reference; the erpCode and the invoice are written back; the
bank confirms a partial and then a final payment (idempotent, conflicts refused); ATLAS holds
both payments and the invoice is marked paid, the AR Ledger a settlement for each; a second
cycle changes nothing anywhere.
"""

from __future__ import annotations

import io
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.test import Client

from integration import wire
from integration.sandbox.erp_parties import build_erp_register, write_csv
from ledger_sync.models import (
    Counterparty,
    CounterpartyMapping,
    InboundDelivery,
    Journal,
    MatchProposal,
    OrderState,
    OrderSync,
    PaymentConfirmation,
    WriteBackState,
)
from ledger_sync.models.inbound import CallbackState
from ledger_sync.services.api_clients import api_client_create
from ledger_sync.services.matching import counterparty_propose_matches, match_proposal_approve
from ledger_sync.services.pipeline import cycle_run
from ledger_sync.services.posting import journal_approve
from ledger_sync.services.writeback import write_backs_run
from tests.factories.parties import accountant, finance_lead

pytestmark = pytest.mark.django_db(transaction=True)

WEBHOOK_URL = "/api/webhooks/atlas/"
PAYMENTS_URL = "/api/payments/"
TRIGGER_STATUS = "Approved order by ETRM"
DRAFT_STATUS = "Draft order by ETRM"
# Kempen Gas SRL (seed 7): no externalId in ATLAS, its ERP party is BA-100003 in the register.
COUNTERPARTY_ID = 7
ERP_CODE = "BA-100003"
# One of its orders, all five items In Order (status 2), a Passive item among them, GL accounts
# from the items or the counterparty, dated June 2026 (an open period of the sandbox ledger).
ORDER_ID = 210
LEDGER_WRITES = {"POST", "PUT", "PATCH", "DELETE"}


@pytest.fixture
def story(atlas_sandbox, gotransverse_sandbox, settings):
    settings.JOURNAL_WORKFLOW = "review"
    settings.ATLAS_MAX_RETRIES = 0
    settings.GOTRANSVERSE_MAX_RETRIES = 0
    cache.clear()  # API throttles live in the cache
    # The order starts as a draft in ATLAS; the story moves it to the trigger status.
    atlas_sandbox.app.dataset.orders[ORDER_ID]["status"] = DRAFT_STATUS
    return atlas_sandbox, gotransverse_sandbox


def _cycle():
    return cycle_run(trigger="command", actor="end-to-end test")


def test_one_order_walks_the_whole_handshake(story, tmp_path, live_server):
    atlas, ledger = story
    # ATLAS delivers its webhooks over HTTP to our server, as in production.
    atlas.app.webhook_url = live_server.url + WEBHOOK_URL
    dataset = atlas.app.dataset

    # 1. Mirror both systems, import the ERP party register, approve the proposed match.
    _cycle()
    register = build_erp_register(dataset.counterparties.values(), seed=7)
    assert register.truth[COUNTERPARTY_ID] == ERP_CODE
    csv_path = write_csv(register.parties, tmp_path / "erp_parties.csv")
    call_command("import_erp_parties", str(csv_path), stdout=io.StringIO())
    counterparty_propose_matches()
    proposal = MatchProposal.objects.get(
        counterparty__atlas_id=COUNTERPARTY_ID, rank=1, status=MatchProposal.Status.PROPOSED
    )
    assert proposal.erp_party.code == ERP_CODE
    atlas.app.reset_calls()

    match_proposal_approve(proposals=[proposal], user=finance_lead())

    assert [c.body for c in atlas.app.calls_to("/api/Counterparty/Post")] == [
        {"data": [{**dataset.counterparties[COUNTERPARTY_ID], "externalId": ERP_CODE}]}
    ]
    assert dataset.counterparties[COUNTERPARTY_ID]["externalId"] == ERP_CODE
    mapping = CounterpartyMapping.objects.get(counterparty__atlas_id=COUNTERPARTY_ID)
    assert (mapping.erp_code, mapping.write_back_state) == (ERP_CODE, WriteBackState.WRITTEN)
    assert Counterparty.objects.get(atlas_id=COUNTERPARTY_ID).external_id == ERP_CODE

    # 2. ATLAS moves the draft order to the trigger status and signs the webhook.
    atlas.app.reset_calls()
    ledger.app.reset_calls()
    sent = atlas.app.set_order_status(ORDER_ID, TRIGGER_STATUS)

    assert wire.loads(sent.body) == {
        "event": "order.status_changed",
        "entityType": "Order",
        "entityId": ORDER_ID,
        "newStatus": TRIGGER_STATUS,
        "timestamp": "2026-11-02T09:00:00Z",
    }

    delivery = InboundDelivery.objects.get()
    assert (sent.status_code, sent.error) == (200, None)
    assert delivery.state == InboundDelivery.State.PROCESSED, delivery.last_error
    assert wire.loads(delivery.raw_body) == wire.loads(sent.body)
    # ATLAS retries the same delivery: acknowledged, not applied again.
    duplicate = _deliver(sent)
    assert duplicate.status_code == 200
    assert duplicate.json() == {"status": "duplicate", "deliveryId": delivery.pk}
    assert InboundDelivery.objects.count() == 1

    # 3. Review workflow: one balanced journal, sent to the ledger once as a draft.
    order = dataset.orders[ORDER_ID]
    items = dataset.items_of(ORDER_ID)
    signed_gross = sum((i["netAmount"] + i["vatAmount"] for i in items), Decimal("0"))
    assert signed_gross == order["totalAmount"] == Decimal("809046.19")
    order_sync = OrderSync.objects.get(order__atlas_id=ORDER_ID)
    assert order_sync.state == OrderState.AWAITING_REVIEW
    journal = Journal.objects.get(order_sync=order_sync)
    reference = f"ATLAS-ORDER-{ORDER_ID}-R1"
    assert (journal.status, journal.source_transaction_reference) == (
        Journal.Status.DRAFT,
        reference,
    )
    (create,) = ledger.app.calls_to("/ledgers/1/accounting-transactions/bulk", "POST")
    assert create.query == {"auto_post": "false"}
    (sent_transaction,) = create.body
    assert sent_transaction["source_transaction_reference"] == reference
    entries = sent_transaction["entries"]
    debits = sum((e["amount"]["amount"] for e in entries if not e["credit"]), Decimal("0"))
    credits = sum((e["amount"]["amount"] for e in entries if e["credit"]), Decimal("0"))
    assert debits == credits == journal.total_debit == journal.total_credit
    # A mixed order: one receivable for its net (what the invoice says), no payable.
    assert debits == Decimal("898928.61")
    receivable = [e for e in entries if e["gl_account_num"] == "1200"]
    assert [(e["credit"], e["amount"]["amount"]) for e in receivable] == [(False, signed_gross)]
    assert not [e for e in entries if e["gl_account_num"] == "2000"]
    assert {e["billing_account_num"] for e in entries} == {ERP_CODE}
    assert {e["currency"] for e in (x["amount"] for x in entries)} == {"EUR"}
    assert all(isinstance(e["amount"]["amount"], Decimal) for e in entries)
    (draft,) = ledger.app.transactions_with_reference(reference)
    assert not draft.is_posted
    assert _ledger_writes(ledger) == [create]
    # The webhook only read its own order from ATLAS and wrote nothing there.
    assert [c.path for c in atlas.app.calls if c.path != "/api/token"] == [
        "/api/Order/GetByIds",
        "/api/OrderItem/GetByOrderIds",
    ]

    ledger.app.reset_calls()
    report = journal_approve(journals=[journal], user=accountant())

    assert (report.posted, report.failed, report.blocked) == (1, [], [])
    assert [(c.method, c.path, c.query, c.body) for c in _ledger_writes(ledger)] == [
        (
            "POST",
            "/ledgers/1/accounting-transactions/bulk/post",
            {"id_type": "SOURCE_TRANSACTION_REFERENCE"},
            [reference],
        )
    ]
    (stored,) = ledger.app.transactions_with_reference(reference)
    assert stored.is_posted and stored.id == draft.id
    journal.refresh_from_db()
    assert (journal.status, journal.ledger_transaction_id) == (
        Journal.Status.POSTED,
        str(stored.id),
    )
    order_sync.refresh_from_db()
    assert order_sync.state == OrderState.POSTED

    # 4. Write-back: the ERP document code on the order, then the invoice (looked up first).
    atlas.app.reset_calls()

    written = write_backs_run()

    assert (written.erp_codes_written, written.invoices_created, written.failed) == (1, 1, [])
    order_sync.refresh_from_db()
    erp_code = order_sync.erp_code
    assert erp_code == f"ERP-DOC-20260602-{stored.id}"  # ERP_CODE_PATTERN: date + ledger id
    assert [c.body for c in atlas.app.calls_to("/api/Order/Post")] == [
        {
            "data": [
                {
                    "id": ORDER_ID,
                    "erpCode": erp_code,
                    "registrationDate": order["registrationDate"],
                    "dueDate": order["dueDate"],
                    "totalAmount": Decimal("809046.19"),
                }
            ]
        }
    ]
    invoice_external_id = f"LS-INV-{ORDER_ID}"
    assert [c.path for c in atlas.app.calls if c.path != "/api/token"] == [
        "/api/Order/Post",
        "/api/Invoice/GetByExternalIds",
        "/api/Invoice/Post",
    ]
    assert atlas.app.calls_to("/api/Invoice/GetByExternalIds")[0].body == {
        "data": [invoice_external_id]
    }
    ((invoice_record,),) = [c.body["data"] for c in atlas.app.calls_to("/api/Invoice/Post")]
    assert invoice_record == {
        "orderId": ORDER_ID,
        "externalId": invoice_external_id,
        "invoiceNumber": "INV-2026-0001",  # the first number of the 2026 series
        "amount": Decimal("809046.19"),
        "invoiceDate": order["registrationDate"],
        "dueDate": order["dueDate"],
        "isPaid": False,
    }
    assert order["erpCode"] == erp_code
    (invoice,) = [i for i in dataset.invoices.values() if i["orderId"] == ORDER_ID]
    assert (invoice["externalId"], invoice["isPaid"]) == (invoice_external_id, False)
    assert order_sync.state == OrderState.INVOICED

    # 5. The bank confirms a partial payment, repeats it, conflicts with it, then pays the rest.
    token = api_client_create(name="bank", permissions=["payments"]).token
    atlas.app.reset_calls()
    ledger.app.reset_calls()
    partial = _payment("PAY-E2E-1", invoice_external_id, Decimal("300000.00"))
    final = _payment("PAY-E2E-2", invoice_external_id, Decimal("509046.19"))

    first = _pay(token, partial)

    assert first.status_code == 202, first.json()
    status_url = first.json()["statusUrl"]
    assert status_url.endswith("/api/payments/PAY-E2E-1/") and first["Location"] == status_url
    order_sync.refresh_from_db()
    assert order_sync.state == OrderState.PARTIALLY_PAID

    again = _pay(token, partial)

    assert again.status_code == 200
    assert again.json() == _get(token, status_url).json()
    assert again.json()["externalId"] == "PAY-E2E-1"

    conflict = _pay(token, {**partial, "amount": Decimal("300000.01")})

    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "idempotency_conflict"

    last = _pay(token, final)

    assert last.status_code == 202, last.json()
    assert [c.body for c in atlas.app.calls_to("/api/Payment/Post")] == [
        {"data": [_payment_record(invoice, "PAY-E2E-1", Decimal("300000.00"))]},
        {"data": [_payment_record(invoice, "PAY-E2E-2", Decimal("509046.19"))]},
    ]
    assert [c.body for c in atlas.app.calls_to("/api/Invoice/Post")] == [
        {"data": [{**invoice_record, "id": invoice["id"], "isPaid": True}]}
    ]
    assert invoice["isPaid"] is True
    order_sync.refresh_from_db()
    assert order_sync.state == OrderState.PAID
    # Each payment posted its own settlement to the AR Ledger (Dr bank / Cr receivables), the
    # repeat and the conflict posted nothing: the customer's receivable is cleared.
    settlement_posts = _ledger_writes(ledger)
    assert [(c.path, c.query) for c in settlement_posts] == [
        ("/ledgers/1/accounting-transactions/bulk", {"auto_post": "true"})
    ] * 2
    sent_settlements = [c.body[0] for c in settlement_posts]
    confirmations = {p.external_id: p.pk for p in PaymentConfirmation.objects.all()}
    assert [t["source_transaction_reference"] for t in sent_settlements] == [
        f"ATLAS-PAYMENT-{confirmations['PAY-E2E-1']}",
        f"ATLAS-PAYMENT-{confirmations['PAY-E2E-2']}",
    ]
    assert [
        [(e["gl_account_num"], e["credit"], e["amount"]["amount"]) for e in t["entries"]]
        for t in sent_settlements
    ] == [
        [("1000", False, Decimal("300000.00")), ("1200", True, Decimal("300000.00"))],
        [("1000", False, Decimal("509046.19")), ("1200", True, Decimal("509046.19"))],
    ]
    receivable = Decimal("0.00")
    for posted in ledger.app.posted_transactions():
        for e in posted.entries:
            if (e.gl_account_num, e.billing_account_num) == ("1200", ERP_CODE):
                receivable += -e.amount if e.credit else e.amount
    assert receivable == 0
    in_atlas = {p["externalId"]: p for p in dataset.payments.values() if p["orderId"] == ORDER_ID}
    assert {k: p["amount"] for k, p in in_atlas.items()} == {
        "PAY-E2E-1": Decimal("300000.00"),
        "PAY-E2E-2": Decimal("509046.19"),
    }
    for external_id, amount in (("PAY-E2E-1", "300000.00"), ("PAY-E2E-2", "509046.19")):
        status = _get(token, f"/api/payments/{external_id}/")
        assert status.status_code == 200
        shown = status.json()
        assert (shown["amount"], shown["status"], shown["atlasPaymentId"]) == (
            amount,
            CallbackState.WRITTEN_TO_ATLAS,
            in_atlas[external_id]["id"],
        )
        assert shown["confirmedAt"] is not None
    assert set(PaymentConfirmation.objects.values_list("state", "ledger_state")) == {
        (CallbackState.WRITTEN_TO_ATLAS, "posted")
    }

    # 6. Another full cycle finds nothing to do: nothing posted, nothing written anywhere.
    atlas.app.reset_calls()
    ledger.app.reset_calls()
    transactions = len(ledger.app.transactions)

    cycle = _cycle()

    assert _ledger_writes(ledger) == []
    assert [c.path for c in atlas.app.calls if c.path.endswith("/Post")] == []
    assert len(ledger.app.transactions) == transactions
    assert cycle.stages["post"]["sent"] == 0
    order_sync.refresh_from_db()
    assert order_sync.state == OrderState.PAID
    assert len(ledger.app.transactions_with_reference(reference)) == 1


def _deliver(sent):
    """Sends the sandbox's recorded delivery again, byte for byte with its signature."""
    return Client().post(
        WEBHOOK_URL,
        data=sent.body.encode(),
        content_type="application/json",
        headers={"X-Atlas-Signature": sent.signature},
    )


def _payment(external_id: str, invoice_external_id: str, amount: Decimal) -> dict:
    return {
        "externalId": external_id,
        "invoiceExternalId": invoice_external_id,
        "amount": amount,
        "currency": "EUR",
        "paymentDate": "2026-11-02",
    }


def _payment_record(invoice: dict, external_id: str, amount: Decimal) -> dict:
    return {
        "invoiceId": invoice["id"],
        "orderId": ORDER_ID,
        "externalId": external_id,
        "amount": amount,
        "paymentDate": "2026-11-02T00:00:00",
    }


def _pay(token: str, body: dict):
    return Client().post(
        PAYMENTS_URL,
        data=wire.dumps(body).encode(),
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )


def _get(token: str, url: str):
    return Client().get(url, headers={"Authorization": f"Bearer {token}"})


def _ledger_writes(ledger) -> list:
    return [c for c in list(ledger.app.calls) if c.method in LEDGER_WRITES]
