"""The reference-data lists are searchable by number (the AR Ledger's id) and by name (issue 3)."""

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from tests.factories.reference import AccountingPeriodFactory, AccountingYearFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client_logged_in(client):
    client.force_login(get_user_model().objects.create_superuser("root", password="x"))
    return client


def _listed(client, model, query):
    response = client.get(reverse(f"admin:ledger_sync_{model}_changelist"), {"q": query})
    assert response.status_code == 200
    return {obj.pk for obj in response.context["cl"].result_list}


def test_accounting_years_are_searchable_by_number_and_name(admin_client_logged_in):
    fy2026 = AccountingYearFactory(gotransverse_id=7001, year=2026)
    fy2027 = AccountingYearFactory(ledger=fy2026.ledger, gotransverse_id=7002, year=2027)

    assert _listed(admin_client_logged_in, "accountingyear", "FY2027") == {fy2027.pk}
    assert _listed(admin_client_logged_in, "accountingyear", "7001") == {fy2026.pk}


def test_accounting_periods_are_searchable_by_number_and_name(admin_client_logged_in):
    march = AccountingPeriodFactory(gotransverse_id=30_003, name="March 2026")
    april = AccountingPeriodFactory(year=march.year, gotransverse_id=30_004, name="April 2026")

    assert _listed(admin_client_logged_in, "accountingperiod", "April") == {april.pk}
    assert _listed(admin_client_logged_in, "accountingperiod", "30003") == {march.pk}
