"""The error queue page: open problems first, filters, confirmed actions with plurals, the note,
details for administrators only, CSV/XLSX export, and a query budget at 10,000 orders."""

from __future__ import annotations

import io
from datetime import timedelta

import openpyxl
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from ledger_sync.models import (
    BlockedReason,
    Counterparty,
    Order,
    OrderState,
    OrderSync,
    Problem,
)
from ledger_sync.services.problems import problem_report, problems_refresh
from tests.factories.parties import accountant

pytestmark = pytest.mark.django_db
K = Problem.Kind
S = Problem.Status
URL = "/admin/ledger_sync/problem/"


def problem(key: str = "k", *, kind: str = K.FAILED_TASK, **fields) -> Problem:
    row = problem_report(
        kind=kind,
        key=key,
        message=fields.pop("message", f"Task {key} failed: ATLAS unreachable."),
        record_label=fields.pop("record_label", f"Task {key}"),
        fix_url=fields.pop("fix_url", f"/admin/django_q/failure/{key}/change/"),
        details=fields.pop("details", {"traceback": "Traceback (most recent call last): ..."}),
    )
    if fields:
        Problem.objects.filter(pk=row.pk).update(**fields)
        row.refresh_from_db()
    return row


@pytest.fixture
def worker(client):
    user = accountant(username="ada")
    client.force_login(user)
    return user


def listed(response) -> list[Problem]:
    return list(response.context["cl"].result_list)


def test_the_queue_shows_open_problems_with_a_link_to_what_fixes_each(client, worker):
    open_one = problem("open")
    problem("done", status=S.RESOLVED)

    response = client.get(URL)

    assert response.status_code == 200
    assert listed(response) == [open_one]
    html = response.content.decode()
    assert 'href="/admin/django_q/failure/open/change/"' in html
    assert 'aria-label="Fix Task open"' in html
    assert "Failed task" in html


def test_the_status_and_assignee_filters(client, worker):
    mine = problem("mine", assignee=worker)
    nobodys = problem("nobody")
    ignored = problem("ignored", status=S.IGNORED)

    assert listed(client.get(URL + "?assignee=me")) == [mine]
    assert listed(client.get(URL + "?assignee=nobody")) == [nobodys]
    assert listed(client.get(URL + "?status=ignored")) == [ignored]
    assert len(listed(client.get(URL + "?status=all"))) == 3


@pytest.mark.parametrize(
    ("action", "start", "end", "said"),
    [
        ("resolve", S.OPEN, S.RESOLVED, "problems resolved"),
        ("ignore", S.OPEN, S.IGNORED, "problems ignored"),
        ("reopen", S.RESOLVED, S.OPEN, "problems reopened"),
    ],
)
def test_an_action_asks_first_then_says_how_many_changed(client, worker, action, start, end, said):
    rows = [problem(f"p{n}", status=start) for n in range(2)]
    data = {"action": action, "_selected_action": [r.pk for r in rows]}

    asked = client.post(URL + "?status=all", data)

    assert asked.status_code == 200
    assert "Yes, " in asked.content.decode()
    assert set(Problem.objects.values_list("status", flat=True)) == {start}

    done = client.post(URL + "?status=all", {**data, "confirmed": "yes"}, follow=True)

    assert set(Problem.objects.values_list("status", flat=True)) == {end}
    assert f"2 {said}." in done.content.decode()


def test_the_message_is_singular_for_one_and_says_what_was_left(client, worker):
    one = problem("one")
    already = problem("already", status=S.RESOLVED)

    done = client.post(
        URL + "?status=all",
        {"action": "resolve", "_selected_action": [one.pk, already.pk], "confirmed": "yes"},
        follow=True,
    )

    text = done.content.decode()
    assert "1 problem resolved." in text
    assert "1 was already so and left as it was." in text


def test_assign_to_me(client, worker):
    row = problem()

    client.post(URL, {"action": "assign_to_me", "_selected_action": [row.pk], "confirmed": "yes"})

    row.refresh_from_db()
    assert row.assignee == worker


def test_a_note_and_assignee_are_saved_and_nothing_else_is_editable(client, worker):
    row = problem()
    url = reverse("admin:ledger_sync_problem_change", args=[row.pk])

    response = client.post(
        url, {"note": "Asked ATLAS support (ticket 4711).", "assignee": worker.pk, "count": 99}
    )

    assert response.status_code == 302
    row.refresh_from_db()
    assert row.note == "Asked ATLAS support (ticket 4711)."
    assert row.assignee == worker
    assert row.count == 1


def test_details_are_shown_to_administrators_only(client, worker, admin_client):
    row = problem()
    url = reverse("admin:ledger_sync_problem_change", args=[row.pk])

    assert "Traceback" not in client.get(url).content.decode()
    admin_page = admin_client.get(url).content.decode()
    assert "<details><summary>Show the details</summary>" in admin_page
    assert "Traceback (most recent call last)" in admin_page


def test_a_user_without_the_role_cannot_act(client, django_user_model):
    stranger = django_user_model.objects.create_user("stranger", is_staff=True)
    client.force_login(stranger)

    assert client.get(URL).status_code == 403


def _export(client, fmt: int):
    from ledger_sync.admin.problems import ProblemResource

    fields = {f"problemresource_{name}": "on" for name in ProblemResource.Meta.fields}
    return client.post(
        reverse("admin:ledger_sync_problem_export") + "?status=all",
        {"format": fmt, "resource": 0, **fields},
    )


def test_the_queue_exports_as_csv_with_readable_columns(client, worker):
    problem("a", message="Task a failed, twice.")

    response = _export(client, 0)

    assert response.status_code == 200
    lines = response.content.decode().splitlines()
    assert lines[0] == (
        "Type,Record,Message,First seen (UTC),Last seen (UTC),Count,Status,Assignee,Note,Fix link"
    )
    assert lines[1].startswith('Failed task,Task a,"Task a failed, twice.",')
    assert lines[1].endswith(",1,Open,,,/admin/django_q/failure/a/change/")


def test_the_queue_exports_as_xlsx(client, worker):
    problem("a")

    response = _export(client, 1)

    sheet = openpyxl.load_workbook(io.BytesIO(response.content)).active
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0][:2] == ("Type", "Record")
    assert rows[1][:2] == ("Failed task", "Task a")


# --- the query budget ----------------------------------------------------------------------


def _orders(n: int) -> list[Order]:
    now = timezone.now()
    mirrored = {
        "raw_json": "{}",
        "content_hash": "0" * 64,
        "first_seen_at": now,
        "last_seen_at": now,
        "last_changed_at": now,
    }
    counterparty = Counterparty.objects.create(atlas_id=1, name="Energy Trader", **mirrored)
    Order.objects.bulk_create(
        [
            Order(
                atlas_id=n_,
                counterparty=counterparty,
                counterparty_atlas_id=1,
                status="Approved order by ETRM",
                document_reference=f"SO-{n_:06d}",
                currency="EUR",
                registration_date=now,
                due_date=now,
                total_amount="100.00",
                **mirrored,
            )
            for n_ in range(1, n + 1)
        ],
        batch_size=2000,
    )
    return list(Order.objects.order_by("pk"))


def test_the_queue_page_stays_within_15_queries_at_10000_orders(client, admin_client):
    orders = _orders(10_000)
    OrderSync.objects.bulk_create(
        [
            OrderSync(
                order=order,
                state=OrderState.BLOCKED,
                blocked_reason=BlockedReason.UNKNOWN_GL_ACCOUNT,
                blocked_message=f"GL account 4999 of order {order.atlas_id} is not in the chart.",
                blocked_fix_url="/admin/ledger_sync/glaccount/?number__exact=4999",
            )
            for order in orders[:3000]
        ],
        batch_size=2000,
    )
    OrderSync.objects.bulk_create(
        [OrderSync(order=order, state=OrderState.POSTED) for order in orders[3000:]],
        batch_size=2000,
    )
    problems_refresh()
    user = accountant(username="ada")
    Problem.objects.filter(pk__in=Problem.objects.values("pk")[:500]).update(
        assignee=user, last_seen_at=timezone.now() - timedelta(days=1)
    )
    assert Problem.objects.filter(kind=K.BLOCKED_ORDER).count() == 3000
    client.force_login(user)

    for url in (URL, URL + "?kind=blocked_order&assignee=me", URL + "?status=all&p=5"):
        with CaptureQueriesContext(connection) as queries:
            response = client.get(url)
        assert response.status_code == 200
        assert len(queries) <= 15, [q["sql"][:120] for q in queries]
    with CaptureQueriesContext(connection) as queries:
        assert admin_client.get(URL).status_code == 200
    assert len(queries) <= 15
