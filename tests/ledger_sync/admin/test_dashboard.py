"""The back-office home: cards per role landing on the exact filtered lists, the pipeline, the
charts' figures, the schedules' last runs, and the navigation grouped by task."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.contrib import admin
from django_q.models import Failure, Schedule, Success

from ledger_sync.admin.charts import posted_per_period_chart
from ledger_sync.admin.dashboard import (
    DASHBOARD_CARDS,
    CardLine,
    CountCard,
    dashboard_card_register,
)
from ledger_sync.admin_site import NAV_GROUPS, OTHER_GROUP, group_models
from ledger_sync.models import BlockedReason, Journal, OrderItem, OrderState, SyncState
from ledger_sync.selectors.dashboard import PeriodAmount, cashflow_per_month, posted_per_period
from tests.factories.atlas import CounterpartyFactory, OrderItemFactory
from tests.factories.journals import JournalFactory, OrderSyncFactory
from tests.factories.parties import MatchProposalFactory, accountant, finance_lead
from tests.factories.reconciliation import (
    ReconciliationDifferenceFactory,
    ReconciliationRunFactory,
)

pytestmark = pytest.mark.django_db


def _card(html: str, key: str) -> str:
    match = re.search(rf'<article class="card[^"]*" id="card-{key}".*?</article>', html, re.S)
    assert match, f"no card {key}"
    return match.group(0)


def _figure(card_html: str) -> int:
    return int(re.search(r'<div class="figure">(\d+)</div>', card_html).group(1))


def _button_url(card_html: str) -> str:
    return re.search(r'<a class="button" href="([^"]+)"', card_html).group(1).replace("&amp;", "&")


def _home(client, user) -> str:
    client.force_login(user)
    response = client.get("/admin/")
    assert response.status_code == 200
    return response.content.decode()


def test_a_finance_lead_sees_matches_to_approve_first_and_the_button_lists_exactly_them(client):
    waiting = CounterpartyFactory.create_batch(2)
    for counterparty in waiting:
        MatchProposalFactory(counterparty=counterparty)
    CounterpartyFactory()  # unmapped, no candidate: another card

    html = _home(client, finance_lead())

    cards = re.findall(r'id="card-([a-z_]+)"', html)
    assert cards[:2] == ["matches_to_approve", "counterparties_without_candidate"]
    assert cards.index("drafts_to_review") > cards.index("corrections_to_approve")
    matches = _card(html, "matches_to_approve")
    assert _figure(matches) == 2
    listed = client.get(_button_url(matches))
    assert listed.status_code == 200
    assert listed.context["cl"].result_count == 2
    assert {c.pk for c in listed.context["cl"].result_list} == {c.pk for c in waiting}
    assert _figure(_card(html, "counterparties_without_candidate")) == 1


def test_an_accountant_sees_drafts_and_blocked_orders_first_and_no_finance_decisions(client):
    JournalFactory.create_batch(3, status=Journal.Status.DRAFT)
    JournalFactory(status=Journal.Status.POSTED)
    MatchProposalFactory()

    html = _home(client, accountant())

    cards = re.findall(r'id="card-([a-z_]+)"', html)
    assert cards[:2] == ["drafts_to_review", "blocked_orders"]
    assert "matches_to_approve" not in cards and "corrections_to_approve" not in cards
    drafts = _card(html, "drafts_to_review")
    assert _figure(drafts) == 3
    listed = client.get(_button_url(drafts))
    assert listed.context["cl"].result_count == 3


def test_blocked_orders_are_grouped_by_reason_each_linking_to_its_orders(client):
    OrderSyncFactory.create_batch(
        2, state=OrderState.BLOCKED, blocked_reason=BlockedReason.UNMATCHED_COUNTERPARTY
    )
    closed = OrderSyncFactory(state=OrderState.BLOCKED, blocked_reason=BlockedReason.CLOSED_PERIOD)
    OrderSyncFactory(state=OrderState.POSTED)

    html = _home(client, accountant())

    card = _card(html, "blocked_orders")
    assert _figure(card) == 3
    lines = re.findall(r'<li><a href="([^"]+)">([^<]+)</a><span>(\d+)</span></li>', card)
    assert [(label, int(n)) for _url, label, n in lines] == [
        ("Counterparty not mapped to an ERP code", 2),
        ("Date in a closed accounting period", 1),
    ]
    listed = client.get(lines[1][0].replace("&amp;", "&"))
    assert [row.pk for row in listed.context["cl"].result_list] == [closed.pk]


def test_failed_tasks_and_invalid_mirror_records_are_counted_with_links_to_them(client):
    Failure.objects.create(
        id="a" * 32,
        name="x",
        func="ledger_sync.tasks.sync_atlas_task",
        started=datetime.now(UTC),
        stopped=datetime.now(UTC),
        success=False,
        result="boom",
    )
    CounterpartyFactory(sync_state=SyncState.INVALID, sync_error="vat: not a VAT number")
    CounterpartyFactory()

    html = _home(client, accountant())

    assert _figure(_card(html, "tasks_failed")) == 1
    assert client.get(_button_url(_card(html, "tasks_failed"))).status_code == 200
    mirror = _card(html, "mirror_errors")
    assert _figure(mirror) == 1
    assert "?sync_state__exact=invalid" in _button_url(mirror)
    listed = client.get(_button_url(mirror))
    assert listed.context["cl"].result_count == 1


def test_the_pipeline_shows_every_state_in_order_with_links(client):
    OrderSyncFactory.create_batch(2, state=OrderState.AWAITING_REVIEW)

    html = _home(client, accountant())

    funnel = re.search(r'<ul class="funnel">(.*?)</ul>', html, re.S).group(1)
    rows = re.findall(r'<a href="([^"]+)">([^<]+)</a>.*?<span class="n">(\d+)</span>', funnel, re.S)
    assert len(rows) == len(OrderState.choices)
    assert rows[0][1] == "Mirrored, not yet examined"
    review = next(row for row in rows if row[0].endswith("state__exact=awaiting_review"))
    assert review[2] == "2"


def test_posted_amounts_per_period_are_net_of_reversals_and_leave_drafts_out():
    JournalFactory(
        status=Journal.Status.POSTED, total_debit=Decimal("1200.50"), landed_period="2026-04"
    )
    reversed_journal = JournalFactory(
        status=Journal.Status.REVERSED, total_debit=Decimal("300.00"), landed_period="2026-04"
    )
    JournalFactory(
        kind=Journal.Kind.REVERSAL,
        status=Journal.Status.POSTED,
        order_sync=reversed_journal.order_sync,
        revision=1,
        total_debit=Decimal("300.00"),
        landed_period="2026-04",
        source_transaction_reference="ATLAS-ORDER-1-R1-REV",
    )
    JournalFactory(
        status=Journal.Status.DRAFT, total_debit=Decimal("999.00"), landed_period="2026-04"
    )
    JournalFactory(
        status=Journal.Status.POSTED,
        total_debit=Decimal("10.00"),
        landed_period="2026-05",
        occurred_on=datetime(2026, 5, 2).date(),
    )

    rows = posted_per_period()

    assert [(r.period, r.currency, r.amount) for r in rows] == [
        ("2026-04", "EUR", Decimal("1200.50")),
        ("2026-05", "EUR", Decimal("10.00")),
    ]


def test_cashflow_splits_receivable_from_payable_per_due_month_for_posted_orders_only():
    posted = OrderSyncFactory(state=OrderState.POSTED).order
    OrderItemFactory(order=posted, net_amount=Decimal("100.00"), vat_amount=Decimal("19.00"))
    OrderItemFactory(
        order=posted,
        cashflow=OrderItem.Cashflow.PASSIVE,
        net_amount=Decimal("-50.00"),
        vat_amount=Decimal("-9.50"),
    )
    OrderItemFactory(order=posted, status=OrderItem.Status.EDITED, net_amount=Decimal("5000"))
    blocked = OrderSyncFactory(state=OrderState.BLOCKED).order
    OrderItemFactory(order=blocked, net_amount=Decimal("777.00"))

    rows = cashflow_per_month()

    assert [(r.month.isoformat(), r.currency, r.receivable, r.payable) for r in rows] == [
        ("2026-04-01", "EUR", Decimal("119.00"), Decimal("59.50"))
    ]


def test_the_home_shows_the_last_run_of_each_schedule_with_its_result(client):
    Schedule.objects.all().delete()
    Success.objects.create(
        id="b" * 32,
        name="t1",
        func="ledger_sync.tasks.sync_atlas_task",
        started=datetime(2026, 11, 2, 9, 0, tzinfo=UTC),
        stopped=datetime(2026, 11, 2, 9, 1, tzinfo=UTC),
        success=True,
        result=7,
    )
    Failure.objects.create(
        id="c" * 32,
        name="t2",
        func="ledger_sync.tasks.run_cycle_task",
        started=datetime(2026, 11, 2, 9, 0, tzinfo=UTC),
        stopped=datetime(2026, 11, 2, 9, 2, tzinfo=UTC),
        success=False,
        result="boom",
    )
    Schedule.objects.create(
        name="ATLAS mirror",
        func="ledger_sync.tasks.sync_atlas_task",
        schedule_type=Schedule.MINUTES,
        minutes=15,
        task="b" * 32,
    )
    Schedule.objects.create(
        name="Journal cycle",
        func="ledger_sync.tasks.run_cycle_task",
        schedule_type=Schedule.MINUTES,
        minutes=15,
        task="c" * 32,
    )
    Schedule.objects.create(
        name="Inbound sweep",
        func="ledger_sync.tasks.inbound_sweep_task",
        schedule_type=Schedule.MINUTES,
        minutes=1,
    )

    html = _home(client, accountant())

    table = re.search(r'<table class="schedules">(.*?)</table>', html, re.S).group(1)
    rows = re.findall(r'<th scope="row">([^<]+)</th>.*?class="outcome-([a-z-]+)"', table, re.S)
    assert rows == [
        ("ATLAS mirror", "succeeded"),
        ("Inbound sweep", "never-ran"),
        ("Journal cycle", "failed"),
    ]
    assert f"/admin/django_q/failure/{'c' * 32}/change/" in table


def test_a_registered_card_appears_with_its_count(client):
    card = CountCard(
        key="test_orders_posted",
        title="Posted orders (test card)",
        button="See them",
        lines=(
            CardLine(
                "Posted",
                lambda: __import__(
                    "ledger_sync.models", fromlist=["OrderSync"]
                ).OrderSync.objects.filter(state=OrderState.POSTED),
                "admin:ledger_sync_ordersync_changelist",
                "?state__exact=posted",
                "ledger_sync.view_ordersync",
            ),
        ),
    )
    dashboard_card_register(card)
    try:
        OrderSyncFactory.create_batch(2, state=OrderState.POSTED)
        html = _home(client, accountant())
    finally:
        DASHBOARD_CARDS.remove(card)

    assert _figure(_card(html, "test_orders_posted")) == 2
    with pytest.raises(ValueError, match="already registered"):
        dashboard_card_register(DASHBOARD_CARDS[0])


def test_every_registered_model_is_in_exactly_one_navigation_group(rf):
    user = finance_lead()
    user.is_superuser = True
    request = rf.get("/admin/")
    request.user = user

    groups = admin.site.get_app_list(request)

    names = [group["name"] for group in groups]
    assert names[: len(NAV_GROUPS)] == [name for name, _models in NAV_GROUPS][: len(names)]
    listed = [model["model"] for group in groups for model in group["models"]]
    assert sorted(listed, key=str) == sorted(admin.site._registry, key=str)
    assert len(listed) == len(set(listed))
    assert OTHER_GROUP not in names  # every model of today has its group


def test_a_model_no_group_names_lands_in_other():
    groups = group_models(
        [
            {"models": [{"object_name": "Journal", "name": "Journals"}]},
            {"models": [{"object_name": "SomethingNew", "name": "Something new"}]},
        ]
    )

    assert [(g["name"], [m["name"] for m in g["models"]]) for g in groups] == [
        ("Work", ["Journals"]),
        (OTHER_GROUP, ["Something new"]),
    ]


def test_an_apps_own_index_page_still_lists_that_app(client):
    html = _home(client, accountant())
    client.force_login(accountant(username="acc2"))
    response = client.get("/admin/ledger_sync/")

    assert response.status_code == 200
    assert "Ledger sync" in response.content.decode()
    assert 'class="section">Work</span>' in html


def test_the_error_queue_card_counts_open_problems_and_lists_exactly_them(client):
    from ledger_sync.models import Problem
    from ledger_sync.services.problems import problem_report

    problem_report(kind=Problem.Kind.BLOCKED_ORDER, key="order_sync:1", message="blocked")
    problem_report(kind=Problem.Kind.RECONCILIATION, key="journal:X:missing", message="missing")
    resolved = problem_report(kind=Problem.Kind.FAILED_TASK, key="task:1", message="failed")
    Problem.objects.filter(pk=resolved.pk).update(status=Problem.Status.RESOLVED)

    card = _card(_home(client, accountant()), "error_queue")

    assert _figure(card) == 2
    listed = client.get(_button_url(card))
    assert listed.status_code == 200
    assert listed.context["cl"].result_count == 2


def _card_text(card_html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", card_html)).strip()


def test_the_last_reconciliation_card_shows_the_latest_runs_differences_and_links_to_them(
    client,
):
    older = ReconciliationRunFactory(
        started_at=datetime(2026, 11, 1, 6, 0, tzinfo=UTC), difference_count=0
    )
    latest = ReconciliationRunFactory(
        period="2026-10",
        started_at=datetime(2026, 11, 2, 6, 0, tzinfo=UTC),
        finished_at=datetime(2026, 11, 2, 6, 1, tzinfo=UTC),
        difference_count=2,
    )
    ReconciliationDifferenceFactory.create_batch(2, run=latest)
    ReconciliationDifferenceFactory(run=older)  # another run's: not listed

    card = _card(_home(client, accountant()), "last_reconciliation")

    assert _figure(card) == 2
    assert "2 differences found (2026-10), 2026-11-02 06:01." in _card_text(card)
    assert "tone-problem" in card
    listed = client.get(_button_url(card))
    assert listed.status_code == 200
    assert listed.context["cl"].result_count == 2


def test_a_clean_last_reconciliation_says_everything_agrees_and_links_to_the_run(client):
    run = ReconciliationRunFactory(
        finished_at=datetime(2026, 11, 2, 6, 1, tzinfo=UTC), difference_count=0
    )

    card = _card(_home(client, accountant()), "last_reconciliation")

    assert _figure(card) == 0
    assert "Everything agrees (all periods), 2026-11-02 06:01." in _card_text(card)
    assert _button_url(card) == f"/admin/ledger_sync/reconciliationrun/{run.pk}/change/"


def test_a_failed_last_reconciliation_shows_why_without_a_traceback(client):
    run = ReconciliationRunFactory(
        status="failed",
        finished_at=datetime(2026, 11, 2, 6, 1, tzinfo=UTC),
        error="AR Ledger unreachable: connection refused\nTraceback (most recent call last): ...",
    )

    card = _card(_home(client, finance_lead()), "last_reconciliation")
    text = _card_text(card)

    assert '<div class="figure">Failed</div>' in card
    assert "Failed (all periods) at 2026-11-02 06:01: AR Ledger unreachable" in text
    assert "Traceback" not in text
    assert _button_url(card) == f"/admin/ledger_sync/reconciliationrun/{run.pk}/change/"


def test_before_any_reconciliation_the_card_says_so(client):
    card = _card(_home(client, accountant()), "last_reconciliation")

    assert "No reconciliation has run yet" in _card_text(card)
    assert _button_url(card) == "/admin/ledger_sync/reconciliationrun/"


def test_the_charts_axis_shows_amounts_with_thousands_separators():
    chart = posted_per_period_chart(
        [PeriodAmount(period="2026-03", currency="EUR", amount=Decimal("1400000.00"))]
    )

    # The y axis (the bars' own labels carry the exact amount with its currency anyway).
    assert re.search(r">\s*1,400,000\s*<", chart["svg"])
    assert not re.search(r">\s*1400000\s*<", chart["svg"])
