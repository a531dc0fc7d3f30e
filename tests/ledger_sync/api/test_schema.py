"""The OpenAPI schema and a bounded schemathesis run against the app itself (WSGI, no server):
no 5xx, and every answer is one the schema documents (status, content type, body)."""

from __future__ import annotations

import pytest
import schemathesis
from django.core.cache import cache
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import Client
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from config.wsgi import application
from ledger_sync.services.api_clients import api_client_create

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


# Loaded through the WSGI app itself at collection (the schema view touches no database).
schema = schemathesis.openapi.from_wsgi("/api/schema/", application)


@pytest.fixture(autouse=True)
def _keep_the_test_connection():
    """Like Django's test client: a request must not close the test's database connection
    (calling the WSGI app directly would, at request end, on PostgreSQL)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def full_token(db) -> str:
    return api_client_create(name="fuzzer", permissions=["payments", "invoices"]).token


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_no_server_error_and_every_answer_matches_the_schema(case, full_token):
    cache.clear()  # the fuzzer must meet validation, not the throttle
    case.call_and_validate(headers={"Authorization": f"Bearer {full_token}"}, checks=CHECKS)


@schema.parametrize()
@settings(max_examples=5, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@pytest.mark.django_db
def test_without_credentials_every_answer_matches_the_schema(case):
    case.call_and_validate(checks=CHECKS)


@pytest.mark.django_db
def test_the_schema_documents_the_endpoints_and_the_error_body():
    document = Client().get("/api/schema/", HTTP_ACCEPT="application/json").json()

    assert {"/api/webhooks/atlas/", "/api/payments/", "/api/invoices/"} <= set(document["paths"])
    assert "/api/payments/{external_id}/" in document["paths"]
    error = document["components"]["schemas"]["Error"]
    assert error["properties"]["error"]["$ref"].endswith("/ErrorDetail")
    payment = document["paths"]["/api/payments/"]["post"]
    assert {"202", "200", "409", "422", "401", "403", "413"} <= set(payment["responses"])
    assert document["components"]["securitySchemes"]["ApiClientToken"]["scheme"] == "bearer"


@pytest.mark.django_db
def test_interactive_docs_are_served_without_a_cdn():
    page = Client().get("/api/docs/").content.decode()

    assert "swagger-ui" in page
    assert "cdn.jsdelivr" not in page and "unpkg.com" not in page
    assert "/static/drf_spectacular_sidecar/" in page
