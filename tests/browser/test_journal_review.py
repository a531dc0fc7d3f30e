"""An accountant reviews a draft journal on its own page and approves it there: the lines are
read with amounts and account names, Approve asks first, the journal ends up posted."""

from __future__ import annotations

from ledger_sync.models import Journal, OrderState
from ledger_sync.services.posting import journals_post
from tests.browser.support import By
from tests.factories.parties import accountant
from tests.factories.reference import sandbox_chart
from tests.ledger_sync.services.posting_support import (
    built_journal,
    ledger_fixture,  # noqa: F401 - the `ledger` fixture
)


def test_an_accountant_reviews_a_draft_on_its_page_and_approves_it(
    browser, live_server, ledger, atlas_sandbox
):
    sandbox_chart()
    journal = built_journal(workflow=Journal.Workflow.REVIEW)
    journals_post(client=ledger.client())  # the draft is in the AR Ledger, awaiting review
    reference = journal.source_transaction_reference
    browser.log_in(live_server, accountant())

    browser.open(live_server, "/admin/ledger_sync/journal/?order_state=awaiting_review")
    browser.submit(By.LINK_TEXT, reference)
    page = browser.text()
    assert "This draft awaits your review" in page
    assert "1200 Trade receivables" in page and "85,500.00 EUR" in page

    browser.submit(By.CSS_SELECTOR, f'[aria-label="Approve and post journal {reference}"]')
    assert f"Approve and post journal {reference}?" in browser.text()
    browser.submit(By.CSS_SELECTOR, 'input[name="confirm"]')

    browser.wait_for_text("it is being posted to the AR Ledger")
    journal.refresh_from_db()
    assert journal.status == Journal.Status.POSTED
    assert journal.order_sync.state != OrderState.AWAITING_REVIEW
    (stored,) = ledger.app.transactions_with_reference(reference)
    assert stored.is_posted
    browser.open(live_server, f"/admin/ledger_sync/journal/{journal.pk}/change/")
    assert "This draft awaits your review" not in browser.text()
