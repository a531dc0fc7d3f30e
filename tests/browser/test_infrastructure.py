"""The browser-test set-up itself: Chromium reaches the live server and a role logs in."""

from __future__ import annotations

from tests.browser.support import By
from tests.factories.parties import accountant


def test_an_accountant_logs_in_to_the_back_office(browser, live_server):
    user = accountant()

    browser.log_in(live_server, user)

    assert browser.path == "/admin/"
    # The admin upper-cases the greeting with CSS.
    assert user.get_username() in browser.find(By.ID, "user-tools").text.casefold()
