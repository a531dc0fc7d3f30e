"""Approve and Reject on the journal's own page: shown to reviewers for a draft awaiting review,
asked before, queued (never run in the request), refused for anyone else."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.urls import reverse

from ledger_sync.admin import journals as journals_admin
from ledger_sync.models import Journal, OrderState, OrderSync
from tests.factories.parties import accountant
from tests.ledger_sync.services.posting_support import built_journal

pytestmark = pytest.mark.django_db


@pytest.fixture
def queued(monkeypatch):
    calls = []
    monkeypatch.setattr(
        journals_admin, "async_task", lambda func, *args, **kwargs: calls.append((func, args))
    )
    return calls


def _draft() -> Journal:
    journal = built_journal(workflow=Journal.Workflow.REVIEW)
    Journal.objects.filter(pk=journal.pk).update(status=Journal.Status.DRAFT)
    OrderSync.objects.filter(pk=journal.order_sync_id).update(state=OrderState.AWAITING_REVIEW)
    return Journal.objects.get(pk=journal.pk)


def _page(client, journal) -> str:
    url = reverse("admin:ledger_sync_journal_change", args=[journal.pk])
    return client.get(url).content.decode()


def test_a_reviewer_sees_both_buttons_named_for_the_journal(client):
    journal = _draft()
    client.force_login(accountant())

    page = _page(client, journal)

    reference = journal.source_transaction_reference
    assert f'aria-label="Approve and post journal {reference}"' in page
    assert f'aria-label="Reject journal {reference}"' in page
    assert reverse("admin:ledger_sync_journal_approve", args=[journal.pk]) in page


def test_someone_who_may_only_view_journals_sees_no_buttons_and_is_refused(client, queued):
    journal = _draft()
    viewer = get_user_model().objects.create_user("viewer", password="x", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_journal"))
    client.force_login(viewer)

    page = _page(client, journal)

    assert "Approve and post" not in page and "Reject…" not in page
    approve = reverse("admin:ledger_sync_journal_approve", args=[journal.pk])
    assert client.post(approve, {"confirm": "1"}).status_code == 403
    assert queued == []


def test_approve_asks_first_then_queues_the_posting(
    client, queued, django_capture_on_commit_callbacks
):
    journal = _draft()
    user = accountant()
    client.force_login(user)
    url = reverse("admin:ledger_sync_journal_approve", args=[journal.pk])

    asked = client.get(url)
    assert f"Approve and post journal {journal.source_transaction_reference}?" in (
        asked.content.decode()
    )
    assert "85,500.00 EUR" in asked.content.decode()
    assert queued == []

    with django_capture_on_commit_callbacks(execute=True):
        done = client.post(url, {"confirm": "1"}, follow=True)

    assert queued == [("ledger_sync.tasks.approve_journals_task", ([journal.pk], user.pk))]
    assert "it is being posted to the AR Ledger" in done.content.decode()
    journal.refresh_from_db()
    assert journal.status == Journal.Status.DRAFT  # nothing was sent in the request


def test_reject_needs_a_reason_then_queues_the_rejection(
    client, queued, django_capture_on_commit_callbacks
):
    journal = _draft()
    user = accountant()
    client.force_login(user)
    url = reverse("admin:ledger_sync_journal_reject", args=[journal.pk])

    no_reason = client.post(url, {"confirm": "1", "reason": "  "})
    assert "This field is required." in no_reason.content.decode()
    assert queued == []

    with django_capture_on_commit_callbacks(execute=True):
        client.post(url, {"confirm": "1", "reason": "Wrong VAT rate on item 9001"})

    assert queued == [
        (
            "ledger_sync.tasks.reject_journal_task",
            (journal.pk, user.pk, "Wrong VAT rate on item 9001"),
        )
    ]


def test_a_posted_journal_offers_no_decision_and_refuses_one(client, queued):
    journal = _draft()
    Journal.objects.filter(pk=journal.pk).update(status=Journal.Status.POSTED)
    OrderSync.objects.filter(pk=journal.order_sync_id).update(state=OrderState.POSTED)
    client.force_login(accountant())

    assert "Approve and post" not in _page(client, journal)
    response = client.post(
        reverse("admin:ledger_sync_journal_approve", args=[journal.pk]),
        {"confirm": "1"},
        follow=True,
    )

    assert "does not await review" in response.content.decode()
    assert queued == []
