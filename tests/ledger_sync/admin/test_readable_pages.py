"""Pages an accountant reads: amounts with separators and currency, dates without "midnight",
plain labels, no raw JSON (superusers get it folded), the mapping form offers ledger fields
and keeps what was typed when it is refused."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.urls import reverse

from ledger_sync.admin.display import counted, money, money_text, when
from tests.factories.atlas import CustomFieldDefinitionFactory, OrderFactory, OrderItemFactory
from tests.factories.parties import accountant, finance_lead

pytestmark = pytest.mark.django_db


def test_money_has_separators_currency_and_a_visible_minus():
    assert money_text(Decimal("85500"), "EUR") == "85,500.00 EUR"
    assert money_text(Decimal("-1234.5"), "EUR") == "-1,234.50 EUR"
    negative = str(money(Decimal("-1234.5"), "EUR"))
    assert "amount negative" in negative and "-1,234.50 EUR" in negative


def test_dates_at_midnight_show_the_day_only():
    assert when(datetime(2026, 4, 1, tzinfo=UTC)) == "2026-04-01"
    assert when(datetime(2026, 4, 1, 8, 30, tzinfo=UTC)) == "2026-04-01 08:30"
    assert when(None) == "—"


def test_counts_are_said_in_words():
    assert counted(1, "journal", "journals") == "1 journal"
    assert counted(1200, "journal", "journals") == "1,200 journals"


def test_order_page_reads_as_an_accountant_writes(client):
    order = OrderFactory(total_amount=Decimal("-85500.00"), erp_code=None)
    OrderItemFactory(order=order, status=2, cashflow=0)
    client.force_login(accountant())

    page = client.get(reverse("admin:ledger_sync_order_change", args=[order.pk])).content.decode()

    assert "-85,500.00 EUR" in page
    assert "2026-04-01" in page and "midnight" not in page
    assert "ERP document code" in page and "Erp code" not in page
    assert "Raw JSON" not in page  # an accountant never sees the payload


def test_a_superuser_gets_the_raw_json_folded(admin_client):
    order = OrderFactory()

    page = admin_client.get(
        reverse("admin:ledger_sync_order_change", args=[order.pk])
    ).content.decode()

    assert '<details class="raw-json"><summary>Show the raw JSON</summary>' in page


def test_order_item_list_says_in_order_and_receivable(client):
    OrderItemFactory(status=2, cashflow=0, net_amount=Decimal("71848.74"))
    client.force_login(accountant())

    page = client.get(reverse("admin:ledger_sync_orderitem_changelist")).content.decode()

    assert "In order" in page and "Active (receivable)" in page
    assert "71,848.74 EUR" in page


def test_mapping_form_offers_ledger_fields_and_keeps_a_refused_input(client):
    CustomFieldDefinitionFactory(name="ERP Cost Centre")
    refused = CustomFieldDefinitionFactory(name="Reporting Segment")
    client.force_login(finance_lead())

    page = client.get(reverse("admin:ledger_sync_customfieldmapping_changelist")).content.decode()
    assert '<datalist id="entry-keys">' in page and '<option value="cost_centre">' in page

    response = client.post(
        reverse("admin:ledger_sync_customfieldmapping_set"),
        {"definition": refused.pk, "target_key": "Reporting Segment!", "choice": "map"},
    )

    body = response.content.decode()
    assert response.status_code == 200
    assert 'value="Reporting Segment!"' in body
    assert "is not a valid entry_values key" in body
    assert 'aria-invalid="true"' in body


def test_the_order_page_costs_the_same_for_1_and_10_items(client):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.force_login(accountant())

    def queries(items: int) -> int:
        order = OrderFactory()
        for _ in range(items):
            OrderItemFactory(order=order)
        with CaptureQueriesContext(connection) as captured:
            client.get(reverse("admin:ledger_sync_order_change", args=[order.pk]))
        return len(captured)

    # A first page load fills per-process caches (the navigation's content types), so both
    # measured loads come after one that is not counted.
    queries(1)
    assert queries(1) == queries(10)
