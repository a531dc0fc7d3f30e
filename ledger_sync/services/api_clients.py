"""API clients of the REST API (the ERP, the bank): tokens issued once, stored as hashes,
rotated and authenticated in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from ledger_sync.errors import ApplicationError
from ledger_sync.models import (
    ApiClient,
)

TOKEN_PREFIX_BYTES = 4  # 8 hex characters, shown in the admin to tell tokens apart


@dataclass(frozen=True)
class IssuedToken:
    client: ApiClient
    token: str  # shown once; only its hash is stored


def api_token_hash(secret: str) -> str:
    # The secret is 256 random bits: unguessable, so a fast hash is enough, and every request
    # can afford to compute it (a password hash would cost ~100 ms per call).
    return hashlib.sha256(secret.encode()).hexdigest()


@transaction.atomic
def api_client_create(
    *, name: str, permissions: list[str] | tuple[str, ...], notes: str = ""
) -> IssuedToken:
    """A new API client and its token `<prefix>.<secret>`, returned once and never again."""
    unknown = set(permissions) - set(ApiClient.Permission.values)
    if unknown:
        raise ApplicationError(
            f"Unknown permission(s) {sorted(unknown)}; use {ApiClient.Permission.values}.",
            details={"field": "permissions"},
        )
    name = name.strip()
    if not name:
        raise ApplicationError("An API client needs a name.", details={"field": "name"})
    if ApiClient.objects.filter(name=name).exists():
        raise ApplicationError(
            f"An API client named {name!r} already exists.", details={"field": "name"}
        )
    client = ApiClient(
        name=name,
        can_confirm_payments=ApiClient.Permission.PAYMENTS in permissions,
        can_report_invoices=ApiClient.Permission.INVOICES in permissions,
        notes=notes,
    )
    token = _token_assign(client)
    client.save()
    return IssuedToken(client=client, token=token)


@transaction.atomic
def api_client_rotate_token(*, client: ApiClient) -> IssuedToken:
    """A new token for an existing client; the old one stops working at once."""
    token = _token_assign(client)
    client.save(update_fields=["token_prefix", "token_hash"])
    return IssuedToken(client=client, token=token)


def _token_assign(client: ApiClient) -> str:
    while True:
        prefix = secrets.token_hex(TOKEN_PREFIX_BYTES)
        if not ApiClient.objects.filter(token_prefix=prefix).exists():
            break
    secret = secrets.token_urlsafe(32)
    client.token_prefix = prefix
    client.token_hash = api_token_hash(secret)
    return f"{prefix}.{secret}"


def api_client_authenticate(*, token: str, now: datetime | None = None) -> ApiClient | None:
    """The active client whose token this is, or None. The secret's hash is compared in
    constant time; a wrong prefix and a wrong secret look the same to the caller."""
    prefix, _, secret = token.strip().partition(".")
    if not prefix or not secret or len(prefix) > 16:
        return None
    client = ApiClient.objects.filter(token_prefix=prefix, is_active=True).first()
    expected = client.token_hash if client is not None else "0" * 64
    valid = hmac.compare_digest(api_token_hash(secret).encode(), expected.encode())
    if client is None or not valid:
        return None
    now = now or timezone.now()
    # At most one write a minute per client, not one per request.
    ApiClient.objects.filter(pk=client.pk).filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - timedelta(minutes=1))
    ).update(last_used_at=now)
    return client
