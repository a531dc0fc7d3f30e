"""The reconciliation report in the admin: runs (clean ones too), differences with each
system's figure and a link, filters, CSV/XLSX export, "Reconcile now" queued, and list pages
whose query count does not grow with the rows."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import openpyxl
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from ledger_sync.admin import reconciliation as reconciliation_admin
from ledger_sync.models import ReconciliationDifference
from tests.factories.parties import accountant
from tests.factories.reconciliation import (
    ReconciliationDifferenceFactory,
    ReconciliationRunFactory,
)

pytestmark = pytest.mark.django_db

DIFFERENCES = "admin:ledger_sync_reconciliationdifference_changelist"
RUNS = "admin:ledger_sync_reconciliationrun_changelist"


@pytest.fixture
def reader(client):
    user = accountant()
    client.force_login(user)
    return user


def test_a_clean_run_shows_zero_differences_and_a_run_with_some_links_to_them(client, reader):
    ReconciliationRunFactory(difference_count=0)
    run = ReconciliationRunFactory(difference_count=1234)

    page = client.get(reverse(RUNS)).content.decode()

    assert "0 — everything agrees" in page
    assert "1,234 differences" in page
    assert f"run__id__exact={run.pk}" in page
    assert "Reconcile now" in page


def test_differences_show_each_figure_with_thousands_separators_and_a_link(client, reader):
    difference = ReconciliationDifferenceFactory(
        atlas_amount=Decimal("1234567.89"), fix_url="/admin/ledger_sync/journal/7/change/"
    )

    page = client.get(reverse(DIFFERENCES)).content.decode()

    assert "1,234,567.89 EUR" in page and "-1,234,567.89 EUR" in page
    assert f'<a href="/admin/ledger_sync/journal/7/change/">{difference.record_label}</a>' in page
    assert "We recorded it as posted" in page


def test_differences_filter_by_run_level_and_kind(client, reader):
    old = ReconciliationDifferenceFactory(record_label="OLD-RUN-ROW")
    new = ReconciliationDifferenceFactory(
        record_label="NEW-RUN-ROW",
        level=ReconciliationDifference.Level.ACCOUNT,
        kind=ReconciliationDifference.Kind.ACCOUNT_BALANCE,
    )

    by_run = client.get(reverse(DIFFERENCES), {"run__id__exact": new.run_id}).content.decode()
    by_level = client.get(reverse(DIFFERENCES), {"level__exact": 1}).content.decode()
    by_kind = client.get(reverse(DIFFERENCES), {"kind__exact": "account_balance"}).content.decode()

    assert "NEW-RUN-ROW" in by_run and "OLD-RUN-ROW" not in by_run
    assert "OLD-RUN-ROW" in by_level and "NEW-RUN-ROW" not in by_level
    assert "NEW-RUN-ROW" in by_kind and "OLD-RUN-ROW" not in by_kind
    assert old.run_id != new.run_id


def _export(client, file_format: int, **filters: object) -> bytes:
    response = client.post(
        reverse("admin:ledger_sync_reconciliationdifference_export") + _query(filters),
        {"format": str(file_format), **_all_fields()},
    )
    assert response.status_code == 200, response.content[:500]
    return response.content


def _query(filters: dict) -> str:
    return ("?" + "&".join(f"{k}={v}" for k, v in filters.items())) if filters else ""


def _all_fields() -> dict[str, str]:
    from ledger_sync.admin.reconciliation import ReconciliationDifferenceResource

    resource = ReconciliationDifferenceResource.__name__.lower()
    return {f"{resource}_{name}": "on" for name in ReconciliationDifferenceResource.Meta.fields}


def test_csv_export_holds_the_filtered_rows_with_numeric_figures(client, reader):
    kept = ReconciliationDifferenceFactory(atlas_amount=None)
    ReconciliationDifferenceFactory()  # another run: filtered out

    rows = list(
        csv.DictReader(io.StringIO(_export(client, 0, run__id__exact=kept.run_id).decode()))
    )

    assert len(rows) == 1
    assert rows[0]["record"] == kept.record_label
    assert rows[0]["difference"] == "-1234567.89" and rows[0]["ledger_sync"] == "1234567.89"
    assert rows[0]["atlas"] == "" and rows[0]["key"] == kept.key


def test_xlsx_export_opens_as_a_workbook(client, reader):
    difference = ReconciliationDifferenceFactory()

    content = _export(client, 1)

    sheet = openpyxl.load_workbook(io.BytesIO(content)).active
    header, *rows = list(sheet.iter_rows(values_only=True))
    assert "difference" in header and len(rows) == 1
    assert rows[0][header.index("record")] == difference.record_label


def test_reconcile_now_queues_a_run_after_commit(
    client, reader, monkeypatch, django_capture_on_commit_callbacks
):
    queued = []
    monkeypatch.setattr(reconciliation_admin, "async_task", lambda *a, **k: queued.append(a))
    url = reverse("admin:ledger_sync_reconciliationrun_reconcile_now")

    assert client.get(url).status_code == 405
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url)

    assert response.status_code == 302
    assert queued == [("ledger_sync.tasks.reconcile_task", "admin")]


def _queries(client, name: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(reverse(name)).status_code == 200
    return len(captured)


def test_list_pages_cost_the_same_queries_for_one_row_as_for_thirty(client, reader):
    run = ReconciliationRunFactory()
    ReconciliationDifferenceFactory(run=run)
    one = (_queries(client, DIFFERENCES), _queries(client, RUNS))
    for _ in range(29):
        ReconciliationDifferenceFactory(run=ReconciliationRunFactory())

    assert (_queries(client, DIFFERENCES), _queries(client, RUNS)) == one
