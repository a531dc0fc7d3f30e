"""The matching pages ask before deciding, list exactly the risky rows and why, and offer undo
until the code is written to ATLAS."""

from __future__ import annotations

import pytest
from django.urls import reverse

from ledger_sync.models import CounterpartyMapping, MatchProposal, WriteBackState
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
