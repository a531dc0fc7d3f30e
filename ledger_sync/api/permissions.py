"""What an API client may do: confirm payments, report invoices (set per client in the admin)."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission

from ledger_sync.models import ApiClient


class HasApiClientPermission(BasePermission):
    """The view names the permission it needs in `required_permission`."""

    message = "This API client is not allowed to use this endpoint."

    def has_permission(self, request: Any, view: Any) -> bool:
        client = request.auth
        if not isinstance(client, ApiClient):
            return False
        needed = getattr(view, "required_permission", None)
        if needed is None:
            return False
        if not client.has_permission(needed):
            self.message = (
                f"API client {client.name!r} does not have the '{needed}' permission; an "
                "administrator grants it in the admin (API clients)."
            )
            return False
        return True
