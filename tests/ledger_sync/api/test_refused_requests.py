"""Every 4xx answer of the inbound API lands in the error queue, folded per endpoint, caller,
status and reason, without the body, the token or the signature."""

from __future__ import annotations

import pytest
from django.test import Client

from integration import wire
from ledger_sync.models import Problem
from tests.ledger_sync.api.conftest import bearer

pytestmark = pytest.mark.django_db
K = Problem.Kind


def refused() -> list[Problem]:
    return list(Problem.objects.filter(kind=K.REFUSED_REQUEST).order_by("pk"))


def row_text(problem: Problem) -> str:
    return " ".join(
        str(getattr(problem, f)) for f in ("key", "record_label", "message", "fix_url", "details")
    )


def test_a_bad_signature_is_one_folded_problem_without_the_signature_or_body(post_webhook, queued):
    for _ in range(3):
        response = post_webhook({"event": "order.status_changed"}, signature="sha256=deadbeef")
        assert response.status_code == 401

    (problem,) = refused()
    assert problem.count == 3
    assert problem.record_label == "POST /api/webhooks/atlas/ from the webhook sender"
    assert problem.message.startswith("Refused with 401 (invalid_signature): Missing or invalid")
    assert problem.details["status"] == 401
    assert "deadbeef" not in row_text(problem)
    assert "order.status_changed" not in row_text(problem)


def test_a_bad_webhook_payload_names_its_field(post_webhook, queued):
    response = post_webhook({"event": "order.status_changed", "entityType": "Order"})
    assert response.status_code == 400

    (problem,) = refused()
    assert "400 (invalid_payload, field entityId)" in problem.message


def test_a_refused_callback_names_the_api_client_and_links_to_it(make_token):
    from ledger_sync.models import ApiClient

    token = make_token("payments", name="bank-connector")
    response = Client().post(
        "/api/payments/",
        data=wire.dumps({"externalId": "PAY-1", "amount": "abc"}),
        content_type="application/json",
        headers=bearer(token),
    )
    assert response.status_code == 400

    (problem,) = refused()
    client = ApiClient.objects.get(name="bank-connector")
    assert problem.record_label == "POST /api/payments/ from API client bank-connector"
    assert problem.fix_url == f"/admin/ledger_sync/apiclient/{client.pk}/change/"
    assert problem.details["field"] == response.json()["error"]["field"]
    assert token not in row_text(problem)
    assert token.split(".")[1] not in row_text(problem)


def test_a_wrong_token_is_an_unauthenticated_caller_and_the_token_is_not_kept():
    response = Client().post(
        "/api/payments/", data="{}", content_type="application/json", headers=bearer("abc.def")
    )
    assert response.status_code == 401

    (problem,) = refused()
    assert "from an unauthenticated caller" in problem.record_label
    assert problem.fix_url == ""
    assert "abc.def" not in row_text(problem)


def test_requests_for_different_ids_fold_per_endpoint_not_per_path(make_token):
    token = make_token("payments")
    for external_id in ("PAY-404-A", "PAY-404-B"):
        response = Client().get(f"/api/payments/{external_id}/", headers=bearer(token))
        assert response.status_code == 404

    (problem,) = refused()
    assert problem.count == 2
    assert "PAY-404" not in problem.key


def test_an_accepted_request_reports_nothing(post_webhook, queued):
    from tests.ledger_sync.api.conftest import order_event

    assert post_webhook(order_event()).status_code == 200

    assert refused() == []


def test_a_failure_to_record_never_changes_the_answer(post_webhook, queued, monkeypatch):
    from ledger_sync.services import problems

    def broken(**kwargs):
        raise RuntimeError("queue down")

    monkeypatch.setattr(problems, "problem_report", broken)

    response = post_webhook({"event": "x"}, signature="sha256=00")

    assert response.status_code == 401
    assert refused() == []
