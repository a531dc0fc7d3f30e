"""CSV/XLSX exports from the admin lists: journal lines with their journal, order and GL
account names; blocked orders with reason, message and an absolute fix link."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import openpyxl
import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from ledger_sync.models import BlockedReason, OrderState, OrderSync
from tests.factories.parties import accountant
from tests.factories.reference import sandbox_chart
from tests.ledger_sync.services.posting_support import built_journal

pytestmark = pytest.mark.django_db

CSV_FORMAT, XLSX_FORMAT = "0", "1"


def _export(client, url_name, *, file_format=CSV_FORMAT, query=""):
    url = reverse(url_name) + query
    response = client.post(url, {"format": file_format, "resource": "0"})
    assert response.status_code == 200, response.content[:500]
    return response


def _csv_rows(response) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))


def test_journal_export_has_one_row_per_line_with_names_and_numbers(client):
    sandbox_chart()
    journal = built_journal(document_reference="SO-2026-04-0042")
    client.force_login(accountant())

    response = _export(client, "admin:ledger_sync_journal_export")

    assert response["Content-Disposition"].startswith('attachment; filename="journal-lines-')
    rows = _csv_rows(response)
    columns = ("Line", "GL account", "GL account name", "Debit", "Credit")
    assert [tuple(row[c] for c in columns) for row in rows] == [
        ("1", "1200", "Trade receivables", "85500.00", ""),
        ("2", "4001", "Power sales", "", "71848.74"),
        ("3", "2200", "Output VAT", "", "13651.26"),
    ]
    assert {r["Journal"] for r in rows} == {journal.source_transaction_reference}
    assert {r["Document"] for r in rows} == {"SO-2026-04-0042"}
    assert {r["Journal status"] for r in rows} == {"Built, nothing sent"}


def test_journal_export_follows_the_list_filters(client):
    built = built_journal()
    blocked = built_journal()
    OrderSync.objects.filter(pk=blocked.order_sync_id).update(
        state=OrderState.BLOCKED, blocked_reason=BlockedReason.REMOTE_REJECTION
    )
    client.force_login(accountant())

    query = "?blocked_reason=remote_rejection"
    rows = _csv_rows(_export(client, "admin:ledger_sync_journal_export", query=query))

    assert {r["Journal"] for r in rows} == {blocked.source_transaction_reference}
    assert built.source_transaction_reference not in {r["Journal"] for r in rows}


def test_journal_export_as_xlsx_keeps_amounts_numeric(client):
    built_journal()
    client.force_login(accountant())

    response = _export(client, "admin:ledger_sync_journal_export", file_format=XLSX_FORMAT)

    sheet = openpyxl.load_workbook(io.BytesIO(response.content)).active
    header = [cell.value for cell in sheet[1]]
    debit = [row[header.index("Debit")] for row in sheet.iter_rows(min_row=2, values_only=True)]
    assert Decimal(str(debit[0])) == Decimal("85500.00")


def test_blocked_orders_export_gives_reason_message_and_absolute_fix_link(client):
    journal = built_journal()
    OrderSync.objects.filter(pk=journal.order_sync_id).update(
        state=OrderState.BLOCKED,
        blocked_reason=BlockedReason.UNMATCHED_COUNTERPARTY,
        blocked_message="Counterparty Energy Trader (42) has no ERP code.",
        blocked_fix_url="/admin/ledger_sync/counterpartymatching/?q=42",
    )
    built_journal()  # not blocked: not in the export
    client.force_login(accountant())

    page = client.get(reverse("admin:ledger_sync_ordersync_changelist")).content.decode()
    assert "Export blocked orders" in page
    rows = _csv_rows(_export(client, "admin:ledger_sync_ordersync_export", query="?state=blocked"))

    assert len(rows) == 1
    row = rows[0]
    assert row["ATLAS order"] == str(journal.order_sync.order.atlas_id)
    assert row["Blocked reason"] == "Counterparty not mapped to an ERP code"
    assert row["Message"] == "Counterparty Energy Trader (42) has no ERP code."
    assert row["Fix it here"] == "http://testserver/admin/ledger_sync/counterpartymatching/?q=42"
    assert row["Order page"] == (
        f"http://testserver/admin/ledger_sync/ordersync/{journal.order_sync_id}/change/"
    )


def test_export_needs_the_view_permission(client):
    stranger = get_user_model().objects.create_user("stranger", password="x", is_staff=True)
    client.force_login(stranger)

    response = client.post(reverse("admin:ledger_sync_journal_export"), {"format": CSV_FORMAT})

    assert response.status_code == 403
