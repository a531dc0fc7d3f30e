"""No page, form or action of the back office lets a change bypass the service that records it,
and nothing lets an accountant decide."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone

from ledger_sync.models import (
    CounterpartyMapping,
    CounterpartyMatching,
    CustomFieldMapping,
    CustomFieldMappingChange,
    ErpParty,
    MasterDataCorrection,
    MatchProposal,
    PostingSettings,
)
from tests.factories.atlas import CustomFieldDefinitionFactory
from tests.factories.parties import accountant, finance_lead

pytestmark = pytest.mark.django_db


def test_the_standard_change_form_cannot_change_a_mapping_without_its_history(client):
    definition = CustomFieldDefinitionFactory(name="ERP Cost Centre")
    mapping = CustomFieldMapping.objects.create(
        definition=definition, target_key="cost_centre", updated_at=timezone.now()
    )
    lead = finance_lead()
    client.force_login(lead)
    url = reverse("admin:ledger_sync_customfieldmapping_change", args=[mapping.pk])

    response = client.post(
        url,
        {
            "definition": definition.pk,
            "target_key": "segment",
            "ignored": "",
            "updated_at_0": "2026-01-01",
            "updated_at_1": "00:00:00",
        },
    )

    # Changes go through the mapping page (custom_field_mapping_set), which records them.
    assert response.status_code == 403
    mapping.refresh_from_db()
    assert mapping.target_key == "cost_centre"
    assert not CustomFieldMappingChange.objects.exists()


DECISION_MODELS = (
    CounterpartyMatching,
    MatchProposal,
    CounterpartyMapping,
    MasterDataCorrection,
    ErpParty,
    CustomFieldMapping,
    PostingSettings,
)


@pytest.mark.parametrize("model", DECISION_MODELS, ids=lambda m: m.__name__)
def test_an_accountant_is_offered_no_action_and_no_change(model):
    """Every decision of the area is a finance lead's: an accountant gets no action, no
    change form and no import on any of its pages (requesting a correction is allowed)."""
    request = RequestFactory().get("/admin/")
    request.user = accountant()
    model_admin = admin.site._registry[model]

    assert model_admin.get_actions(request) == {}
    assert not model_admin.has_change_permission(request)
    assert not model_admin.has_delete_permission(request)
    if model is not MasterDataCorrection:
        assert not model_admin.has_add_permission(request)
    if hasattr(model_admin, "has_import_permission"):
        assert not model_admin.has_import_permission(request)


def test_the_code_of_an_erp_party_cannot_be_changed_under_its_mappings(client):
    """The code is the key journals and ATLAS (externalId) already use: editing it by hand
    would leave every mapping and written-back externalId pointing at a code that is gone."""
    from tests.factories.parties import CounterpartyMappingFactory, ErpPartyFactory

    party = ErpPartyFactory(code="BA-1", legal_name="Energy Trader GmbH")
    CounterpartyMappingFactory(erp_party=party)
    client.force_login(finance_lead())

    response = client.post(
        reverse("admin:ledger_sync_erpparty_change", args=[party.pk]),
        {"code": "BA-2", "legal_name": "Energy Trader AG", "role": "both", "active": "on"},
    )

    assert response.status_code == 302
    party.refresh_from_db()
    assert (party.code, party.legal_name) == ("BA-1", "Energy Trader AG")
    assert CounterpartyMapping.objects.get().erp_code == "BA-1"


def test_a_refused_bulk_reject_shows_its_reason_instead_of_a_server_error(client, monkeypatch):
    from ledger_sync.admin import match_decisions as decisions_admin
    from ledger_sync.errors import InvalidTransition
    from tests.factories.parties import MatchProposalFactory

    proposal = MatchProposalFactory()

    def refuse(**kwargs):
        raise InvalidTransition("Proposal 1 is already rejected.")

    monkeypatch.setattr(decisions_admin, "match_proposal_reject", refuse)
    client.force_login(finance_lead())

    response = client.post(
        reverse("admin:ledger_sync_counterpartymatching_changelist"),
        {"action": "reject_all", "_selected_action": [proposal.counterparty_id], "confirm": "1"},
        follow=True,
    )

    assert response.status_code == 200
    assert "Proposal 1 is already rejected." in response.content.decode()


def test_no_match_for_several_queues_the_write_back_of_those_created_before_a_refusal(
    client, monkeypatch, django_capture_on_commit_callbacks
):
    from ledger_sync.admin import match_decisions as decisions_admin
    from ledger_sync.admin import parties as parties_admin
    from ledger_sync.errors import InvalidTransition
    from ledger_sync.services.matching import counterparty_create_erp_party
    from tests.factories.atlas import CounterpartyFactory

    first, second = CounterpartyFactory(atlas_id=1), CounterpartyFactory(atlas_id=2)
    queued = []

    def create_or_refuse(*, counterparty, **kwargs):
        if counterparty.pk == second.pk:
            raise InvalidTransition(f"Counterparty {counterparty} is already mapped.")
        return counterparty_create_erp_party(counterparty=counterparty, **kwargs)

    monkeypatch.setattr(parties_admin, "counterparty_create_erp_party", create_or_refuse)
    monkeypatch.setattr(decisions_admin, "async_task", lambda *args, **kw: queued.append(args))
    client.force_login(finance_lead())

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("admin:ledger_sync_counterpartymatching_changelist"),
            {
                "action": "create_erp_party",
                "_selected_action": [first.pk, second.pk],
                "confirm": "Create the ERP parties",
            },
            follow=True,
        )

    assert response.status_code == 200
    mapping = CounterpartyMapping.objects.get()
    assert mapping.counterparty_id == first.pk
    # The party made before the refusal is not left waiting for a write-back nobody queued.
    assert queued == [(decisions_admin.WRITE_BACK_TASK, [mapping.pk])]
    assert "already mapped" in response.content.decode()
