"""Every list page of the parties area (and the settings history) costs the same number of
queries for 1 row as for 50: no column, filter or form runs a query per row."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from ledger_sync.models import (
    CustomFieldMapping,
    CustomFieldMappingChange,
    MasterDataCorrection,
    PostingSettingsChange,
)
from tests.factories.atlas import (
    CounterpartyCustomFieldValueFactory,
    CounterpartyFactory,
    CustomFieldDefinitionFactory,
)
from tests.factories.parties import (
    CounterpartyMappingFactory,
    ErpPartyFactory,
    MatchProposalFactory,
    finance_lead,
)

pytestmark = pytest.mark.django_db


def _one_of_each(user) -> None:
    """One more row on every list page of the area."""
    counterparty = CounterpartyFactory()
    MatchProposalFactory(counterparty=counterparty, rank=1)
    MatchProposalFactory(counterparty=counterparty, rank=2)
    CounterpartyMappingFactory(flagged=True, flag_reason="unknown code")
    ErpPartyFactory()
    MasterDataCorrection.objects.create(
        counterparty=CounterpartyFactory(),
        before={"gl_account": "4000"},
        after={"gl_account": "4001"},
        requested_by=user,
        requested_at=timezone.now(),
        approved_by=user,
    )
    definition = CustomFieldDefinitionFactory(is_required=True)
    CounterpartyCustomFieldValueFactory(counterparty=counterparty, definition=definition)
    CustomFieldMapping.objects.create(
        definition=definition,
        target_key=f"key_{definition.pk}",
        updated_by=user,
        updated_at=timezone.now(),
    )
    CustomFieldMappingChange.objects.create(
        definition=definition,
        changed_by=user,
        changed_at=timezone.now(),
        before=None,
        after={"target_key": f"key_{definition.pk}", "ignored": False},
    )
    PostingSettingsChange.objects.create(
        changed_by=user,
        changed_at=timezone.now(),
        before={"bank_account": "1000"},
        after={"bank_account": "1001"},
        changes={"bank_account": ["1000", "1001"]},
    )


def _queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200, url
    return len(queries)


@pytest.mark.parametrize(
    "model",
    [
        "erpparty",
        "counterpartymatching",
        "matchproposal",
        "counterpartymapping",
        "masterdatacorrection",
        "customfieldmapping",
        "customfieldmappingchange",
        "postingsettingschange",
    ],
)
def test_list_page_costs_the_same_for_1_and_50_rows(client, model, django_assert_max_num_queries):
    user = finance_lead()
    client.force_login(user)
    url = reverse(f"admin:ledger_sync_{model}_changelist")
    _one_of_each(user)
    few = _queries(client, url)

    for _ in range(49):
        _one_of_each(user)

    with django_assert_max_num_queries(few):
        client.get(url)
