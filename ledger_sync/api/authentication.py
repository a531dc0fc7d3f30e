"""Token authentication of API clients (ERP, bank connector): `Authorization: Bearer <token>`.

Each client has its own token, shown once when the client is created; only its hash is stored
and compared in constant time (services/inbound.py). A missing or bad token → 401 with
`WWW-Authenticate: Bearer`.
"""

from __future__ import annotations

from typing import Any

from rest_framework import authentication, exceptions

from ledger_sync.models import ApiClient
from ledger_sync.services.api_clients import api_client_authenticate


class ApiClientUser:
    """What request.user is for an API client: authenticated, never staff, keyed for throttling
    by the client (not by IP address)."""

    is_authenticated = True
    is_anonymous = False
    is_staff = False
    is_superuser = False

    def __init__(self, client: ApiClient):
        self.client = client
        self.pk = f"api-client-{client.pk}"

    def __str__(self) -> str:
        return f"API client {self.client.name}"


class ApiClientTokenAuthentication(authentication.BaseAuthentication):
    keywords = ("bearer", "token")

    def authenticate(self, request: Any) -> tuple[ApiClientUser, ApiClient] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        keyword, _, token = header.partition(" ")
        if keyword.lower() not in self.keywords or not token.strip() or " " in token.strip():
            raise exceptions.AuthenticationFailed(
                "Send the API client's token as 'Authorization: Bearer <token>'."
            )
        client = api_client_authenticate(token=token)
        if client is None:
            raise exceptions.AuthenticationFailed("Invalid or inactive API token.")
        return ApiClientUser(client), client

    def authenticate_header(self, request: Any) -> str:
        return 'Bearer realm="ledger_sync"'


try:  # The OpenAPI schema names the scheme (drf-spectacular discovers this subclass).
    from drf_spectacular.extensions import OpenApiAuthenticationExtension

    class ApiClientTokenScheme(OpenApiAuthenticationExtension):
        target_class = ApiClientTokenAuthentication
        name = "ApiClientToken"

        def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
            return {
                "type": "http",
                "scheme": "bearer",
                "description": "The API client's token, shown once when the client was "
                "created in the admin or with `manage.py create_api_client`.",
            }
except ImportError:  # pragma: no cover - drf-spectacular is a dependency
    pass
