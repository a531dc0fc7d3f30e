from datetime import date

import pytest

from ledger_sync.models import SyncState
from ledger_sync.selectors.reference import (
    accounting_period_for,
    gl_account_check,
    period_landing,
    period_landings_for_closed,
)
from tests.factories.reference import (
    GLAccountFactory,
    LedgerFactory,
    monthly_periods,
    sandbox_chart,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def ledger():
    return LedgerFactory(gotransverse_id=1, name="EUR ledger")


def test_period_for_a_date_includes_first_and_last_day(ledger):
    periods = monthly_periods(ledger=ledger, year=2026)

    assert accounting_period_for(ledger=ledger, on=date(2026, 3, 1)) == periods[2]
    assert accounting_period_for(ledger=ledger, on=date(2026, 3, 31)) == periods[2]
    assert accounting_period_for(ledger=ledger, on=date(2027, 1, 1)) is None


def test_period_of_another_ledger_is_not_used(ledger):
    monthly_periods(ledger=LedgerFactory(gotransverse_id=2), year=2026)

    assert accounting_period_for(ledger=ledger, on=date(2026, 3, 15)) is None


def test_open_period_lands_in_itself(ledger):
    periods = monthly_periods(ledger=ledger, year=2026, closed_months=(1, 2))

    landing = period_landing(ledger=ledger, on=date(2026, 3, 15))

    assert landing.period == periods[2]
    assert landing.landing == periods[2]
    assert landing.rolled_forward is False
    assert landing.problem is None
    assert landing.can_post


def test_closed_period_rolls_forward_to_the_next_open_one(ledger):
    periods = monthly_periods(ledger=ledger, year=2026, closed_months=(1, 2, 3))

    landing = period_landing(ledger=ledger, on=date(2026, 1, 20))

    assert landing.period == periods[0]
    assert landing.landing == periods[3]
    assert landing.rolled_forward is True
    assert landing.problem is None


def test_roll_forward_crosses_into_the_next_year(ledger):
    monthly_periods(ledger=ledger, year=2025, closed_months=tuple(range(1, 13)))
    next_year = monthly_periods(ledger=ledger, year=2026, closed_months=(1,))

    landing = period_landing(ledger=ledger, on=date(2025, 12, 31))

    assert landing.landing == next_year[1]
    assert landing.rolled_forward is True


def test_missing_period_is_skipped_when_rolling_forward(ledger):
    periods = monthly_periods(ledger=ledger, year=2026, closed_months=(1,))
    periods[1].sync_state = SyncState.MISSING
    periods[1].save()

    landing = period_landing(ledger=ledger, on=date(2026, 1, 5))

    assert landing.landing == periods[2]


def test_closed_period_with_no_open_period_after_has_nowhere_to_land(ledger):
    periods = monthly_periods(ledger=ledger, year=2026, closed_months=(11, 12))
    periods[0].is_open = True

    landing = period_landing(ledger=ledger, on=date(2026, 11, 3))

    assert landing.period == periods[10]
    assert landing.landing is None
    assert landing.rolled_forward is False
    assert not landing.can_post
    assert "closed period Nov 2026" in landing.problem
    assert "no later period" in landing.problem
    assert "open a period in Gotransverse" in landing.problem


def test_date_outside_the_calendar_names_the_fix(ledger):
    monthly_periods(ledger=ledger, year=2026)

    landing = period_landing(ledger=ledger, on=date(2027, 2, 1))

    assert landing.period is None
    assert landing.landing is None
    assert "No accounting period" in landing.problem
    assert "2027-02-01" in landing.problem
    assert "add the accounting year" in landing.problem


def test_landings_for_closed_periods_in_one_query(ledger, django_assert_num_queries):
    periods = monthly_periods(ledger=ledger, year=2026, closed_months=(1, 2, 5, 12))

    with django_assert_num_queries(1):
        landings = period_landings_for_closed(ledger=ledger)

    assert [(lnd.period, lnd.landing) for lnd in landings] == [
        (periods[0], periods[2]),
        (periods[1], periods[2]),
        (periods[4], periods[5]),
        (periods[11], None),
    ]
    assert landings[3].problem == "no later period is open"


def test_gl_account_check_accepts_an_active_posting_account():
    chart = sandbox_chart()

    assert gl_account_check("1200") == (chart["1200"], None)
    assert gl_account_check(" 1200 ") == (chart["1200"], None)


def test_gl_account_check_unknown_account():
    sandbox_chart()

    account, problem = gl_account_check("4099")

    assert account is None
    assert problem.startswith("GL account 4099 is not in the Gotransverse chart of accounts")


def test_gl_account_check_parent_account_suggests_a_posting_child():
    chart = sandbox_chart()

    account, problem = gl_account_check("4000")

    assert account == chart["4000"]
    assert problem == (
        "GL account 4000 is a non-posting (parent) account in the Gotransverse chart; "
        "choose a posting account such as 4001."
    )


def test_gl_account_check_inactive_account():
    GLAccountFactory(number="1300", status="INACTIVE")

    account, problem = gl_account_check("1300")

    assert account.number == "1300"
    assert "GL account 1300 is INACTIVE" in problem
    assert "activate it in Gotransverse" in problem


def test_gl_account_check_account_gone_from_the_ledger():
    GLAccountFactory(number="1300", sync_state=SyncState.MISSING)

    account, problem = gl_account_check("1300")

    assert account is None
    assert "no longer in the Gotransverse chart" in problem


def test_gl_account_check_without_a_number():
    assert gl_account_check(None)[1].startswith("No GL account number is given")
    assert gl_account_check("  ")[1].startswith("No GL account number is given")


def test_unreadable_period_is_never_landed_in(ledger):
    periods = monthly_periods(ledger=ledger, year=2026, closed_months=(1,))
    periods[1].sync_state = SyncState.INVALID
    periods[1].sync_error = "field 'open' is missing"
    periods[1].save()

    own = period_landing(ledger=ledger, on=date(2026, 2, 10))
    rolled = period_landing(ledger=ledger, on=date(2026, 1, 10))

    assert own.landing is None
    assert "Feb 2026 could not be read from Gotransverse" in own.problem
    assert "field 'open' is missing" in own.problem
    assert rolled.landing is None  # February may be open: the ledger could post there
    assert rolled.problem.startswith("2026-01-10 falls in the closed period Jan 2026;")


def test_gl_account_check_unreadable_account():
    GLAccountFactory(number="1300", sync_state=SyncState.INVALID, sync_error="bad status")

    account, problem = gl_account_check("1300")

    assert account.number == "1300"
    assert problem.startswith("GL account 1300 could not be read from Gotransverse")
    assert "bad status" in problem
