"""POST /api/invoices/: the ERP reports the invoice it issued for a posted order; it is looked
up in ATLAS by externalId and created through Invoice/Post."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from django.test import Client

from integration import wire
from ledger_sync.models import (
    InvoiceReport,
    IssuedInvoice,
    Journal,
    Order,
    OrderState,
    OrderSync,
    WriteBackStep,
)
from ledger_sync.models.inbound import CallbackState
from ledger_sync.services import invoice_reports
from ledger_sync.services.atlas_mirror import atlas_mirror_records
from ledger_sync.services.write_back_steps import WAITING_FOR_ERP_INVOICE
from tests.factories.journals import JournalFactory
from tests.ledger_sync.api.conftest import bearer
from tests.ledger_sync.api.payment_support import atlas_client_for, order_without_invoice

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/api/invoices/"


@pytest.fixture
def posted_order(atlas_sandbox, settings) -> Order:
    """An ATLAS order whose journal is posted and erpCode written; the invoice step waits for
    the ERP's number."""
    settings.ATLAS_MAX_RETRIES = 0
    settings.INVOICE_NUMBERS_FROM_ERP = True
    order_id = order_without_invoice(atlas_sandbox.app.dataset)
    client = atlas_client_for(atlas_sandbox)
    atlas_mirror_records(client=client, entity="Order", atlas_ids=[order_id], trigger="command")
    order = Order.objects.get(atlas_id=order_id)
    order_sync = OrderSync.objects.create(
        order=order, state=OrderState.ERP_CODE_WRITTEN, erp_code="ERP-DOC-1"
    )
    JournalFactory(
        order_sync=order_sync,
        status=Journal.Status.POSTED,
        currency=order.currency,
        total_debit=abs(order.total_amount),
        total_credit=abs(order.total_amount),
    )
    WriteBackStep.objects.create(
        order_sync=order_sync,
        kind=WriteBackStep.Kind.INVOICE,
        waiting_for=WAITING_FOR_ERP_INVOICE,
    )
    atlas_sandbox.app.reset_calls()
    return order


@pytest.fixture
def token(make_token):
    return make_token("invoices", name="erp")


def report(target: Order, **overrides) -> dict:
    return {
        "externalId": "ERP-INV-77",
        "order": target.atlas_id,
        "invoiceNumber": "2026-000077",
        "amount": abs(target.total_amount),
        "currency": target.currency,
        "invoiceDate": "2026-04-01",
        "dueDate": "2026-04-30",
        **overrides,
    }


def send(token: str, body: dict):
    return Client().post(
        URL, data=wire.dumps(body).encode(), content_type="application/json", headers=bearer(token)
    )


def test_the_invoice_is_looked_up_then_created_in_atlas(atlas_sandbox, posted_order, token):
    response = send(token, report(posted_order))

    assert response.status_code == 202
    assert response.json()["statusUrl"].endswith("/api/invoices/ERP-INV-77/")
    lookups = atlas_sandbox.app.calls_to("/api/Invoice/GetByExternalIds")
    assert [c.body for c in lookups] == [{"data": ["ERP-INV-77"]}]
    (create,) = atlas_sandbox.app.calls_to("/api/Invoice/Post")
    assert create.body == {
        "data": [
            {
                "orderId": posted_order.atlas_id,
                "externalId": "ERP-INV-77",
                "invoiceNumber": "2026-000077",
                "amount": abs(posted_order.total_amount),
                "invoiceDate": "2026-04-01T00:00:00",
                "dueDate": "2026-04-30T00:00:00",
                "isPaid": False,
            }
        ]
    }
    stored = InvoiceReport.objects.get()
    assert stored.state == CallbackState.WRITTEN_TO_ATLAS
    issued = IssuedInvoice.objects.get()
    assert issued.source == IssuedInvoice.Source.ERP_CALLBACK
    assert stored.atlas_invoice_id == issued.atlas_invoice_id is not None
    assert OrderSync.objects.get().state == OrderState.INVOICED
    status = Client().get(response.json()["statusUrl"], headers=bearer(token)).json()
    assert status["status"] == "written_to_atlas"
    assert status["atlasInvoiceId"] == issued.atlas_invoice_id


def test_an_invoice_already_in_atlas_is_found_not_created_twice(atlas_sandbox, posted_order, token):
    atlas_client_for(atlas_sandbox).post_invoices(
        [
            {
                **report(posted_order),
                "invoiceDate": "2026-04-01T00:00:00",
                "dueDate": None,
                "orderId": posted_order.atlas_id,
            }
        ]
    )
    atlas_sandbox.app.reset_calls()

    assert send(token, report(posted_order)).status_code == 202

    assert atlas_sandbox.app.calls_to("/api/Invoice/Post") == []
    assert InvoiceReport.objects.get().state == CallbackState.WRITTEN_TO_ATLAS


def test_the_same_report_again_is_200_and_another_body_is_409(atlas_sandbox, posted_order, token):
    first = send(token, report(posted_order))
    again = send(token, report(posted_order))
    conflict = send(token, report(posted_order, invoiceNumber="2026-000078"))

    assert (first.status_code, again.status_code, conflict.status_code) == (202, 200, 409)
    assert len(atlas_sandbox.app.calls_to("/api/Invoice/Post")) == 1


def test_unknown_order_is_422_naming_order(posted_order, token):
    response = send(token, report(posted_order, order=999999))

    assert response.status_code == 422
    assert response.json()["error"]["field"] == "order"
    assert response.json()["error"]["code"] == "unknown_order"


def test_an_order_without_a_posted_journal_is_422(posted_order, token):
    OrderSync.objects.update(state=OrderState.JOURNAL_BUILT)

    response = send(token, report(posted_order))

    assert response.status_code == 422
    assert response.json()["error"] == {
        "code": "order_not_posted",
        "field": "order",
        "message": response.json()["error"]["message"],
    }
    assert "no posted journal" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("overrides", "field", "code"),
    [
        ({"amount": Decimal("1.00")}, "amount", "amount_mismatch"),
        ({"currency": "JPY"}, "currency", "currency_mismatch"),
        ({"dueDate": "2026-03-01"}, "dueDate", "invalid_date"),
    ],
)
def test_a_report_disagreeing_with_the_order_is_422(posted_order, token, overrides, field, code):
    response = send(token, report(posted_order, **overrides))

    assert response.status_code == 422
    assert (response.json()["error"]["field"], response.json()["error"]["code"]) == (field, code)
    assert not InvoiceReport.objects.exists()


def test_atlas_down_keeps_the_report_and_the_sweep_delivers_it(
    atlas_sandbox, posted_order, token, settings
):
    from ledger_sync.services.sweep import inbound_sweep

    atlas_sandbox.faults.error_rate = 1.0

    assert send(token, report(posted_order)).status_code == 202

    stored = InvoiceReport.objects.get()
    assert stored.state == CallbackState.FAILED
    assert stored.next_attempt_at is not None
    atlas_sandbox.faults.error_rate = 0.0
    inbound_sweep(now=stored.next_attempt_at.replace(year=date.today().year + 1))
    stored.refresh_from_db()
    assert stored.state == CallbackState.WRITTEN_TO_ATLAS
    assert len(atlas_sandbox.app.calls_to("/api/Invoice/Post")) == 1


def _hand_made_invoice_in_atlas(atlas_sandbox, order: Order, *, mirror: bool) -> int:
    client = atlas_client_for(atlas_sandbox)
    (created,) = client.post_invoices(
        [
            {
                "orderId": order.atlas_id,
                "externalId": "HAND-1",
                "invoiceNumber": "MANUAL-1",
                "amount": abs(order.total_amount),
                "invoiceDate": "2026-04-01T00:00:00",
                "dueDate": "2026-04-30T00:00:00",
                "isPaid": False,
            }
        ]
    ).records
    if mirror:
        atlas_mirror_records(
            client=client, entity="Invoice", atlas_ids=[created.id], trigger="command"
        )
    atlas_sandbox.app.reset_calls()
    return created.id


def test_an_order_atlas_already_invoiced_under_another_id_is_422(
    atlas_sandbox, posted_order, token
):
    _hand_made_invoice_in_atlas(atlas_sandbox, posted_order, mirror=True)

    response = send(token, report(posted_order))

    assert response.status_code == 422
    assert (response.json()["error"]["field"], response.json()["error"]["code"]) == (
        "order",
        "already_invoiced",
    )
    assert "HAND-1" in response.json()["error"]["message"]
    assert not InvoiceReport.objects.exists()
    assert atlas_sandbox.app.calls_to("/api/Invoice/Post") == []


def test_another_invoice_found_by_the_write_back_rejects_the_report(
    atlas_sandbox, posted_order, token, monkeypatch
):
    """The mirror learns of ATLAS's own invoice only after the report was accepted: the report
    is not claimed as written (ATLAS never got ERP-INV-77), and ATLAS keeps one invoice."""
    queued: list[int] = []
    monkeypatch.setattr(invoice_reports, "_enqueue", lambda func: queued.append)
    assert send(token, report(posted_order)).status_code == 202
    atlas_id = _hand_made_invoice_in_atlas(atlas_sandbox, posted_order, mirror=True)

    invoice_reports.invoice_report_deliver(
        report_id=queued[0], client=atlas_client_for(atlas_sandbox)
    )

    stored = InvoiceReport.objects.get()
    assert stored.state == CallbackState.REJECTED
    assert "HAND-1" in stored.last_error
    assert atlas_sandbox.app.calls_to("/api/Invoice/Post") == []
    invoices = atlas_sandbox.app.dataset.invoices.values()
    assert [i["id"] for i in invoices if i["orderId"] == posted_order.atlas_id] == [atlas_id]
