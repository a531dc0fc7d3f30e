"""Proposing ERP parties for counterparties, approving and rejecting them, "no match"."""

from __future__ import annotations

import pytest
import tablib
from django.core.exceptions import PermissionDenied

from integration.sandbox.erp_parties import build_erp_register, write_csv
from ledger_sync.errors import ApplicationError, InvalidTransition
from ledger_sync.models import (
    Counterparty,
    CounterpartyMapping,
    ErpParty,
    MatchProposal,
    WriteBackState,
)
from ledger_sync.services.atlas_mirror import atlas_mirror_run
from ledger_sync.services.erp_parties import ErpPartyResource
from ledger_sync.services.matching import (
    counterparty_create_erp_party,
    counterparty_propose_matches,
    erp_party_next_code,
    match_proposal_approve,
    match_proposal_reject,
)
from ledger_sync.services.remote import atlas_client_from_settings
from tests.factories.atlas import CounterpartyFactory
from tests.factories.parties import (
    CounterpartyMappingFactory,
    ErpPartyFactory,
    MatchProposalFactory,
    accountant,
    finance_lead,
)

pytestmark = pytest.mark.django_db

VAT = "DE129273398"
IBAN = "DE89370400440532013000"


def _counterparty(**kwargs):
    defaults = {
        "name": "Energy Trader",
        "legal_name": "Energy Trader GmbH",
        "vat": VAT,
        "iban": IBAN,
        "external_id": None,
    }
    return CounterpartyFactory(**{**defaults, **kwargs})


def test_candidates_are_stored_best_first_with_scores_and_reasons():
    counterparty = _counterparty()
    ErpPartyFactory(code="BA-NAME", legal_name="Energy Trader AG")
    ErpPartyFactory(code="BA-IBAN", legal_name="Something Else GmbH", iban=IBAN)
    ErpPartyFactory(code="BA-VAT", legal_name="ENERGY TRADER", vat="DE 129.273.398")

    summary = counterparty_propose_matches()

    proposals = list(MatchProposal.objects.filter(counterparty=counterparty).order_by("rank"))
    assert [(p.erp_party.code, p.rank) for p in proposals] == [
        ("BA-VAT", 1),
        ("BA-IBAN", 2),
        ("BA-NAME", 3),
    ]
    assert proposals[0].score > proposals[1].score > proposals[2].score
    assert proposals[0].reasons[0] == {
        "code": "vat_equal",
        "points": 60,
        "text": "VAT DE129273398 equal",
    }
    assert summary.proposals_created == 3


def test_inactive_erp_parties_are_never_proposed():
    _counterparty()
    ErpPartyFactory(code="BA-OLD", legal_name="Energy Trader GmbH", vat=VAT, active=False)
    counterparty_propose_matches()
    assert not MatchProposal.objects.exists()


def test_known_external_id_is_mapped_automatically_without_proposals():
    party = ErpPartyFactory(code="CUST-0042", legal_name="Energy Trader GmbH", vat=VAT)
    counterparty = _counterparty(external_id="CUST-0042")

    summary = counterparty_propose_matches()

    mapping = CounterpartyMapping.objects.get(counterparty=counterparty)
    assert (mapping.erp_code, mapping.erp_party, mapping.source) == (
        "CUST-0042",
        party,
        CounterpartyMapping.Source.EXTERNAL_ID,
    )
    assert mapping.flagged is False
    assert mapping.write_back_state == WriteBackState.NOT_NEEDED
    assert not MatchProposal.objects.exists()
    assert (summary.mapped_from_external_id, summary.flagged_unknown_code) == (1, 0)


def test_unknown_external_id_is_mapped_but_flagged_for_a_person():
    counterparty = _counterparty(external_id="CUST-9999")
    counterparty_propose_matches()
    mapping = CounterpartyMapping.objects.get(counterparty=counterparty)
    assert mapping.erp_code == "CUST-9999"
    assert mapping.erp_party is None
    assert mapping.flagged is True
    assert "CUST-9999" in mapping.flag_reason
    assert "not in the ERP party register" in mapping.flag_reason


def test_second_pass_creates_nothing_new():
    _counterparty()
    ErpPartyFactory(code="BA-VAT", legal_name="Energy Trader", vat=VAT)
    counterparty_propose_matches()
    again = counterparty_propose_matches()
    assert again.proposals_created == 0
    assert MatchProposal.objects.count() == 1


def test_a_rejected_candidate_is_not_proposed_again():
    lead = finance_lead()
    counterparty = _counterparty()
    ErpPartyFactory(code="BA-VAT", legal_name="Energy Trader", vat=VAT)
    ErpPartyFactory(code="BA-NAME", legal_name="Energy Trader Services GmbH")
    counterparty_propose_matches()
    wrong = MatchProposal.objects.get(erp_party__code="BA-VAT")

    match_proposal_reject(proposals=[wrong], user=lead)
    counterparty_propose_matches()

    open_codes = set(
        MatchProposal.objects.filter(
            counterparty=counterparty, status=MatchProposal.Status.PROPOSED
        ).values_list("erp_party__code", flat=True)
    )
    assert open_codes == {"BA-NAME"}
    wrong.refresh_from_db()
    assert (wrong.status, wrong.decided_by) == (MatchProposal.Status.REJECTED, lead)
    assert wrong.rank == 1  # kept as it was decided


def test_an_accountant_cannot_approve_or_reject():
    proposal = MatchProposalFactory()
    clerk = accountant()
    with pytest.raises(PermissionDenied):
        match_proposal_approve(proposals=[proposal], user=clerk, write_back=False)
    with pytest.raises(PermissionDenied):
        match_proposal_reject(proposals=[proposal], user=clerk)
    proposal.refresh_from_db()
    assert proposal.status == MatchProposal.Status.PROPOSED
    assert not CounterpartyMapping.objects.exists()


def test_approval_records_who_and_when_and_supersedes_the_other_candidates():
    lead = finance_lead()
    counterparty = _counterparty()
    best = MatchProposalFactory(counterparty=counterparty, erp_party=ErpPartyFactory(code="BA-1"))
    other = MatchProposalFactory(
        counterparty=counterparty, erp_party=ErpPartyFactory(code="BA-2"), rank=2
    )

    result = match_proposal_approve(proposals=[best], user=lead, write_back=False)

    (mapping,) = result.mappings
    best.refresh_from_db()
    other.refresh_from_db()
    assert (best.status, best.decided_by) == (MatchProposal.Status.APPROVED, lead)
    assert best.decided_at is not None
    assert other.status == MatchProposal.Status.SUPERSEDED
    assert (mapping.erp_code, mapping.approved_by, mapping.source) == (
        "BA-1",
        lead,
        CounterpartyMapping.Source.PROPOSAL,
    )
    assert mapping.write_back_state == WriteBackState.PENDING


def test_two_candidates_of_one_counterparty_cannot_be_approved_together():
    counterparty = _counterparty()
    first = MatchProposalFactory(counterparty=counterparty)
    second = MatchProposalFactory(counterparty=counterparty, rank=2)
    with pytest.raises(ApplicationError, match="two proposals selected"):
        match_proposal_approve(proposals=[first, second], user=finance_lead(), write_back=False)
    assert not CounterpartyMapping.objects.exists()


def test_a_decided_proposal_cannot_be_approved_again():
    proposal = MatchProposalFactory(status=MatchProposal.Status.REJECTED)
    with pytest.raises(InvalidTransition, match="already rejected"):
        match_proposal_approve(proposals=[proposal], user=finance_lead(), write_back=False)


def test_mapped_counterparties_are_left_alone_by_matching():
    mapping = CounterpartyMappingFactory(counterparty=_counterparty())
    ErpPartyFactory(code="BA-VAT", legal_name="Energy Trader", vat=VAT)
    counterparty_propose_matches()
    assert not MatchProposal.objects.filter(counterparty=mapping.counterparty).exists()


def test_next_code_follows_the_configured_pattern(settings):
    settings.ERP_PARTY_CODE_PATTERN = "NEW-{number:04d}"
    ErpPartyFactory(code="NEW-0007")
    ErpPartyFactory(code="BA-100001")
    assert erp_party_next_code() == "NEW-0008"


def test_a_pattern_without_number_is_refused(settings):
    settings.ERP_PARTY_CODE_PATTERN = "NEW-CODE"
    with pytest.raises(ApplicationError, match="exactly one"):
        erp_party_next_code()


def test_no_match_creates_an_erp_party_from_the_counterparty_and_maps_it(settings):
    settings.ERP_PARTY_CODE_PATTERN = "BA-{number:06d}"
    highest = ErpPartyFactory(code="BA-100041")
    lead = finance_lead()
    counterparty = _counterparty(vat="DE 129 273 398")
    left_over = MatchProposalFactory(counterparty=counterparty, erp_party=highest)

    mapping = counterparty_create_erp_party(counterparty=counterparty, user=lead, write_back=False)

    party = ErpParty.objects.get(code="BA-100042")
    assert (party.legal_name, party.vat, party.iban) == ("Energy Trader GmbH", VAT, IBAN)
    assert (mapping.erp_code, mapping.source, mapping.approved_by) == (
        "BA-100042",
        CounterpartyMapping.Source.NEW_PARTY,
        lead,
    )
    left_over.refresh_from_db()
    assert left_over.status == MatchProposal.Status.SUPERSEDED


def test_an_accountant_cannot_create_erp_parties():
    with pytest.raises(PermissionDenied):
        counterparty_create_erp_party(
            counterparty=_counterparty(), user=accountant(), write_back=False
        )
    assert not ErpParty.objects.exists()


def test_a_mapping_follows_an_external_id_changed_in_atlas_and_is_flagged():
    counterparty = _counterparty(external_id="BA-2")
    mapping = CounterpartyMappingFactory(
        counterparty=counterparty,
        erp_party=ErpPartyFactory(code="BA-1"),
        write_back_state=WriteBackState.WRITTEN,
    )
    ErpPartyFactory(code="BA-2")

    summary = counterparty_propose_matches()

    mapping.refresh_from_db()
    assert (mapping.erp_code, mapping.erp_party.code, mapping.flagged) == ("BA-2", "BA-2", True)
    assert "changed from 'BA-1' to 'BA-2'" in mapping.flag_reason
    assert summary.remapped_from_external_id == 1


def test_a_mapping_waiting_for_write_back_is_not_overridden():
    counterparty = _counterparty(external_id="BA-2")
    mapping = CounterpartyMappingFactory(
        counterparty=counterparty, erp_party=ErpPartyFactory(code="BA-1")
    )
    counterparty_propose_matches()
    mapping.refresh_from_db()
    assert (mapping.erp_code, mapping.flagged) == ("BA-1", False)


def test_on_the_mirrored_sandbox_the_true_party_comes_first_and_unknown_codes_are_flagged(
    atlas_sandbox, tmp_path
):
    """End to end: ATLAS mirrored over HTTP, the generated register imported, matching run."""
    atlas_mirror_run(client=atlas_client_from_settings(), trigger="command")
    register = build_erp_register(atlas_sandbox.app.dataset.counterparties.values(), seed=7)
    text = write_csv(register.parties, tmp_path / "parties.csv").read_text()
    imported = ErpPartyResource().import_data(tablib.Dataset().load(text, format="csv"))
    assert not imported.has_validation_errors()

    counterparty_propose_matches()

    by_atlas_id = {cp.atlas_id: cp for cp in Counterparty.objects.all()}
    for atlas_id, truth in register.truth.items():
        variant = register.variant[atlas_id]
        counterparty = by_atlas_id[atlas_id]
        if variant.startswith("external_id"):
            mapping = CounterpartyMapping.objects.get(counterparty=counterparty)
            assert mapping.erp_code == truth
            assert mapping.flagged is (variant == "external_id_unknown")
        elif truth is not None:
            best = MatchProposal.objects.filter(counterparty=counterparty).order_by("rank").first()
            assert best is not None and best.erp_party.code == truth, (atlas_id, variant)
