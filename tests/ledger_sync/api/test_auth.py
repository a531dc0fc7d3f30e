"""API clients: token shown once and stored hashed, permissions per client, throttling."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.test import Client

from integration import wire
from ledger_sync.models import ApiClient
from ledger_sync.services.api_clients import api_client_authenticate, api_client_rotate_token
from tests.ledger_sync.api.conftest import bearer

pytestmark = pytest.mark.django_db

BODY = wire.dumps(
    {
        "externalId": "PAY-1",
        "invoiceExternalId": "INV-NOBODY",
        "amount": "10.00",
        "currency": "EUR",
        "paymentDate": "2026-01-01",
    }
).encode()


def post(url: str, headers: dict[str, str] | None = None):
    return Client().post(url, data=BODY, content_type="application/json", headers=headers or {})


def test_no_token_is_refused_with_401_and_a_bearer_challenge():
    response = post("/api/payments/")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "header",
    ["Bearer nonsense", "Bearer abcd1234.wrong-secret", "Basic dXNlcjpwYXNz", "Bearer"],
)
def test_a_bad_token_is_refused_with_401(make_token, header):
    make_token("payments")

    response = post("/api/payments/", {"Authorization": header})

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"


def test_the_right_prefix_with_a_wrong_secret_is_refused(make_token):
    token = make_token("payments")
    prefix = token.split(".")[0]

    assert post("/api/payments/", bearer(f"{prefix}.not-the-secret")).status_code == 401


def test_an_inactive_client_is_refused(make_token):
    token = make_token("payments")
    ApiClient.objects.update(is_active=False)

    assert post("/api/payments/", bearer(token)).status_code == 401


def test_a_client_without_the_permission_is_refused_with_403(make_token):
    invoices_only = make_token("invoices", name="erp")
    payments_only = make_token("payments", name="bank")

    on_payments = post("/api/payments/", bearer(invoices_only))
    on_invoices = post("/api/invoices/", bearer(payments_only))
    on_status = Client().get("/api/payments/PAY-1/", headers=bearer(invoices_only))

    assert on_payments.status_code == 403
    assert on_payments.json()["error"]["code"] == "permission_denied"
    assert "'payments' permission" in on_payments.json()["error"]["message"]
    assert on_invoices.status_code == 403
    assert on_status.status_code == 403


def test_a_client_with_the_permission_gets_through_to_validation(make_token):
    token = make_token("payments")

    response = post("/api/payments/", bearer(token))

    assert response.status_code == 422  # the invoice is unknown: auth passed
    assert ApiClient.objects.get().last_used_at is not None


def test_only_a_hash_of_the_token_is_stored(make_token):
    token = make_token("payments")
    client = ApiClient.objects.get()

    stored = [str(getattr(client, f.attname)) for f in ApiClient._meta.fields]
    assert not any(token.split(".")[1] in value for value in stored)
    assert client.token_prefix == token.split(".")[0]
    assert api_client_authenticate(token=token) == client


def test_rotating_the_token_stops_the_old_one(make_token):
    old = make_token("payments")
    new = api_client_rotate_token(client=ApiClient.objects.get()).token

    assert api_client_authenticate(token=old) is None
    assert api_client_authenticate(token=new) is not None


def test_the_command_prints_the_token_once_and_it_works():
    out, err = io.StringIO(), io.StringIO()

    call_command("create_api_client", "erp", "--permission", "invoices", stdout=out, stderr=err)

    token = out.getvalue().strip()
    client = api_client_authenticate(token=token)
    assert client is not None and client.name == "erp"
    assert (client.can_report_invoices, client.can_confirm_payments) == (True, False)
    assert token not in err.getvalue()


def test_each_client_is_throttled_on_its_own(make_token, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"payments": "2/min", "invoices": "2/min", "status": "2/min"},
    }
    busy = make_token("payments", name="busy")
    quiet = make_token("payments", name="quiet")

    answers = [post("/api/payments/", bearer(busy)).status_code for _ in range(3)]
    other = post("/api/payments/", bearer(quiet)).status_code

    assert answers == [422, 422, 429]
    assert other == 422


def test_the_admin_shows_a_new_clients_token_once(admin_client):
    response = admin_client.post(
        "/admin/ledger_sync/apiclient/add/",
        {"name": "bank", "can_confirm_payments": "on", "is_active": "on", "notes": ""},
    )

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    client = ApiClient.objects.get()
    page = response.content.decode()
    token = page.split('user-select:all">')[1].split("<")[0]
    assert api_client_authenticate(token=token) == client
    change = admin_client.get(f"/admin/ledger_sync/apiclient/{client.pk}/change/")
    assert token.split(".")[1] not in change.content.decode()


def test_production_settings_refuse_plain_http_on_the_api(monkeypatch):
    import importlib
    import re

    monkeypatch.setenv("SECRET_KEY", "a-production-secret-for-this-test-only")
    monkeypatch.setenv("ATLAS_WEBHOOK_SECRET", "a-webhook-secret-for-this-test-only")
    production = importlib.reload(importlib.import_module("config.settings.production"))

    assert production.API_REQUIRE_HTTPS is True
    assert production.SECURE_SSL_REDIRECT is True
    assert any(re.search(p, "api/payments/") for p in production.SECURE_REDIRECT_EXEMPT)


@pytest.mark.parametrize("secret", [None, "sandbox-webhook-secret", "short"])
def test_production_settings_require_a_real_webhook_secret(monkeypatch, secret):
    import importlib

    from django.core.exceptions import ImproperlyConfigured

    monkeypatch.setenv("SECRET_KEY", "a-production-secret-for-this-test-only")
    if secret is None:
        monkeypatch.delenv("ATLAS_WEBHOOK_SECRET", raising=False)
    else:
        monkeypatch.setenv("ATLAS_WEBHOOK_SECRET", secret)
    module = importlib.import_module("config.settings.production")

    with pytest.raises(ImproperlyConfigured):
        importlib.reload(module)


def test_with_https_required_the_api_answers_403_where_the_site_redirects(make_token, settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_REDIRECT_EXEMPT = [r"^api/"]
    settings.API_REQUIRE_HTTPS = True
    token = make_token("payments")

    plain = post("/api/payments/", bearer(token))
    admin = Client().get("/admin/")
    secure = Client().post(
        "/api/payments/",
        data=BODY,
        content_type="application/json",
        headers=bearer(token),
        secure=True,
    )

    assert plain.status_code == 403
    assert plain.json()["error"]["code"] == "https_required"
    assert admin.status_code == 301
    assert secure.status_code == 422  # through to validation
