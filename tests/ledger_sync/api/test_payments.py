"""POST /api/payments/: idempotency, every refusal, partial then final payment, ATLAS down."""

from __future__ import annotations

import socket
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from integration import wire
from ledger_sync.models import (
    InvoiceSettlement,
    OrderState,
    OrderSync,
    PaymentConfirmation,
)
from ledger_sync.models.inbound import CallbackState
from ledger_sync.services.order_states import transition_allowed
from ledger_sync.services.payments import payment_confirmation_deliver
from ledger_sync.services.sweep import inbound_sweep
from tests.ledger_sync.api.conftest import bearer
from tests.ledger_sync.api.payment_support import payable_invoice

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/api/payments/"


@pytest.fixture
def invoice(atlas_sandbox, settings):
    settings.ATLAS_MAX_RETRIES = 0
    return payable_invoice(atlas_sandbox)


@pytest.fixture
def token(make_token):
    return make_token("payments", name="bank")


def pay(token: str, body: dict | bytes, *, client: Client | None = None):
    data = body if isinstance(body, bytes) else wire.dumps(body).encode()
    return (client or Client()).post(
        URL, data=data, content_type="application/json", headers=bearer(token)
    )


def payment(invoice, external_id: str = "PAY-1", **overrides) -> dict:
    return {
        "externalId": external_id,
        "invoiceExternalId": invoice.external_id,
        "amount": Decimal("400.00"),
        "currency": invoice.currency,
        "paymentDate": "2026-11-01",
        **overrides,
    }


def test_partial_then_final_payment_sets_is_paid_exactly_once(atlas_sandbox, invoice, token):
    first = pay(token, payment(invoice, "PAY-1", amount=Decimal("400.00")))

    assert first.status_code == 202
    body = first.json()
    # The answer reports what was stored; the task writes to ATLAS after the commit.
    assert body["status"] == "accepted"
    assert PaymentConfirmation.objects.get().state == CallbackState.WRITTEN_TO_ATLAS
    assert body["amount"] == "400.00"
    assert first["Location"] == body["statusUrl"]
    assert body["statusUrl"].endswith("/api/payments/PAY-1/")
    assert OrderSync.objects.get().state == OrderState.PARTIALLY_PAID
    assert atlas_sandbox.app.calls_to("/api/Invoice/Post") == []

    second = pay(token, payment(invoice, "PAY-2", amount=Decimal("600.00")))

    assert second.status_code == 202
    posts = [c.body for c in atlas_sandbox.app.calls_to("/api/Payment/Post")]
    assert posts == [
        {
            "data": [
                {
                    "invoiceId": invoice.atlas_id,
                    "orderId": invoice.order_atlas_id,
                    "externalId": "PAY-1",
                    "amount": Decimal("400.00"),
                    "paymentDate": "2026-11-01T00:00:00",
                }
            ]
        },
        {
            "data": [
                {
                    "invoiceId": invoice.atlas_id,
                    "orderId": invoice.order_atlas_id,
                    "externalId": "PAY-2",
                    "amount": Decimal("600.00"),
                    "paymentDate": "2026-11-01T00:00:00",
                }
            ]
        },
    ]
    assert [c.body for c in atlas_sandbox.app.calls_to("/api/Invoice/Post")] == [
        {
            "data": [
                {
                    "id": invoice.atlas_id,
                    "orderId": invoice.order_atlas_id,
                    "externalId": invoice.external_id,
                    "invoiceNumber": invoice.invoice_number,
                    "amount": Decimal("1000.00"),
                    "invoiceDate": "2026-04-01T00:00:00",
                    "dueDate": "2026-04-15T00:00:00",
                    "isPaid": True,
                }
            ]
        }
    ]
    assert atlas_sandbox.app.dataset.invoices[invoice.atlas_id]["isPaid"] is True
    assert OrderSync.objects.get().state == OrderState.PAID
    assert InvoiceSettlement.objects.get().state == InvoiceSettlement.State.DONE

    # Running the deliveries and the sweep again sends nothing more.
    for confirmation in PaymentConfirmation.objects.all():
        payment_confirmation_deliver(confirmation_id=confirmation.pk)
    inbound_sweep(now=timezone.now() + timedelta(days=1))
    assert len(atlas_sandbox.app.calls_to("/api/Payment/Post")) == 2
    assert len(atlas_sandbox.app.calls_to("/api/Invoice/Post")) == 1


def test_the_same_request_again_answers_200_with_the_same_result(atlas_sandbox, invoice, token):
    first = pay(token, payment(invoice))
    # 400 and 400.00 are the same amount: the same request.
    again = pay(token, payment(invoice, amount=400))

    assert (first.status_code, again.status_code) == (202, 200)
    status = Client().get(first.json()["statusUrl"], headers=bearer(token)).json()
    assert again.json() == status
    stable = ("externalId", "invoice", "amount", "currency", "paymentDate", "receivedAt")
    assert {k: again.json()[k] for k in stable} == {k: first.json()[k] for k in stable}
    assert PaymentConfirmation.objects.count() == 1
    assert len(atlas_sandbox.app.calls_to("/api/Payment/Post")) == 1


def test_a_semantically_equal_body_is_the_same_request(atlas_sandbox, invoice, token):
    """ "Same body" is the same payment, not the same bytes: key order, white space, an amount
    as a number or a string with trailing zeros, the currency's case and a midnight datetime
    for the date do not make a new request (documented in the API description)."""
    first = pay(token, payment(invoice, amount=Decimal("400.50")))
    currency, invoice_id = invoice.currency.lower(), invoice.external_id
    raw = (
        f'{{ "paymentDate": "2026-11-01T00:00:00",\n  "currency": "{currency}",\n'
        f'  "amount": "400.500", "invoiceExternalId": "{invoice_id}", "externalId": "PAY-1" }}'
    ).encode()

    again = pay(token, raw)

    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["amount"] == "400.50"
    assert PaymentConfirmation.objects.count() == 1
    assert len(atlas_sandbox.app.calls_to("/api/Payment/Post")) == 1


def test_naming_the_invoice_another_way_is_a_different_request(atlas_sandbox, invoice, token):
    pay(token, payment(invoice))
    body = payment(invoice)
    del body["invoiceExternalId"]
    body["invoiceId"] = invoice.atlas_id

    assert pay(token, body).status_code == 409


def test_the_same_external_id_with_another_body_is_a_conflict(atlas_sandbox, invoice, token):
    pay(token, payment(invoice, amount=Decimal("400.00")))

    conflict = pay(token, payment(invoice, amount=Decimal("450.00")))

    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "idempotency_conflict"
    assert conflict.json()["error"]["field"] == "externalId"
    assert PaymentConfirmation.objects.get().amount == Decimal("400.00")


@pytest.mark.parametrize(
    ("overrides", "field", "code", "words"),
    [
        ({"invoiceExternalId": "INV-NOBODY"}, "invoiceExternalId", "unknown_invoice", "No invoice"),
        ({"currency": "JPY"}, "currency", "currency_mismatch", "differs"),
        ({"amount": Decimal("0")}, "amount", "non_positive_amount", "positive"),
        ({"amount": Decimal("-5.00")}, "amount", "non_positive_amount", "positive"),
        ({"amount": Decimal("10.005")}, "amount", "invalid_amount", "2 decimal places"),
        ({"paymentDate": "2999-01-01"}, "paymentDate", "future_date", "future"),
        ({"amount": Decimal("1000.01")}, "amount", "overpayment", "past its amount"),
    ],
)
def test_a_refused_payment_names_the_field_and_the_reason(
    atlas_sandbox, invoice, token, overrides, field, code, words
):
    response = pay(token, payment(invoice, **overrides))

    assert response.status_code == 422
    error = response.json()["error"]
    assert (error["field"], error["code"]) == (field, code)
    assert words in error["message"]
    assert not PaymentConfirmation.objects.exists()
    assert atlas_sandbox.app.calls == []


def test_an_unknown_invoice_by_atlas_id_names_invoice_id(invoice, token):
    body = payment(invoice)
    del body["invoiceExternalId"]
    body["invoiceId"] = 99999999

    response = pay(token, body)

    assert response.status_code == 422
    assert response.json()["error"]["field"] == "invoiceId"


def test_overpayment_within_the_tolerance_is_accepted(invoice, token, settings):
    settings.PAYMENT_OVERPAYMENT_TOLERANCE = Decimal("0.05")

    assert pay(token, payment(invoice, amount=Decimal("1000.05"))).status_code == 202
    assert pay(token, payment(invoice, "PAY-2", amount=Decimal("0.01"))).status_code == 422


def test_payments_already_in_atlas_count_towards_the_invoice(atlas_sandbox, invoice, token):
    # 900 paid in ATLAS by someone else and mirrored: only 100 is left.
    from ledger_sync.services.atlas_mirror import atlas_mirror_records
    from tests.ledger_sync.api.payment_support import atlas_client_for

    client = atlas_client_for(atlas_sandbox)
    (other,) = client.post_payments(
        [{"invoiceId": invoice.atlas_id, "externalId": "BANK-X", "amount": Decimal("900.00")}]
    ).records
    atlas_mirror_records(
        client=client, entity="Invoice", atlas_ids=[invoice.atlas_id], trigger="command"
    )
    from ledger_sync.models import Payment
    from ledger_sync.services.atlas_mirror import atlas_mirror_run  # noqa: F401

    Payment.objects.create(
        atlas_id=other.id,
        invoice_atlas_id=invoice.atlas_id,
        order_atlas_id=invoice.order_atlas_id,
        external_id="BANK-X",
        amount=Decimal("900.00"),
        raw_json="{}",
        content_hash="x",
        first_seen_at=timezone.now(),
        last_seen_at=timezone.now(),
        last_changed_at=timezone.now(),
    )

    refused = pay(token, payment(invoice, amount=Decimal("100.01")))
    accepted = pay(token, payment(invoice, "PAY-2", amount=Decimal("100.00")))

    assert refused.status_code == 422 and refused.json()["error"]["code"] == "overpayment"
    assert accepted.status_code == 202
    assert PaymentConfirmation.objects.get().state == CallbackState.WRITTEN_TO_ATLAS
    assert OrderSync.objects.get().state == OrderState.PAID


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", None),
        (b'{"externalId": "PAY-1"}', "amount"),
        (
            b'{"externalId": "PAY-1", "invoiceId": 1, "invoiceExternalId": "X", "amount": 1, '
            b'"currency": "EUR", "paymentDate": "2026-01-01"}',
            "invoiceExternalId",
        ),
        (
            b'{"externalId": "PAY-1", "invoiceId": 1, "amount": "ten", "currency": "EUR", '
            b'"paymentDate": "2026-01-01"}',
            "amount",
        ),
        (
            b'{"externalId": "PAY-1", "invoiceId": 1, "amount": 1, "currency": "EURO", '
            b'"paymentDate": "2026-01-01"}',
            "currency",
        ),
        (
            b'{"externalId": "PAY-1", "invoiceId": 1, "amount": 1, "currency": "EUR", '
            b'"paymentDate": "yesterday"}',
            "paymentDate",
        ),
    ],
)
def test_a_malformed_request_is_a_400_naming_the_field(token, body, field):
    response = pay(token, body)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["field"] == field
    assert error["message"]


def test_amounts_are_read_exactly_never_through_float(invoice, token):
    response = pay(
        token,
        b'{"externalId": "PAY-1", "invoiceExternalId": "%s", "amount": 0.1, '
        b'"currency": "%s", "paymentDate": "2026-11-01"}'
        % (invoice.external_id.encode(), invoice.currency.encode()),
    )

    assert response.status_code == 202
    assert PaymentConfirmation.objects.get().amount == Decimal("0.10")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_atlas_unreachable_the_payment_is_accepted_stored_and_delivered_later(
    atlas_sandbox, invoice, token, settings
):
    settings.ATLAS_BASE_URL = f"http://127.0.0.1:{_closed_port()}"

    response = pay(token, payment(invoice, amount=Decimal("1000.00")))

    assert response.status_code == 202
    stored = PaymentConfirmation.objects.get()
    assert stored.state == CallbackState.FAILED
    assert "ATLAS" in stored.last_error
    assert stored.next_attempt_at is not None
    assert atlas_sandbox.app.calls_to("/api/Payment/Post") == []

    # Not yet due: the sweep leaves it alone.
    inbound_sweep(now=stored.next_attempt_at - timedelta(seconds=1))
    assert PaymentConfirmation.objects.get().state == CallbackState.FAILED

    settings.ATLAS_BASE_URL = atlas_sandbox.url
    inbound_sweep(now=stored.next_attempt_at + timedelta(seconds=1))

    stored.refresh_from_db()
    assert stored.state == CallbackState.WRITTEN_TO_ATLAS
    assert stored.atlas_payment_id is not None
    (post,) = atlas_sandbox.app.calls_to("/api/Payment/Post")
    assert post.body["data"][0]["externalId"] == "PAY-1"
    assert atlas_sandbox.app.dataset.invoices[invoice.atlas_id]["isPaid"] is True
    assert OrderSync.objects.get().state == OrderState.PAID
    status = Client().get("/api/payments/PAY-1/", headers=bearer(token)).json()
    assert status["status"] == "written_to_atlas"
    assert status["confirmedAt"] is not None


def test_a_retry_finds_a_payment_that_landed_and_does_not_create_it_again(
    atlas_sandbox, invoice, token
):
    from tests.ledger_sync.api.payment_support import atlas_client_for

    pay(token, payment(invoice))
    stored = PaymentConfirmation.objects.get()
    # As if the first answer had been lost: the payment is in ATLAS, we recorded a failure.
    PaymentConfirmation.objects.filter(pk=stored.pk).update(
        state=CallbackState.FAILED, atlas_payment_id=None
    )
    atlas_sandbox.app.reset_calls()

    payment_confirmation_deliver(confirmation_id=stored.pk)

    stored.refresh_from_db()
    assert stored.state == CallbackState.WRITTEN_TO_ATLAS
    assert atlas_sandbox.app.calls_to("/api/Payment/Post") == []
    in_atlas = atlas_client_for(atlas_sandbox).get_payments_by_invoice_ids([invoice.atlas_id])
    assert [p.external_id for p in in_atlas.records] == ["PAY-1"]
    assert stored.atlas_payment_id == in_atlas.records[0].id


def test_status_url_of_an_unknown_payment_is_404(token):
    response = Client().get("/api/payments/NOPE/", headers=bearer(token))

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_payment_date_today_is_accepted(invoice, token):
    body = payment(invoice, paymentDate=date.today().isoformat())

    assert pay(token, body).status_code == 202


class _InvoiceReadsFail:
    """An ATLAS client whose invoice reads fail (ATLAS hiccups after taking the payment)."""

    def __init__(self, client):
        self._client = client

    def __getattr__(self, name):
        return getattr(self._client, name)

    def get_invoices(self, ids=None):
        from integration.atlas.errors import AtlasServerError

        raise AtlasServerError("unavailable", endpoint="/api/Invoice/GetByIds", status=503)


def test_settling_is_retried_by_the_sweep_when_atlas_fails_after_the_payment(
    atlas_sandbox, invoice, token, monkeypatch
):
    from tests.ledger_sync.api.payment_support import atlas_client_for

    # The request's task is not run; the delivery below runs with a flaky client.
    monkeypatch.setattr("ledger_sync.services.payments._enqueue", lambda func: lambda pk: None)
    pay(token, payment(invoice, amount=Decimal("1000.00")))
    stored = PaymentConfirmation.objects.get()

    payment_confirmation_deliver(
        confirmation_id=stored.pk, client=_InvoiceReadsFail(atlas_client_for(atlas_sandbox))
    )

    stored.refresh_from_db()
    assert stored.state == CallbackState.WRITTEN_TO_ATLAS
    assert stored.invoice_checked_at is None
    assert atlas_sandbox.app.calls_to("/api/Invoice/Post") == []

    inbound_sweep(now=timezone.now() + timedelta(minutes=5))

    stored.refresh_from_db()
    assert stored.invoice_checked_at is not None
    assert len(atlas_sandbox.app.calls_to("/api/Invoice/Post")) == 1
    assert OrderSync.objects.get().state == OrderState.PAID


def test_concurrent_payments_to_one_invoice_never_overpay_it(invoice, token):
    import threading

    from django.db import connection, connections

    if connection.vendor != "postgresql":
        pytest.skip("threads share the in-memory SQLite database's table locks; PostgreSQL only")
    start = threading.Barrier(4)
    codes: list[int] = []

    def send(index: int) -> None:
        try:
            start.wait(timeout=10)
            response = pay(token, payment(invoice, f"PAY-{index}", amount=Decimal("600.00")))
            codes.append(response.status_code)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=send, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(codes) == [202, 422, 422, 422]
    assert PaymentConfirmation.objects.count() == 1


@pytest.mark.parametrize("state", [OrderState.POSTED, OrderState.ERP_CODE_WRITTEN])
def test_a_payment_before_the_write_back_finished_leaves_the_order_to_it(
    atlas_sandbox, token, settings, state
):
    """The invoice is already in ATLAS but the order's own write-back has not finished: paying
    it must not move the order past the states its erpCode/invoice write-back runs from. It
    becomes PAID once the write-back made it INVOICED."""
    settings.ATLAS_MAX_RETRIES = 0
    invoice = payable_invoice(atlas_sandbox, state=state)

    response = pay(token, payment(invoice, amount=invoice.amount))

    assert response.status_code == 202
    assert PaymentConfirmation.objects.get().state == CallbackState.WRITTEN_TO_ATLAS
    assert InvoiceSettlement.objects.get().state == InvoiceSettlement.State.DONE
    order_sync = OrderSync.objects.get()
    assert order_sync.state == state
    assert transition_allowed(from_state=order_sync.state, to_state=OrderState.INVOICED)

    OrderSync.objects.update(state=OrderState.INVOICED)  # what the write-back does next
    report = inbound_sweep(now=timezone.now())

    assert report.order_states == 1
    assert OrderSync.objects.get().state == OrderState.PAID
    assert inbound_sweep(now=timezone.now()).order_states == 0


def test_a_partial_payment_before_the_write_back_finished_is_caught_up(
    atlas_sandbox, token, settings
):
    settings.ATLAS_MAX_RETRIES = 0
    invoice = payable_invoice(atlas_sandbox, state=OrderState.ERP_CODE_WRITTEN)

    pay(token, payment(invoice, amount=Decimal("1.00")))

    assert OrderSync.objects.get().state == OrderState.ERP_CODE_WRITTEN
    OrderSync.objects.update(state=OrderState.INVOICED)
    inbound_sweep(now=timezone.now())
    assert OrderSync.objects.get().state == OrderState.PARTIALLY_PAID


def test_a_failing_queue_still_accepts_a_stored_payment(atlas_sandbox, invoice, token, monkeypatch):
    def broken_queue(pk: int) -> None:
        raise ConnectionError("broker unavailable")

    monkeypatch.setattr("ledger_sync.services.payments._enqueue", lambda func: broken_queue)

    response = pay(token, payment(invoice))

    assert response.status_code == 202
    assert PaymentConfirmation.objects.get().state == CallbackState.ACCEPTED
    inbound_sweep(now=timezone.now() + timedelta(minutes=1))
    assert PaymentConfirmation.objects.get().state == CallbackState.WRITTEN_TO_ATLAS


class _AnswerLostAfterPaymentPost:
    """ATLAS saves the payment but the answer never arrives: the client raises a timeout with
    outcome_unknown=True (it never resends a create itself)."""

    def __init__(self, client):
        self._client = client

    def __getattr__(self, name):
        return getattr(self._client, name)

    def post_payments(self, records):
        from integration.atlas.errors import AtlasTimeoutError

        self._client.post_payments(records)
        error = AtlasTimeoutError("no answer in 30 s", endpoint="/api/Payment/Post")
        error.outcome_unknown = True
        raise error


def test_a_payment_whose_answer_was_lost_is_looked_up_not_created_again(
    atlas_sandbox, invoice, token, monkeypatch
):
    from tests.ledger_sync.api.payment_support import atlas_client_for

    monkeypatch.setattr("ledger_sync.services.payments._enqueue", lambda func: lambda pk: None)
    pay(token, payment(invoice, amount=invoice.amount))
    stored = PaymentConfirmation.objects.get()

    payment_confirmation_deliver(
        confirmation_id=stored.pk,
        client=_AnswerLostAfterPaymentPost(atlas_client_for(atlas_sandbox)),
    )

    stored.refresh_from_db()
    # Retried automatically (not left for a person), and visible as such.
    assert stored.state == CallbackState.FAILED
    assert stored.next_attempt_at is not None
    assert "look them up" in stored.last_error or "no answer" in stored.last_error

    inbound_sweep(now=stored.next_attempt_at + timedelta(seconds=1))

    stored.refresh_from_db()
    assert stored.state == CallbackState.WRITTEN_TO_ATLAS
    assert len(atlas_sandbox.app.calls_to("/api/Payment/Post")) == 1
    in_atlas = atlas_client_for(atlas_sandbox).get_payments_by_invoice_ids([invoice.atlas_id])
    assert [p.external_id for p in in_atlas.records] == ["PAY-1"]
    assert stored.atlas_payment_id == in_atlas.records[0].id
    assert atlas_sandbox.app.dataset.invoices[invoice.atlas_id]["isPaid"] is True
    assert len(atlas_sandbox.app.calls_to("/api/Invoice/Post")) == 1


def test_one_record_failing_unexpectedly_does_not_stop_the_sweep(
    atlas_sandbox, invoice, token, monkeypatch
):
    from ledger_sync.services import payments, sweep

    monkeypatch.setattr(payments, "_enqueue", lambda func: lambda pk: None)
    pay(token, payment(invoice, "PAY-1", amount=Decimal("100.00")))
    pay(token, payment(invoice, "PAY-2", amount=Decimal("100.00")))
    first, second = PaymentConfirmation.objects.order_by("received_at", "pk")
    deliver = payments.payment_confirmation_deliver

    def poisoned(*, confirmation_id, **kwargs):
        if confirmation_id == first.pk:
            raise RuntimeError("a bug in one record")
        return deliver(confirmation_id=confirmation_id, **kwargs)

    monkeypatch.setattr(sweep, "payment_confirmation_deliver", poisoned)

    report = inbound_sweep(now=timezone.now() + timedelta(minutes=1))

    assert report.payments == 1
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.state, second.state) == (CallbackState.ACCEPTED, CallbackState.WRITTEN_TO_ATLAS)
