"""The matching pages ask before deciding, list exactly the risky rows and why, and offer undo
until the code is written to ATLAS."""

from __future__ import annotations

import pytest
from django.urls import reverse

from ledger_sync.models import (
    Counterparty,
    CounterpartyMapping,
    MasterDataCorrection,
    MatchProposal,
    WriteBackState,
)
from tests.factories.atlas import CounterpartyFactory
from tests.factories.parties import ErpPartyFactory, MatchProposalFactory, accountant, finance_lead

pytestmark = pytest.mark.django_db

MATCHING_URL = "admin:ledger_sync_counterpartymatching_changelist"
DECIDE_URL = "admin:ledger_sync_counterpartymatching_decide"
PROPOSALS_URL = "admin:ledger_sync_matchproposal_changelist"
MAPPINGS_URL = "admin:ledger_sync_counterpartymapping_changelist"
UNDO_URL = "admin:ledger_sync_counterpartymatching_undo"


@pytest.fixture(autouse=True)
def _no_queue(monkeypatch):
    # The write-back task is asserted elsewhere; here the decision pages are.
    monkeypatch.setattr("ledger_sync.admin.match_decisions.async_task", lambda *a, **k: None)


def _proposal(name: str, *, code: str, score: int = 90, vat: str = "") -> MatchProposal:
    counterparty = CounterpartyFactory(name=name, external_id=None, vat="DE129273398")
    party = ErpPartyFactory(code=code, legal_name=f"{name} GmbH", vat=vat)
    return MatchProposalFactory(counterparty=counterparty, erp_party=party, score=score)


def test_one_click_approval_of_a_risky_candidate_asks_and_names_the_reasons(client):
    proposal = _proposal("Nordic Power", code="BA-555", score=50, vat="DE136695976")
    client.force_login(finance_lead())

    asked = client.post(reverse(DECIDE_URL), {"approve": proposal.pk})

    page = asked.content.decode()
    assert "Approve this match?" in page
    assert "score 50 is below the auto-suggest threshold of 70" in page
    assert "VAT numbers differ (ATLAS DE129273398, ERP DE136695976)" in page
    assert "Approve despite the warning" in page
    assert not CounterpartyMapping.objects.exists()


def test_a_confirmation_that_did_not_show_the_risk_approves_nothing(client):
    proposal = _proposal("Nordic Power", code="BA-555", score=50)
    client.force_login(finance_lead())

    # As if posted from a page made before the candidate became risky: it is shown again.
    again = client.post(reverse(DECIDE_URL), {"approve": proposal.pk, "confirm": "1"})

    assert "Approve this match?" in again.content.decode()
    assert not CounterpartyMapping.objects.exists()


def test_confirming_the_page_that_listed_the_risk_approves_and_offers_undo(client):
    proposal = _proposal("Nordic Power", code="BA-555", score=50)
    client.force_login(finance_lead())

    done = client.post(
        reverse(DECIDE_URL),
        {"approve": proposal.pk, "confirm": "1", "confirmed_risk": proposal.pk},
        follow=True,
    )

    page = done.content.decode()
    assert "Approved 1 match:" in page
    assert reverse(UNDO_URL, args=[proposal.pk]) in page
    assert CounterpartyMapping.objects.get().erp_code == "BA-555"


def test_bulk_approval_lists_every_row_and_marks_only_the_risky_one(client):
    safe = _proposal("Energy Trader", code="BA-100")
    risky = _proposal("Nordic Power", code="BA-555", score=40)
    client.force_login(finance_lead())

    asked = client.post(
        reverse(PROPOSALS_URL),
        {"action": "approve_selected", "_selected_action": [safe.pk, risky.pk]},
    )

    page = asked.content.decode()
    assert "Approve these 2 matches?" in page
    assert page.count('class="risky"') == 1
    assert "1 candidate needs checking" in page
    assert f'name="confirmed_risk" value="{risky.pk}"' in page
    assert f'name="confirmed_risk" value="{safe.pk}"' not in page
    assert not CounterpartyMapping.objects.exists()

    client.post(
        reverse(PROPOSALS_URL),
        {
            "action": "approve_selected",
            "_selected_action": [safe.pk, risky.pk],
            "confirm": "1",
            "confirmed_risk": risky.pk,
        },
    )
    assert set(CounterpartyMapping.objects.values_list("erp_code", flat=True)) == {
        "BA-100",
        "BA-555",
    }


def test_approving_the_best_candidates_asks_first(client):
    proposal = _proposal("Energy Trader", code="BA-100")
    client.force_login(finance_lead())

    asked = client.post(
        reverse(MATCHING_URL),
        {"action": "approve_best", "_selected_action": [proposal.counterparty_id]},
    )

    assert "Approve this match?" in asked.content.decode()
    assert not CounterpartyMapping.objects.exists()


def test_one_click_rejection_asks_then_rejects_with_undo(client):
    proposal = _proposal("Energy Trader", code="BA-100")
    client.force_login(finance_lead())

    asked = client.post(reverse(DECIDE_URL), {"reject": proposal.pk})
    assert "Reject this candidate?" in asked.content.decode()
    proposal.refresh_from_db()
    assert proposal.status == MatchProposal.Status.PROPOSED

    done = client.post(reverse(DECIDE_URL), {"reject": proposal.pk, "confirm": "1"}, follow=True)

    assert "Rejected 1 candidate:" in done.content.decode()
    proposal.refresh_from_db()
    assert proposal.status == MatchProposal.Status.REJECTED


def test_undo_page_asks_then_undoes_an_approval_not_yet_written(client):
    proposal = _proposal("Energy Trader", code="BA-100")
    client.force_login(finance_lead())
    client.post(reverse(DECIDE_URL), {"approve": proposal.pk, "confirm": "1"})

    asked = client.get(reverse(UNDO_URL, args=[proposal.pk]))
    assert "Undo the approval of BA-100" in asked.content.decode()
    done = client.post(reverse(UNDO_URL, args=[proposal.pk]), {"confirm": "1"}, follow=True)

    assert "is a candidate again" in done.content.decode()
    assert not CounterpartyMapping.objects.exists()


def test_undo_page_of_a_written_approval_says_why_and_offers_no_button(client):
    proposal = _proposal("Energy Trader", code="BA-100")
    client.force_login(finance_lead())
    client.post(reverse(DECIDE_URL), {"approve": proposal.pk, "confirm": "1"})
    CounterpartyMapping.objects.update(write_back_state=WriteBackState.WRITTEN)

    page = client.get(reverse(UNDO_URL, args=[proposal.pk])).content.decode()

    assert "can no longer be undone here" in page
    assert 'name="confirm"' not in page
    refused = client.post(reverse(UNDO_URL, args=[proposal.pk]), {"confirm": "1"}, follow=True)
    assert "can no longer be undone here" in refused.content.decode()
    assert CounterpartyMapping.objects.exists()


def test_the_mappings_list_offers_undo_only_until_written(client):
    written = _proposal("Energy Trader", code="BA-100")
    pending = _proposal("Nordic Power", code="BA-555")
    client.force_login(finance_lead())
    for proposal in (written, pending):
        # Followed, so that the success messages (with their undo links) are shown there.
        client.post(reverse(DECIDE_URL), {"approve": proposal.pk, "confirm": "1"}, follow=True)
    CounterpartyMapping.objects.filter(erp_code="BA-100").update(
        write_back_state=WriteBackState.WRITTEN
    )

    page = client.get(reverse(MAPPINGS_URL)).content.decode()

    assert reverse(UNDO_URL, args=[pending.pk]) in page
    assert reverse(UNDO_URL, args=[written.pk]) not in page


def test_row_buttons_have_distinct_accessible_names(client):
    first = _proposal("Energy Trader", code="BA-100")
    MatchProposalFactory(
        counterparty=first.counterparty, erp_party=ErpPartyFactory(code="BA-101"), rank=2
    )
    client.force_login(finance_lead())

    page = client.get(reverse(MATCHING_URL)).content.decode()

    name = str(first.counterparty)
    for label in (
        f"Approve BA-100 for {name}",
        f"Approve BA-101 for {name}",
        f"Reject BA-100 for {name}",
        f"No match: create an ERP party for {name}",
    ):
        assert page.count(f'aria-label="{label}"') == 1, label


def test_an_accountant_cannot_open_the_undo_page(client):
    proposal = _proposal("Energy Trader", code="BA-100")
    client.force_login(accountant())

    assert client.get(reverse(UNDO_URL, args=[proposal.pk])).status_code == 403


def test_the_matching_page_says_which_candidates_will_need_a_confirmation(client):
    _proposal("Energy Trader", code="BA-100")
    _proposal("Nordic Power", code="BA-555", score=50)
    client.force_login(accountant())

    page = client.get(reverse(MATCHING_URL)).content.decode()

    assert page.count("Needs confirmation:") == 1
    assert "score 50 is below the auto-suggest threshold of 70" in page


def test_no_match_asks_first_showing_the_atlas_data_the_party_is_made_from(client):
    counterparty = CounterpartyFactory(
        name="Nordic Power", legal_name="Nordic Power AS", vat="NO123456785", external_id=None
    )
    client.force_login(finance_lead())

    asked = client.post(reverse(DECIDE_URL), {"no_match": counterparty.pk})

    page = asked.content.decode()
    assert "Create an ERP party for this counterparty?" in page
    assert "Nordic Power AS" in page and "NO123456785" in page
    assert "DE89 3704 0044 0532 0130 00" in page  # the IBAN grouped as people compare it
    assert f'name="no_match" value="{counterparty.pk}"' in page
    assert 'name="confirm" value="Create the ERP party"' in page
    assert not CounterpartyMapping.objects.exists()

    client.post(reverse(DECIDE_URL), {"no_match": counterparty.pk, "confirm": "1"})

    mapping = CounterpartyMapping.objects.get()
    assert mapping.counterparty_id == counterparty.pk
    assert mapping.erp_party.legal_name == "Nordic Power AS"


def test_no_match_for_a_counterparty_with_open_candidates_names_the_best_one(client):
    proposal = _proposal("Nordic Power", code="BA-555", score=64)
    MatchProposalFactory(counterparty=proposal.counterparty, score=30, rank=2)
    client.force_login(finance_lead())

    asked = client.post(
        reverse(MATCHING_URL),
        {"action": "create_erp_party", "_selected_action": [proposal.counterparty_id]},
    )

    page = asked.content.decode()
    assert page.count('class="risky"') == 1
    assert "2 open candidates (best BA-555, score 64)" in page
    assert "1 counterparty still has candidates" in page
    assert not CounterpartyMapping.objects.exists()


def test_an_accountant_cannot_create_an_erp_party_even_by_posting_the_confirmation(client):
    counterparty = CounterpartyFactory(external_id=None)
    client.force_login(accountant())

    refused = client.post(reverse(DECIDE_URL), {"no_match": counterparty.pk, "confirm": "1"})

    assert refused.status_code == 403
    assert not CounterpartyMapping.objects.exists()


def _correction(*, swift_bic: str = "DEUTDEFFXXX"):
    from ledger_sync.services.counterparty_writeback import master_data_correction_request

    counterparty = CounterpartyFactory(name="Energy Trader", swift_bic="COBADEFFXXX")
    return master_data_correction_request(
        counterparty=counterparty,
        changes={"swift_bic": swift_bic},
        reason="New bank",
        user=accountant(username="anna"),
    )


CORRECTIONS_URL = "admin:ledger_sync_masterdatacorrection_changelist"


def test_approving_a_correction_asks_first_with_the_change_in_plain_words(client, monkeypatch):
    monkeypatch.setattr("ledger_sync.admin.parties.async_task", lambda *a, **k: None)
    correction = _correction()
    client.force_login(finance_lead())
    action = {"action": "approve_and_push", "_selected_action": [correction.pk]}

    asked = client.post(reverse(CORRECTIONS_URL), action)

    page = asked.content.decode()
    assert "Approve this correction?" in page
    assert "SWIFT/BIC: COBADEFFXXX → <b>DEUTDEFFXXX</b>" in page
    assert "New bank" in page and "anna" in page
    assert 'class="risky"' not in page
    correction.refresh_from_db()
    assert correction.status == MasterDataCorrection.Status.DRAFT

    client.post(reverse(CORRECTIONS_URL), {**action, "confirm": "Approve and push"})

    correction.refresh_from_db()
    assert correction.status == MasterDataCorrection.Status.APPROVED


def test_a_correction_whose_field_changed_in_atlas_since_the_request_is_marked(client):
    correction = _correction()
    Counterparty.objects.filter(pk=correction.counterparty_id).update(swift_bic="INGDDEFFXXX")
    client.force_login(finance_lead())

    asked = client.post(
        reverse(CORRECTIONS_URL),
        {"action": "approve_and_push", "_selected_action": [correction.pk]},
    )

    page = asked.content.decode()
    assert page.count('class="risky"') == 1
    assert "SWIFT/BIC changed in ATLAS since the request (now INGDDEFFXXX)" in page
    assert "1 correction needs checking" in page
