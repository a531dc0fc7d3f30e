"""Every list a role opens fits 1,280 px without horizontal scrolling, with real rows in it: the
sandboxes are mirrored and one whole cycle is run first (posted, blocked and waiting orders,
items, journals, write-backs, sync runs, invoices, proposals)."""

from __future__ import annotations

import io

import pytest
from django.contrib import admin
from django.core.management import CommandError, call_command
from django.urls import NoReverseMatch, reverse

from ledger_sync.models import Journal, OrderState, OrderSync
from tests.factories.parties import accountant, finance_lead

WINDOW_WIDTH = 1280
# Lists that are not a person's page (the task queue's raw broker rows).
NOT_A_PAGE = {"django_q.ormq"}


# How far the page, or any box that scrolls sideways inside it (the admin wraps a list's table in
# `.results { overflow-x: auto }`, so a too-wide table scrolls there, not on the page), is wider
# than what it shows.
WIDEST_OVERFLOW = """
const boxes = [document.documentElement, ...document.querySelectorAll('#content *')];
let widest = 0;
for (const box of boxes) {
  const style = getComputedStyle(box);
  const scrolls = box === document.documentElement
    || ['auto', 'scroll'].includes(style.overflowX);
  if (scrolls) widest = Math.max(widest, box.scrollWidth - box.clientWidth);
}
return widest;
"""


def _changelists_visible_to(user) -> list[tuple[str, str]]:
    pages = []
    for model in admin.site._registry:
        meta = model._meta
        label = f"{meta.app_label}.{meta.model_name}"
        if label in NOT_A_PAGE or not user.has_perm(f"{meta.app_label}.view_{meta.model_name}"):
            continue
        try:
            url = reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")
        except NoReverseMatch:
            continue
        pages.append((label, url))
    return sorted(pages)


def _too_wide(browser, live_server, pages: list[tuple[str, str]]) -> dict[str, int]:
    """Each page whose content is wider than the window, with by how many pixels."""
    wider = {}
    for label, url in pages:
        browser.open(live_server, url)
        overflow = browser.driver.execute_script(WIDEST_OVERFLOW)
        if overflow > 0:
            wider[label] = overflow
    return wider


def test_every_list_of_both_roles_fits_1280_px_without_horizontal_scroll(
    browser, live_server, atlas_sandbox, gotransverse_sandbox, settings
):
    settings.JOURNAL_WORKFLOW = "auto"
    settings.ATLAS_MAX_RETRIES = 0
    settings.GOTRANSVERSE_MAX_RETRIES = 0
    # Exit 1: the sandbox blocks some orders on purpose, and the lists should show them too.
    with pytest.raises(CommandError):
        call_command("run_cycle", stdout=io.StringIO(), stderr=io.StringIO())
    assert Journal.objects.filter(status=Journal.Status.POSTED).exists()
    assert OrderSync.objects.filter(state=OrderState.BLOCKED).exists()
    assert browser.driver.get_window_size()["width"] == WINDOW_WIDTH

    for user in (finance_lead(), accountant()):
        browser.driver.delete_all_cookies()
        browser.log_in(live_server, user)
        pages = _changelists_visible_to(user)
        assert len(pages) > 30, pages  # every area's lists, not just a few

        assert _too_wide(browser, live_server, pages) == {}, user.get_username()
