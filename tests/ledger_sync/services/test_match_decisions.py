"""Safe decisions on matches: risky approvals need an explicit confirmation, one ERP code per
counterparty (also under a race), and undo until the code is written to ATLAS."""

from __future__ import annotations

import time

import pytest
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.utils import timezone

from ledger_sync.errors import ApplicationError, InvalidTransition
from ledger_sync.models import CounterpartyMapping, Journal, MatchProposal, WriteBackState
from ledger_sync.services import matching
from ledger_sync.services.match_decisions import (
    ApprovalNeedsConfirmation,
    match_proposal_undo,
    match_proposal_undo_check,
)
from ledger_sync.services.matching import match_proposal_approve, match_proposal_reject
from tests.concurrency import race
from tests.factories.atlas import CounterpartyFactory
from tests.factories.journals import JournalFactory, JournalLineFactory, OrderSyncFactory
from tests.factories.parties import (
    CounterpartyMappingFactory,
    ErpPartyFactory,
    MatchProposalFactory,
    accountant,
    finance_lead,
)

pytestmark = pytest.mark.django_db

VAT = "DE129273398"
OTHER_VAT = "DE136695976"
IBAN = "DE89370400440532013000"
OTHER_IBAN = "DE02120300000000202051"


def _proposal(*, score=90, cp_vat=VAT, erp_vat=VAT, cp_iban=IBAN, erp_iban=IBAN, **kwargs):
    counterparty = CounterpartyFactory(
        name=kwargs.pop("name", "Energy Trader"), vat=cp_vat, iban=cp_iban, external_id=None
    )
    party = ErpPartyFactory(
        code=kwargs.pop("code", None) or f"BA-{counterparty.atlas_id}",
        legal_name="Energy Trader GmbH",
        vat=erp_vat,
        iban=erp_iban,
    )
    return MatchProposalFactory(counterparty=counterparty, erp_party=party, score=score, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "why"),
    [
        ({"score": 55}, "score 55 is below the auto-suggest threshold of 70"),
        ({"erp_vat": OTHER_VAT}, f"VAT numbers differ (ATLAS {VAT}, ERP {OTHER_VAT})"),
        ({"erp_iban": OTHER_IBAN}, "IBANs differ (ATLAS DE89…3000, ERP DE02…2051)"),
    ],
    ids=["below-threshold", "vat-conflict", "iban-conflict"],
)
def test_a_risky_candidate_is_refused_without_confirmation_and_nothing_is_saved(kwargs, why):
    proposal = _proposal(**kwargs)

    with pytest.raises(ApprovalNeedsConfirmation) as refused:
        match_proposal_approve(proposals=[proposal], user=finance_lead(), write_back=False)

    assert why in refused.value.message
    assert refused.value.details["risks"] == [
        {
            "proposal": proposal.pk,
            "counterparty": str(proposal.counterparty),
            "erp_code": proposal.erp_party.code,
            "score": proposal.score,
            "reasons": [why],
        }
    ]
    proposal.refresh_from_db()
    assert proposal.status == MatchProposal.Status.PROPOSED
    assert not CounterpartyMapping.objects.exists()


def test_a_confirmed_risky_candidate_is_approved():
    proposal = _proposal(score=55, erp_vat=OTHER_VAT)

    result = match_proposal_approve(
        proposals=[proposal], user=finance_lead(), write_back=False, confirmed=True
    )

    assert [m.erp_code for m in result.mappings] == [proposal.erp_party.code]


def test_a_bulk_approval_names_only_the_risky_rows_and_saves_none_of_them():
    safe, risky = _proposal(), _proposal(score=40)

    with pytest.raises(ApprovalNeedsConfirmation) as refused:
        match_proposal_approve(proposals=[safe, risky], user=finance_lead(), write_back=False)

    assert [r["proposal"] for r in refused.value.details["risks"]] == [risky.pk]
    assert not CounterpartyMapping.objects.exists()


def test_junk_vat_numbers_are_no_conflict():
    proposal = _proposal(cp_vat="n/a", erp_vat=OTHER_VAT)

    result = match_proposal_approve(proposals=[proposal], user=finance_lead(), write_back=False)

    assert len(result.mappings) == 1


def test_an_erp_code_mapped_to_another_counterparty_is_refused_naming_both():
    taken = CounterpartyMappingFactory(
        counterparty=CounterpartyFactory(name="Nordic Power"), erp_party__code="BA-777"
    )
    proposal = _proposal(code="BA-777", name="Nordic Power Trading")

    with pytest.raises(ApplicationError) as refused:
        match_proposal_approve(
            proposals=[proposal], user=finance_lead(), write_back=False, confirmed=True
        )

    message = refused.value.message
    assert str(taken.counterparty) in message and str(proposal.counterparty) in message
    assert "BA-777" in message and "undo or correct the mapping" in message
    assert refused.value.details["fix_url"].endswith(f"/counterpartymapping/{taken.pk}/change/")
    assert CounterpartyMapping.objects.count() == 1


def test_one_code_selected_for_two_counterparties_at_once_is_refused():
    first = _proposal(code="BA-900")
    second = MatchProposalFactory(erp_party=first.erp_party)

    with pytest.raises(ApplicationError, match="selected for 2 counterparties"):
        match_proposal_approve(proposals=[first, second], user=finance_lead(), write_back=False)

    assert not CounterpartyMapping.objects.exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_people_approving_one_code_for_two_counterparties_at_once_map_only_one(monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("concurrent writers need PostgreSQL row locks")
    first = _proposal(code="BA-901")
    second = MatchProposalFactory(erp_party=first.erp_party)
    lead = finance_lead()
    checked = matching.erp_codes_refuse_taken

    def check_then_linger(**kwargs):
        # Widens the window between the check and the insert, where an unlocked check fails.
        checked(**kwargs)
        time.sleep(0.5)

    monkeypatch.setattr(matching, "erp_codes_refuse_taken", check_then_linger)

    def approve(index: int) -> str:
        try:
            match_proposal_approve(proposals=[(first, second)[index]], user=lead, write_back=False)
        except ApplicationError as error:
            return error.message
        return "approved"

    outcomes = race(2, approve)

    assert sorted(o == "approved" for o in outcomes) == [False, True]
    assert CounterpartyMapping.objects.filter(erp_code="BA-901").count() == 1


# --- undo ----------------------------------------------------------------------------------------


def test_an_approval_is_undone_before_the_write_back_and_the_candidates_come_back():
    proposal = _proposal()
    runner_up = MatchProposalFactory(counterparty=proposal.counterparty, rank=2, score=50)
    lead = finance_lead()
    match_proposal_approve(proposals=[proposal], user=lead, write_back=False)
    runner_up.refresh_from_db()
    assert runner_up.status == MatchProposal.Status.SUPERSEDED

    match_proposal_undo(proposal=proposal, user=lead)

    assert not CounterpartyMapping.objects.exists()
    statuses = MatchProposal.objects.filter(counterparty=proposal.counterparty).values_list(
        "status", "decided_by"
    )
    assert set(statuses) == {(MatchProposal.Status.PROPOSED, None)}


def test_an_approval_written_to_atlas_cannot_be_undone_and_says_why():
    proposal = _proposal()
    lead = finance_lead()
    (mapping,) = match_proposal_approve(proposals=[proposal], user=lead, write_back=False).mappings
    CounterpartyMapping.objects.filter(pk=mapping.pk).update(
        write_back_state=WriteBackState.WRITTEN, written_back_at=timezone.now()
    )

    with pytest.raises(InvalidTransition, match="was written to ATLAS as externalId") as refused:
        match_proposal_undo(proposal=proposal, user=lead)

    assert "correct the externalId in ATLAS" in refused.value.message
    assert CounterpartyMapping.objects.filter(pk=mapping.pk).exists()
    proposal.refresh_from_db()
    assert proposal.status == MatchProposal.Status.APPROVED


def test_an_approval_whose_code_a_journal_uses_cannot_be_undone():
    proposal = _proposal()
    lead = finance_lead()
    match_proposal_approve(proposals=[proposal], user=lead, write_back=False)
    journal = JournalFactory(
        order_sync=OrderSyncFactory(order__counterparty=proposal.counterparty),
        status=Journal.Status.DRAFT,
    )
    JournalLineFactory(journal=journal, billing_account_num=proposal.erp_party.code)
    proposal.refresh_from_db()

    check = match_proposal_undo_check(proposal=proposal)

    assert not check.possible
    assert journal.source_transaction_reference in check.reason
    with pytest.raises(InvalidTransition):
        match_proposal_undo(proposal=proposal, user=lead)


def test_a_rejection_is_undone_and_the_candidate_is_proposed_again():
    proposal = _proposal()
    lead = finance_lead()
    match_proposal_reject(proposals=[proposal], user=lead)

    match_proposal_undo(proposal=proposal, user=lead)

    proposal.refresh_from_db()
    assert (proposal.status, proposal.decided_by) == (MatchProposal.Status.PROPOSED, None)


def test_an_open_proposal_has_nothing_to_undo():
    with pytest.raises(InvalidTransition, match="nothing to undo"):
        match_proposal_undo(proposal=_proposal(), user=finance_lead())


def test_an_accountant_cannot_undo():
    proposal = _proposal()
    match_proposal_reject(proposals=[proposal], user=finance_lead())

    with pytest.raises(PermissionDenied):
        match_proposal_undo(proposal=proposal, user=accountant())
