"""A finance lead approves a counterparty match from the dashboard: the home page counts the
matches to approve, its button opens the candidates, Approve asks first, the success message
offers Undo, the counterparty is mapped and its ERP code reaches ATLAS as externalId."""

from __future__ import annotations

from ledger_sync.models import CounterpartyMapping, MatchProposal
from tests.browser.records import sandbox_counterparty_without_code
from tests.browser.support import By
from tests.factories.parties import ErpPartyFactory, MatchProposalFactory, finance_lead


def test_a_finance_lead_approves_a_match_from_the_dashboard(browser, live_server, atlas_sandbox):
    counterparty = sandbox_counterparty_without_code(atlas_sandbox)
    party = ErpPartyFactory(code="BA-700042", legal_name=counterparty.legal_name or "Party")
    proposal = MatchProposalFactory(counterparty=counterparty, erp_party=party, score=95)
    browser.log_in(live_server, finance_lead())

    card = browser.find(By.ID, "card-matches_to_approve")
    assert card.find_element(By.CLASS_NAME, "figure").text == "1"
    browser.submit(By.CSS_SELECTOR, '#card-matches_to_approve a[aria-label="Approve matches (1)"]')
    assert browser.path.startswith("/admin/ledger_sync/counterpartymatching/")
    assert "BA-700042" in browser.text()

    browser.submit(By.CSS_SELECTOR, f'[aria-label="Approve BA-700042 for {counterparty}"]')
    page = browser.text()
    assert "Approve this match?" in page
    assert not CounterpartyMapping.objects.exists()  # asking first decides nothing
    browser.submit(By.CSS_SELECTOR, 'input[name="confirm"]')

    message = browser.find(By.CSS_SELECTOR, "ul.messagelist li.success").text
    assert message.startswith("Approved 1 match:")
    assert f"{counterparty} → BA-700042" in message
    assert browser.find_all(
        By.CSS_SELECTOR, f'a[aria-label="Undo approval of BA-700042 for {counterparty}"]'
    )
    mapping = CounterpartyMapping.objects.get()
    assert (mapping.counterparty_id, mapping.erp_code) == (counterparty.pk, "BA-700042")
    proposal.refresh_from_db()
    assert proposal.status == MatchProposal.Status.APPROVED
    # The write-back task ran (tasks are synchronous in the tests): ATLAS holds the code.
    assert atlas_sandbox.app.dataset.counterparties[counterparty.atlas_id]["externalId"] == (
        "BA-700042"
    )
