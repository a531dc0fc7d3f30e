"""The "Run now" view: only POST starts a run, only a person with the start permission may
start one, and a stranger is sent to the login page; a refused request records no run."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.urls import reverse

from ledger_sync.models import JobRun
from tests.factories.parties import accountant

pytestmark = pytest.mark.django_db


@pytest.fixture
def queued(monkeypatch) -> list[int]:
    """The job runs handed to the worker (none runs here)."""
    handed: list[int] = []
    monkeypatch.setattr("ledger_sync.services.job_runs._enqueue", handed.append)
    return handed


def _url(kind: str = JobRun.Kind.ATLAS_MIRROR) -> str:
    return reverse("admin:ledger_sync_run_now", args=[kind])


def test_an_accountant_starts_the_mirror_by_post_and_lands_on_its_page(
    client, queued, django_capture_on_commit_callbacks
):
    client.force_login(accountant())

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(_url())

    job = JobRun.objects.get()
    assert (job.kind, job.requested_by.username) == (JobRun.Kind.ATLAS_MIRROR, "accountant")
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:ledger_sync_jobrun_change", args=[job.pk])
    assert queued == [job.pk]


def test_a_get_starts_nothing(client, queued, django_capture_on_commit_callbacks):
    client.force_login(accountant())

    with django_capture_on_commit_callbacks(execute=True):
        response = client.get(_url(JobRun.Kind.JOURNAL_CYCLE))

    assert response.status_code == 405
    assert response["Allow"] == "POST"
    assert not JobRun.objects.exists()
    assert queued == []


def test_staff_without_the_start_permission_are_refused(
    client, queued, django_capture_on_commit_callbacks
):
    clerk = get_user_model().objects.create_user(username="clerk", is_staff=True)
    clerk.user_permissions.add(Permission.objects.get(codename="view_jobrun"))
    client.force_login(clerk)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(_url())

    assert response.status_code == 403
    assert not JobRun.objects.exists()
    assert queued == []


def test_an_anonymous_visitor_is_sent_to_the_login_page(
    client, queued, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(_url())

    assert response.status_code == 302
    assert response["Location"] == f"/admin/login/?next={_url()}"
    assert not JobRun.objects.exists()
    assert queued == []


def test_an_unknown_job_is_not_found(client, queued):
    client.force_login(accountant())

    assert client.post(_url("reconcile")).status_code == 404
    assert not JobRun.objects.exists()
