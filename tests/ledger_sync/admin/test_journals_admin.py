"""Journal review, order pipeline and write-back admin: pages render with bounded queries;
actions enqueue tasks (on commit) and never call a remote system in the request."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from ledger_sync.admin import journals as journals_admin
from ledger_sync.models import Journal, OrderState, OrderSync, OrderTransition, WriteBackStep
from ledger_sync.services.write_back_steps import write_back_steps_open
from tests.factories.atlas import OrderItemFactory
from tests.factories.parties import accountant
from tests.ledger_sync.services.posting_support import (
    built_journal,
    ledger_fixture,  # noqa: F401 - the `ledger` fixture
)

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:ledger_sync_journal_changelist"


@pytest.fixture
def queued(monkeypatch):
    calls = []
    monkeypatch.setattr(
        journals_admin, "async_task", lambda func, *args, **kwargs: calls.append((func, args))
    )
    return calls


@pytest.fixture
def reviewer(client):
    user = accountant()
    client.force_login(user)
    return user


def _draft(**kwargs) -> Journal:
    journal = built_journal(workflow=Journal.Workflow.REVIEW, **kwargs)
    Journal.objects.filter(pk=journal.pk).update(
        status=Journal.Status.DRAFT, request_json='[{"source_transaction_reference": "x"}]'
    )
    OrderSync.objects.filter(pk=journal.order_sync_id).update(state=OrderState.AWAITING_REVIEW)
    return Journal.objects.get(pk=journal.pk)


def _list_queries(client) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse(CHANGELIST))
    assert response.status_code == 200
    return len(queries)


def test_review_list_shows_order_counterparty_amount_state_and_reason(client, reviewer):
    journal = _draft()

    response = client.get(reverse(CHANGELIST))

    page = response.content.decode()
    order = journal.order_sync.order
    assert journal.source_transaction_reference in page
    assert order.counterparty.name in page
    assert "85500.00" in page or "85,500.00" in page
    assert "Draft in the ledger, awaiting review" in page


def test_review_list_queries_do_not_grow_with_the_rows(client, reviewer):
    for _ in range(3):
        _draft()
    few = _list_queries(client)
    for _ in range(12):
        _draft()

    assert _list_queries(client) == few


def test_review_list_filters_by_order_state_and_blocked_reason(client, reviewer):
    draft = _draft()
    blocked = built_journal()
    OrderSync.objects.filter(pk=blocked.order_sync_id).update(
        state=OrderState.BLOCKED, blocked_reason="remote_rejection", blocked_message="no"
    )

    by_reason = client.get(reverse(CHANGELIST), {"blocked_reason": "remote_rejection"})
    by_state = client.get(reverse(CHANGELIST), {"order_state": OrderState.AWAITING_REVIEW})

    assert blocked.source_transaction_reference in by_reason.content.decode()
    assert draft.source_transaction_reference not in by_reason.content.decode()
    assert draft.source_transaction_reference in by_state.content.decode()
    assert blocked.source_transaction_reference not in by_state.content.decode()


def test_detail_page_shows_lines_with_totals_the_order_and_the_history(client, reviewer):
    journal = _draft()
    OrderItemFactory(order=journal.order_sync.order, atlas_id=9001, description="Baseload power")
    OrderTransition.objects.create(
        order_sync=journal.order_sync,
        from_state=OrderState.POSTING,
        to_state=OrderState.AWAITING_REVIEW,
        actor="system:test",
        note="draft created as ledger transaction 1001",
        at=journal.created_at,
    )

    response = client.get(reverse("admin:ledger_sync_journal_change", args=[journal.pk]))

    page = response.content.decode()
    assert response.status_code == 200
    assert "85,500.00 EUR" in page and "71,848.74" in page and "13,651.26" in page
    assert "Totals" in page and "not balanced" not in page
    assert "Baseload power" in page and "9001" in page
    assert "draft created as ledger transaction 1001" in page
    # An accountant reads the journal, not the JSON sent to the AR Ledger.
    assert "Request sent to the AR Ledger" not in page and "&quot;x&quot;" not in page


def test_a_superuser_sees_the_request_folded_on_the_detail_page(admin_client):
    journal = _draft()

    page = admin_client.get(
        reverse("admin:ledger_sync_journal_change", args=[journal.pk])
    ).content.decode()

    assert "Request sent to the AR Ledger" in page
    assert "<details><summary>Show the JSON</summary><pre>[\n  {\n    &quot;source" in page


def test_approve_action_enqueues_and_sends_nothing_itself(
    client, reviewer, queued, django_capture_on_commit_callbacks
):
    journals = [_draft(), _draft()]
    selected = {"action": "approve_selected", "_selected_action": [j.pk for j in journals]}

    asked = client.post(reverse(CHANGELIST), selected)
    assert "Approve and post these 2 journals?" in asked.content.decode()
    assert "85,500.00 EUR" in asked.content.decode()
    assert queued == []

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse(CHANGELIST), {**selected, "apply": "1"})

    assert response.status_code == 302
    ((func, (ids, user_id)),) = queued
    assert func == "ledger_sync.tasks.approve_journals_task"
    assert sorted(ids) == sorted(j.pk for j in journals) and user_id == reviewer.pk
    assert set(Journal.objects.values_list("status", flat=True)) == {Journal.Status.DRAFT}


def test_reject_action_asks_for_a_reason_then_enqueues(
    client, reviewer, queued, django_capture_on_commit_callbacks
):
    journal = _draft()
    data = {"action": "reject_selected", "_selected_action": [journal.pk]}

    asked = client.post(reverse(CHANGELIST), data)
    assert asked.status_code == 200 and "reason" in asked.content.decode()
    assert queued == []

    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse(CHANGELIST), {**data, "apply": "1", "reason": "Wrong VAT rate"})

    assert queued == [
        ("ledger_sync.tasks.reject_journal_task", (journal.pk, reviewer.pk, "Wrong VAT rate"))
    ]


@pytest.mark.parametrize(
    ("changelist", "action"),
    [
        (CHANGELIST, "approve_selected"),
        (CHANGELIST, "reject_selected"),
        (CHANGELIST, "reverse_selected"),
        (CHANGELIST, "retry_selected"),
        (CHANGELIST, "rebuild_selected"),
        ("admin:ledger_sync_ordersync_changelist", "retry_selected"),
        ("admin:ledger_sync_ordersync_changelist", "rebuild_selected"),
        ("admin:ledger_sync_writebackstep_changelist", "retry_selected"),
    ],
)
def test_actions_need_the_approve_permission(
    client, django_user_model, queued, django_capture_on_commit_callbacks, changelist, action
):
    from django.contrib.auth.models import Permission

    clerk = django_user_model.objects.create_user(username="clerk", is_staff=True)
    clerk.user_permissions.add(
        *Permission.objects.filter(
            codename__in=["view_journal", "view_ordersync", "view_writebackstep"]
        )
    )
    client.force_login(clerk)
    journal = _draft()
    OrderSync.objects.filter(pk=journal.order_sync_id).update(state=OrderState.FAILED)
    write_back_steps_open(order_sync=journal.order_sync)
    WriteBackStep.objects.update(status=WriteBackStep.Status.FAILED, next_attempt_at=None)
    selected = {
        CHANGELIST: journal.pk,
        "admin:ledger_sync_ordersync_changelist": journal.order_sync_id,
        "admin:ledger_sync_writebackstep_changelist": WriteBackStep.objects.first().pk,
    }[changelist]

    listing = client.get(reverse(changelist))
    assert listing.status_code == 200
    assert f'value="{action}"' not in listing.content.decode()  # not even offered
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = client.post(
            reverse(changelist),
            {"action": action, "_selected_action": [selected], "apply": "1", "reason": "x"},
        )

    assert response.status_code in (200, 302)
    assert callbacks == [] and queued == []


@pytest.mark.parametrize(
    "changelist",
    [
        CHANGELIST,
        "admin:ledger_sync_ordersync_changelist",
        "admin:ledger_sync_writebackstep_changelist",
    ],
)
def test_list_pages_queries_stay_the_same_from_1_to_50_rows(client, reviewer, changelist):
    def rows(count):
        for _ in range(count):
            journal = _draft()
            write_back_steps_open(order_sync=journal.order_sync)
            OrderSync.objects.filter(pk=journal.order_sync_id).update(
                state=OrderState.BLOCKED,
                blocked_reason="remote_rejection",
                blocked_message="refused",
                blocked_fix_url=f"/admin/ledger_sync/journal/{journal.pk}/change/",
            )

    def queries():
        with CaptureQueriesContext(connection) as captured:
            response = client.get(reverse(changelist))
        assert response.status_code == 200
        return len(captured)

    rows(1)
    one = queries()
    rows(49)

    assert queries() == one


def test_order_list_shows_blocked_reason_and_fix_link(client, reviewer):
    journal = built_journal()
    OrderSync.objects.filter(pk=journal.order_sync_id).update(
        state=OrderState.BLOCKED,
        blocked_reason="unknown_gl_account",
        blocked_message="GL account 9999 is not in the chart",
        blocked_fix_url="/admin/ledger_sync/glaccount/",
    )

    response = client.get(reverse("admin:ledger_sync_ordersync_changelist"))

    page = response.content.decode()
    assert "GL account 9999 is not in the chart" in page
    assert 'href="/admin/ledger_sync/glaccount/"' in page


def test_order_detail_shows_journals_write_backs_and_history(client, reviewer):
    journal = built_journal()
    write_back_steps_open(order_sync=journal.order_sync)
    WriteBackStep.objects.filter(kind=WriteBackStep.Kind.INVOICE).update(
        status=WriteBackStep.Status.FAILED, last_error="ATLAS refused the invoice"
    )
    OrderTransition.objects.create(
        order_sync=journal.order_sync,
        from_state=OrderState.POSTING,
        to_state=OrderState.POSTED,
        actor="system:test",
        note="posted as ledger transaction 4242",
        at=journal.created_at,
    )

    response = client.get(
        reverse("admin:ledger_sync_ordersync_change", args=[journal.order_sync_id])
    )

    page = response.content.decode()
    assert response.status_code == 200
    assert journal.source_transaction_reference in page
    assert "ATLAS refused the invoice" in page  # the failed write-back and why
    assert "posted as ledger transaction 4242" in page and "system:test" in page  # history


def test_write_back_retry_action_enqueues(
    client, reviewer, queued, django_capture_on_commit_callbacks
):
    journal = built_journal()
    write_back_steps_open(order_sync=journal.order_sync)
    step = WriteBackStep.objects.get(kind=WriteBackStep.Kind.ERP_CODE)
    WriteBackStep.objects.filter(pk=step.pk).update(
        status=WriteBackStep.Status.FAILED, last_error="ATLAS down", attempts=3
    )

    listing = client.get(reverse("admin:ledger_sync_writebackstep_changelist"))
    assert "ATLAS down" in listing.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            reverse("admin:ledger_sync_writebackstep_changelist"),
            {"action": "retry_selected", "_selected_action": [step.pk]},
        )

    assert queued == [("ledger_sync.tasks.write_back_task", ([journal.order_sync_id],))]
    step.refresh_from_db()
    assert step.next_attempt_at is None


def test_every_task_the_admin_and_the_schedule_enqueue_exists():
    import inspect

    from ledger_sync import tasks
    from ledger_sync.services.schedules import default_schedules

    source = inspect.getsource(journals_admin)
    names = {
        "approve_journals_task",
        "reject_journal_task",
        "reverse_journal_task",
        "retry_order_task",
        "rebuild_order_task",
        "write_back_task",
    }
    for name in names:
        assert f'"{name}"' in source
        assert callable(getattr(tasks, name))
    cycle = next(s for s in default_schedules() if s.name == "Journal cycle")
    assert cycle.func == "ledger_sync.tasks.run_cycle_task"
    assert callable(tasks.run_cycle_task) and callable(tasks.post_journals_task)


def test_retry_task_posts_a_failed_order_at_once(ledger):
    from django.utils import timezone

    from ledger_sync.tasks import retry_order_task

    journal = built_journal()
    OrderSync.objects.filter(pk=journal.order_sync_id).update(
        state=OrderState.FAILED, attempts=1, next_attempt_at=timezone.now() + timedelta(hours=1)
    )

    assert retry_order_task(journal.order_sync_id) == 1
    assert len(ledger.app.transactions_with_reference(journal.source_transaction_reference)) == 1


def test_a_retry_asked_for_in_the_admin_shows_in_the_history_with_who_and_when(
    client, reviewer, queued, django_capture_on_commit_callbacks, ledger
):
    import time_machine
    from django.utils import timezone

    from ledger_sync import tasks

    journal = built_journal()
    OrderSync.objects.filter(pk=journal.order_sync_id).update(
        state=OrderState.FAILED, attempts=1, next_attempt_at=timezone.now() + timedelta(hours=1)
    )
    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            reverse("admin:ledger_sync_ordersync_changelist"),
            {"action": "retry_selected", "_selected_action": [journal.order_sync_id]},
        )
    assert queued == [("ledger_sync.tasks.retry_order_task", (journal.order_sync_id, reviewer.pk))]

    asked_at = timezone.now() + timedelta(minutes=3)
    with time_machine.travel(asked_at, tick=False):
        assert tasks.retry_order_task(*queued[0][1]) == 1

    history = list(
        OrderTransition.objects.filter(order_sync_id=journal.order_sync_id).order_by("at", "id")
    )
    retry = history[0]
    assert (retry.from_state, retry.to_state) == (OrderState.FAILED, OrderState.FAILED)
    assert (retry.actor, retry.user_id, retry.at) == (reviewer.username, reviewer.pk, asked_at)
    assert "retry requested" in retry.note
    assert [(t.from_state, t.to_state) for t in history[1:]] == [
        (OrderState.FAILED, OrderState.POSTING),
        (OrderState.POSTING, OrderState.POSTED),
    ]
    assert {t.actor for t in history[1:]} == {"system:retry_order_task"}
    page = client.get(
        reverse("admin:ledger_sync_ordersync_change", args=[journal.order_sync_id])
    ).content.decode()
    assert "retry requested" in page and reviewer.username in page


def test_detail_page_shows_each_items_gross_to_the_cent(client, reviewer):
    from decimal import Decimal

    journal = _draft()
    order = journal.order_sync.order
    OrderItemFactory(
        order=order,
        atlas_id=9001,
        net_amount=Decimal("71848.74"),
        vat_amount=Decimal("13651.26"),
        status=2,
    )
    OrderItemFactory(  # still under review in ATLAS: shown, not in the booked sum
        order=order,
        atlas_id=9002,
        net_amount=Decimal("10.50"),
        vat_amount=Decimal("2.00"),
        status=0,
    )

    response = client.get(reverse("admin:ledger_sync_journal_change", args=[journal.pk]))

    page = response.content.decode()
    assert response.context["items_gross"] == Decimal("85500.00")
    assert [gross for _item, gross in response.context["atlas_item_rows"]] == [
        Decimal("85500.00"),
        Decimal("12.50"),
    ]
    assert ">85,500.00</span></td>" in page and ">12.50</span></td>" in page
    assert "85499" not in page  # the template's `add` filter truncated to int
