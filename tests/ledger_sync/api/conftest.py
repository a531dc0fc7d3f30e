"""Fixtures of the inbound API tests: signed webhooks, API client tokens, fresh throttles."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client

from integration import wire
from ledger_sync.services import inbound
from ledger_sync.services.api_clients import api_client_create

WEBHOOK_URL = "/api/webhooks/atlas/"


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def order_event(entity_id: int = 210, **overrides: Any) -> dict[str, Any]:
    """The guide's webhook payload."""
    return {
        "event": "order.status_changed",
        "entityType": "Order",
        "entityId": entity_id,
        "newStatus": "Approved order by ETRM",
        "timestamp": "2026-04-01T08:30:00Z",
        **overrides,
    }


@pytest.fixture(autouse=True)
def _fresh_throttles() -> None:
    # Throttle history lives in the cache: one test's requests must not count against another's.
    cache.clear()


@pytest.fixture
def queued(monkeypatch) -> list[int]:
    """Delivery ids the webhook queued for processing (the task itself is not run)."""
    ids: list[int] = []
    monkeypatch.setattr(inbound, "_enqueue_delivery", ids.append)
    return ids


@pytest.fixture
def post_webhook(settings) -> Callable[..., Any]:
    def post(
        payload: Any = None,
        *,
        body: bytes | None = None,
        signature: str | None = "valid",
        secret: str | None = None,
        headers: dict[str, str] | None = None,
        client: Client | None = None,
    ) -> Any:
        raw = body if body is not None else wire.dumps(payload).encode()
        extra = dict(headers or {})
        if signature == "valid":
            extra["X-Atlas-Signature"] = sign(raw, secret or settings.ATLAS_WEBHOOK_SECRET)
        elif signature is not None:
            extra["X-Atlas-Signature"] = signature
        return (client or Client()).post(
            WEBHOOK_URL, data=raw, content_type="application/json", headers=extra
        )

    return post


@pytest.fixture
def make_token(db) -> Callable[..., str]:
    """make_token("payments", "invoices", name=...) → a bearer token of a new API client."""
    counter = iter(range(1, 1000))

    def make(*permissions: str, name: str | None = None) -> str:
        issued = api_client_create(
            name=name or f"client-{next(counter)}", permissions=list(permissions)
        )
        return issued.token

    return make


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
