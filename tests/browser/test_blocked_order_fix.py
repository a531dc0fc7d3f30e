"""An accountant finds a blocked order from the home page, follows the link that fixes it, and
sees the order posted once the fix is made.

The order is blocked because its counterparty has no ERP code. Approving a match is a finance
lead's decision (an accountant sees the candidates without the buttons), so the finance lead
logs in for that one step; the approval queues the re-check of the counterparty's orders,
which django-q2 runs in-process in the tests (sync mode): the journal is built and posted to
the Gotransverse sandbox at once, not at the next cycle.
"""

from __future__ import annotations

from urllib.parse import urlencode

from ledger_sync.models import BlockedReason, Journal, OrderState, OrderSync
from ledger_sync.services.journals import order_build_journal
from tests.browser.records import sandbox_counterparty_without_code
from tests.browser.support import By
from tests.factories.journals import OrderSyncFactory, journal_world, order_with_items
from tests.factories.parties import (
    ErpPartyFactory,
    MatchProposalFactory,
    accountant,
    finance_lead,
)
from tests.ledger_sync.services.posting_support import (
    ledger_fixture,  # noqa: F401 - the `ledger` fixture
)


def _blocked_order(counterparty) -> OrderSync:
    order_sync = OrderSyncFactory(
        order=order_with_items(counterparty=counterparty), state=OrderState.READY
    )
    assert order_build_journal(order_sync=order_sync, actor="system:test") is None
    order_sync.refresh_from_db()
    assert order_sync.blocked_reason == BlockedReason.UNMATCHED_COUNTERPARTY
    assert len(order_sync.blocked_problems) == 1
    return order_sync


def test_an_accountant_finds_a_blocked_order_fixes_it_and_sees_it_posted(
    browser, live_server, ledger, atlas_sandbox
):
    journal_world(journal_workflow="auto")
    # Its fallback GL account a revenue account of the chart: the ERP code is all it lacks.
    counterparty = sandbox_counterparty_without_code(atlas_sandbox, gl_account="4001")
    order_sync = _blocked_order(counterparty)
    order = order_sync.order
    party = ErpPartyFactory(code="BA-700043", legal_name=counterparty.legal_name or "Party")
    MatchProposalFactory(counterparty=counterparty, erp_party=party, score=95)
    the_accountant = accountant()
    browser.log_in(live_server, the_accountant)

    # The home page: blocked orders, one line per reason, each linking to its orders.
    card = browser.find(By.ID, "card-blocked_orders")
    assert card.find_element(By.CLASS_NAME, "figure").text == "1"
    reason = card.find_element(By.LINK_TEXT, "Counterparty not mapped to an ERP code")
    assert reason.find_element(By.XPATH, "following-sibling::span").text == "1"
    browser.submit(By.LINK_TEXT, "Counterparty not mapped to an ERP code")
    assert browser.path == "/admin/ledger_sync/ordersync/?" + urlencode(
        {"state__exact": "blocked", "blocked_reason__exact": "unmatched_counterparty"}
    )
    assert str(order) in browser.text()

    # The order's fix link leads to the matching page narrowed to exactly its counterparty.
    browser.submit(By.CSS_SELECTOR, f'a[aria-label="Fix order {order.atlas_id}"]')
    fix_path = browser.path
    assert fix_path == f"/admin/ledger_sync/counterpartymatching/?id__exact={counterparty.pk}"
    assert "BA-700043" in browser.text()
    # An accountant sees the candidate, not the decision buttons.
    assert not browser.find_all(By.CSS_SELECTOR, '[aria-label^="Approve BA-700043"]')

    # The finance lead makes the decision on the same page.
    browser.driver.delete_all_cookies()
    browser.log_in(live_server, finance_lead())
    browser.open(live_server, fix_path)
    browser.submit(By.CSS_SELECTOR, f'[aria-label="Approve BA-700043 for {counterparty}"]')
    browser.submit(By.CSS_SELECTOR, 'input[name="confirm"]')
    assert "Approved 1 match:" in browser.text()

    # The approval re-checked the order at once: built, posted to the AR Ledger.
    order_sync.refresh_from_db()
    assert order_sync.state == OrderState.POSTED
    journal = Journal.objects.get(order_sync=order_sync)
    assert journal.status == Journal.Status.POSTED
    (stored,) = ledger.app.transactions_with_reference(journal.source_transaction_reference)
    assert stored.is_posted

    # Back as the accountant: the order's page says posted, the home page has nothing blocked.
    browser.driver.delete_all_cookies()
    browser.log_in(live_server, the_accountant)
    assert browser.find(By.CSS_SELECTOR, "#card-blocked_orders .figure").text == "0"
    browser.open(live_server, f"/admin/ledger_sync/ordersync/{order_sync.pk}/change/")
    page = browser.text()
    state = browser.find(By.CSS_SELECTOR, ".field-state .readonly").text
    assert state == "Posted"
    assert journal.source_transaction_reference in page
    assert "Counterparty not mapped" not in page
