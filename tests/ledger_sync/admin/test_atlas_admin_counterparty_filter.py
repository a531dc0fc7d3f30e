"""Invoices and payments filter by counterparty, like orders and items (issue 2: "filterable
(status, counterparty, sync state)")."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.factories.atlas import (
    CounterpartyFactory,
    InvoiceFactory,
    OrderFactory,
    PaymentFactory,
)

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("model", "factory"), [("invoice", InvoiceFactory), ("payment", PaymentFactory)]
)
def test_counterparty_filter_narrows_invoices_and_payments(admin_client, model, factory):
    order = OrderFactory(counterparty=CounterpartyFactory(atlas_id=4242))
    mine = factory(order=order) if model == "invoice" else factory(invoice__order=order)
    factory.create_batch(2)

    response = admin_client.get(
        reverse(f"admin:ledger_sync_{model}_changelist"), {"counterparty_atlas_id": "4242"}
    )

    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == [mine]
    assert b'name="counterparty_atlas_id" value="4242"' in response.content
