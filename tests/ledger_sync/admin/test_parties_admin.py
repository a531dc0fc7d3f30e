"""The back office for ERP parties, matching, corrections and custom-field mappings."""

from __future__ import annotations

import csv

import pytest
from django.urls import reverse

from integration import wire
from integration.sandbox.erp_parties import SAMPLE_CSV, SAMPLE_WITH_ERRORS_CSV
from ledger_sync.models import (
    CounterpartyMapping,
    CustomFieldMapping,
    CustomFieldMappingChange,
    ErpParty,
    MasterDataCorrection,
    MatchProposal,
    WriteBackState,
)
from tests.factories.atlas import (
    CounterpartyCustomFieldValueFactory,
    CounterpartyFactory,
    CustomFieldDefinitionFactory,
)
from tests.factories.parties import ErpPartyFactory, MatchProposalFactory, accountant, finance_lead

pytestmark = pytest.mark.django_db

IMPORT_URL = "admin:ledger_sync_erpparty_import"
PROCESS_IMPORT_URL = "admin:ledger_sync_erpparty_process_import"
MATCHING_URL = "admin:ledger_sync_counterpartymatching_changelist"
DECIDE_URL = "admin:ledger_sync_counterpartymatching_decide"
PROPOSALS_URL = "admin:ledger_sync_matchproposal_changelist"
CUSTOM_FIELDS_URL = "admin:ledger_sync_customfieldmapping_changelist"
SET_CUSTOM_FIELD_URL = "admin:ledger_sync_customfieldmapping_set"


def _rows(path):
    with path.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _upload(client, path, *, file_format="0"):
    with path.open("rb") as handle:
        return client.post(reverse(IMPORT_URL), {"import_file": handle, "format": file_format})


# --- import -----------------------------------------------------------------------------------


def test_import_dry_run_reports_each_bad_row_and_saves_nothing(client):
    client.force_login(finance_lead())

    response = _upload(client, SAMPLE_WITH_ERRORS_CSV)

    assert response.status_code == 200
    result = response.context["result"]
    assert result.has_validation_errors()
    invalid = {row.number: row.error_dict for row in result.invalid_rows}
    last = len(_rows(SAMPLE_WITH_ERRORS_CSV))  # the three bad rows close the file
    assert set(invalid) == {last - 2, last - 1, last}
    assert "not a valid DE VAT number" in invalid[last - 2]["vat"][0]
    assert "checksum" in invalid[last - 1]["iban"][0]
    assert "appears twice in the file" in invalid[last]["code"][0]
    assert result.totals["new"] == last - 3
    body = response.content.decode()
    assert "appears twice in the file" in body
    assert "confirm_form" not in response.context or response.context["confirm_form"] is None
    assert ErpParty.objects.count() == 0


def test_import_preview_then_confirm_saves_the_sample_register_normalised(
    client, django_capture_on_commit_callbacks
):
    client.force_login(finance_lead())
    sample = _rows(SAMPLE_CSV)
    first = sample[0]
    unmatched = CounterpartyFactory(legal_name=first["legal_name"], vat=first["vat"], iban="")
    ErpPartyFactory(code="BA-100001", legal_name="Old Name GmbH")

    preview = _upload(client, SAMPLE_CSV)

    result = preview.context["result"]
    assert not result.has_validation_errors()
    assert result.totals["update"] == 1
    assert result.totals["new"] == len(sample) - 1
    assert ErpParty.objects.count() == 1  # a preview saves nothing

    confirm = preview.context["confirm_form"]
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse(PROCESS_IMPORT_URL), confirm.initial)

    assert response.status_code == 302
    assert ErpParty.objects.count() == len(sample)
    assert ErpParty.objects.get(code="BA-100001").legal_name == first["legal_name"]
    for party in ErpParty.objects.exclude(iban=""):
        assert " " not in party.iban
    for party in ErpParty.objects.exclude(vat=""):
        assert party.vat == party.vat.upper().replace(" ", "").replace(".", "")
    # Matching ran against the new register.
    best = MatchProposal.objects.filter(counterparty=unmatched).order_by("rank").first()
    assert best.erp_party.code == "BA-100001"


def test_xlsx_is_accepted_like_csv(client, tmp_path):
    from integration.sandbox.erp_parties import write_xlsx

    path = write_xlsx(
        [
            {
                "code": "BA-1",
                "legal_name": "Energy Trader GmbH",
                "vat": "DE 129.273.398",
                "iban": "DE89 3704 0044 0532 0130 00",
                "role": "Vendor",
                "active": True,
            }
        ],
        tmp_path / "parties.xlsx",
    )
    client.force_login(finance_lead())
    response = _upload(client, path, file_format="1")
    assert response.context["result"].totals["new"] == 1
    assert not response.context["result"].has_validation_errors()


def test_an_accountant_cannot_import(client):
    client.force_login(accountant())
    assert client.get(reverse(IMPORT_URL)).status_code == 403


# --- matching ---------------------------------------------------------------------------------


def _proposal():
    counterparty = CounterpartyFactory(
        name="Energy Trader",
        legal_name="Energy Trader GmbH",
        vat="DE129273398",
        external_id=None,
    )
    return MatchProposalFactory(
        counterparty=counterparty,
        erp_party=ErpPartyFactory(code="BA-4242", legal_name="ENERGY TRADER", vat="DE129273398"),
        score=95,
    )


def test_matching_page_shows_the_candidates_beside_the_counterparty(client):
    proposal = _proposal()
    client.force_login(finance_lead())

    response = client.get(reverse(MATCHING_URL))

    body = response.content.decode()
    assert response.status_code == 200
    assert "Energy Trader GmbH" in body
    assert "BA-4242" in body
    assert "VAT DE129273398 equal" in body
    assert f'name="approve" value="{proposal.pk}"' in body


def test_an_accountant_sees_proposals_but_no_decision_buttons_or_actions(client):
    proposal = _proposal()
    client.force_login(accountant())

    matching = client.get(reverse(MATCHING_URL))
    proposals = client.get(reverse(PROPOSALS_URL))

    assert matching.status_code == 200
    assert "BA-4242" in matching.content.decode()
    assert 'name="approve"' not in matching.content.decode()
    assert "approve_selected" not in proposals.content.decode()
    assert "approve_best" not in matching.content.decode()
    assert proposal.erp_party.code in proposals.content.decode()


def test_an_accountant_is_refused_approval_with_403_and_nothing_changes(client):
    proposal = _proposal()
    client.force_login(accountant())

    direct = client.post(reverse(DECIDE_URL), {"approve": proposal.pk})
    action = client.post(
        reverse(PROPOSALS_URL),
        {"action": "approve_selected", "_selected_action": [proposal.pk]},
    )

    assert direct.status_code == 403
    assert action.status_code in (200, 302)
    proposal.refresh_from_db()
    assert proposal.status == MatchProposal.Status.PROPOSED
    assert not CounterpartyMapping.objects.exists()


def test_a_finance_lead_approves_and_the_code_is_written_back(
    client, atlas_sandbox, django_capture_on_commit_callbacks
):
    (atlas_id, record) = next(
        (cid, cp)
        for cid, cp in sorted(atlas_sandbox.app.dataset.counterparties.items())
        if not cp["externalId"]
    )
    counterparty = CounterpartyFactory(
        atlas_id=atlas_id, name=record["name"], external_id=None, raw_json=wire.dumps(record)
    )
    proposal = MatchProposalFactory(
        counterparty=counterparty, erp_party=ErpPartyFactory(code="BA-777")
    )
    lead = finance_lead()
    client.force_login(lead)
    atlas_sandbox.app.reset_calls()

    asked = client.post(reverse(DECIDE_URL), {"approve": proposal.pk})
    assert "Approve this match?" in asked.content.decode()
    assert not CounterpartyMapping.objects.exists()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse(DECIDE_URL), {"approve": proposal.pk, "confirm": "1"})

    assert response.status_code == 302
    mapping = CounterpartyMapping.objects.get(counterparty=counterparty)
    assert (mapping.erp_code, mapping.approved_by) == ("BA-777", lead)
    assert mapping.write_back_state == WriteBackState.WRITTEN
    assert [c.body for c in atlas_sandbox.app.calls_to("/api/Counterparty/Post")] == [
        {"data": [{**record, "externalId": "BA-777"}]}
    ]


def test_bulk_reject_by_a_finance_lead(client):
    first, second = _proposal(), MatchProposalFactory()
    client.force_login(finance_lead())
    client.post(
        reverse(PROPOSALS_URL),
        {"action": "reject_selected", "_selected_action": [first.pk, second.pk], "confirm": "1"},
    )
    assert set(MatchProposal.objects.values_list("status", flat=True)) == {"rejected"}


# --- corrections ------------------------------------------------------------------------------


def test_a_correction_with_a_bad_iban_is_refused_in_the_form(client):
    counterparty = CounterpartyFactory()
    client.force_login(accountant())
    response = client.post(
        reverse("admin:ledger_sync_masterdatacorrection_add"),
        {"counterparty": counterparty.pk, "iban": "DE89 3704 0044 0532 0130 01", "reason": "x"},
    )
    assert response.status_code == 200
    assert "checksum" in response.content.decode()
    assert not MasterDataCorrection.objects.exists()


# --- custom fields ----------------------------------------------------------------------------


def test_custom_fields_page_lists_samples_and_highlights_required_unmapped(client):
    required = CustomFieldDefinitionFactory(name="ACER Code", is_required=True)
    CustomFieldDefinitionFactory(name="Reporting Segment")
    CounterpartyCustomFieldValueFactory(definition=required, value="A0001234")
    client.force_login(accountant())

    response = client.get(reverse(CUSTOM_FIELDS_URL))

    body = response.content.decode()
    assert response.status_code == 200
    assert "Reporting Segment" in body
    assert "A0001234" in body
    assert body.count('class="required-unmapped"') == 1
    assert "1 required ATLAS field without a mapping" in body
    assert 'name="target_key"' not in body  # an accountant cannot edit


def test_a_finance_lead_maps_a_field_and_the_change_is_recorded(client):
    definition = CustomFieldDefinitionFactory(name="ERP Cost Centre")
    lead = finance_lead()
    client.force_login(lead)

    client.post(
        reverse(SET_CUSTOM_FIELD_URL),
        {"definition": definition.pk, "target_key": "cost_centre", "choice": "map"},
    )

    assert CustomFieldMapping.objects.get(definition=definition).target_key == "cost_centre"
    change = CustomFieldMappingChange.objects.get(definition=definition)
    assert (change.changed_by, change.before, change.after) == (
        lead,
        None,
        {"target_key": "cost_centre", "ignored": False},
    )
    history = client.get(reverse("admin:ledger_sync_customfieldmappingchange_changelist"))
    assert "cost_centre" in history.content.decode()


def test_an_accountant_cannot_change_a_custom_field_mapping(client):
    definition = CustomFieldDefinitionFactory()
    client.force_login(accountant())
    response = client.post(
        reverse(SET_CUSTOM_FIELD_URL),
        {"definition": definition.pk, "target_key": "cost_centre", "choice": "map"},
    )
    assert response.status_code == 403
    assert not CustomFieldMapping.objects.exists()


@pytest.mark.parametrize("role", [finance_lead, accountant])
def test_every_page_of_the_area_renders_for_both_roles(client, role):
    from ledger_sync.services.counterparty_writeback import master_data_correction_request
    from tests.factories.parties import CounterpartyMappingFactory
    from tests.factories.reference import GLAccountFactory

    GLAccountFactory(number="4002")
    proposal = _proposal()
    CounterpartyMappingFactory(flagged=True, flag_reason="externalId 'X' is unknown")
    correction = master_data_correction_request(
        counterparty=proposal.counterparty,
        changes={"gl_account": "4002"},
        user=accountant(username="requester"),
    )
    client.force_login(role())
    urls = [
        reverse("admin:ledger_sync_erpparty_changelist"),
        reverse("admin:ledger_sync_erpparty_change", args=[proposal.erp_party.pk]),
        reverse(MATCHING_URL) + "?candidates=no",
        reverse(PROPOSALS_URL),
        reverse("admin:ledger_sync_counterpartymapping_changelist"),
        reverse("admin:ledger_sync_masterdatacorrection_changelist"),
        reverse("admin:ledger_sync_masterdatacorrection_change", args=[correction.pk]),
        reverse(CUSTOM_FIELDS_URL),
    ]
    for url in urls:
        assert client.get(url).status_code == 200, url


def test_a_finance_lead_approves_a_correction_and_it_is_pushed(
    client, atlas_sandbox, django_capture_on_commit_callbacks
):
    from ledger_sync.services.counterparty_writeback import master_data_correction_request
    from tests.factories.reference import GLAccountFactory

    GLAccountFactory(number="4002")
    atlas_id, record = next(iter(sorted(atlas_sandbox.app.dataset.counterparties.items())))
    counterparty = CounterpartyFactory(
        atlas_id=atlas_id, external_id=record["externalId"], raw_json=wire.dumps(record)
    )
    correction = master_data_correction_request(
        counterparty=counterparty, changes={"swift_bic": "DEUTDEFFXXX"}, user=accountant()
    )
    client.force_login(finance_lead())
    action = {"action": "approve_and_push", "_selected_action": [correction.pk]}
    changelist = reverse("admin:ledger_sync_masterdatacorrection_changelist")

    asked = client.post(changelist, action)
    page = asked.content.decode()
    assert "Approve this correction?" in page
    assert "SWIFT/BIC:" in page and "<b>DEUTDEFFXXX</b>" in page
    correction.refresh_from_db()
    assert correction.status == MasterDataCorrection.Status.DRAFT  # asking decides nothing

    with django_capture_on_commit_callbacks(execute=True):
        client.post(changelist, {**action, "confirm": "Approve and push"})

    correction.refresh_from_db()
    assert correction.status == MasterDataCorrection.Status.PUSHED
    assert atlas_sandbox.app.dataset.counterparties[atlas_id]["swiftBic"] == "DEUTDEFFXXX"
    page = client.get(
        reverse("admin:ledger_sync_masterdatacorrection_change", args=[correction.pk])
    )
    assert "write_back" in page.content.decode()
    assert "DEUTDEFFXXX" in page.content.decode()


def test_import_command_refuses_a_file_with_bad_rows_and_imports_a_good_one():
    from io import StringIO

    from django.core.management import CommandError, call_command

    out = StringIO()
    with pytest.raises(CommandError, match="Nothing imported"):
        call_command("import_erp_parties", str(SAMPLE_WITH_ERRORS_CSV), stdout=out)
    last = len(_rows(SAMPLE_WITH_ERRORS_CSV))
    assert f"row {last}: code: Code BA-100001 appears twice" in out.getvalue()
    assert ErpParty.objects.count() == 0

    call_command("import_erp_parties", str(SAMPLE_CSV), stdout=StringIO())
    assert ErpParty.objects.count() == len(_rows(SAMPLE_CSV))


def test_a_party_typed_by_hand_is_validated_and_normalised(client):
    client.force_login(finance_lead())
    url = reverse("admin:ledger_sync_erpparty_add")
    form = {"code": "BA-1", "legal_name": "Energy Trader GmbH", "role": "both", "active": "on"}

    refused = client.post(url, {**form, "vat": "DE129273399"})
    saved = client.post(
        url, {**form, "vat": "de 129.273.398", "iban": "DE89 3704 0044 0532 0130 00"}
    )

    assert "not a valid DE VAT number" in refused.content.decode()
    assert saved.status_code == 302
    party = ErpParty.objects.get()
    assert (party.vat, party.iban) == ("DE129273398", "DE89370400440532013000")
