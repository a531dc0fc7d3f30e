"""Per-client throttling: each API client has its own budget per scope (settings:
REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], e.g. "payments": "600/min")."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from rest_framework.settings import api_settings
from rest_framework.throttling import ScopedRateThrottle


class ApiClientScopedThrottle(ScopedRateThrottle):
    """ScopedRateThrottle keyed by the authenticated API client (request.user.pk is
    "api-client-<id>"), falling back to the address for unauthenticated calls."""

    def get_cache_key(self, request: Any, view: Any) -> str:
        user = getattr(request, "user", None)
        if user is not None and getattr(user, "is_authenticated", False):
            ident = str(user.pk)
        else:
            ident = self.get_ident(request)
        return self.cache_format % {"scope": self.scope, "ident": ident}

    def get_rate(self) -> str | None:
        # Read at each request (DRF binds the rates when the class is imported), so a changed
        # setting applies without a restart of the test process or a reload.
        try:
            return api_settings.DEFAULT_THROTTLE_RATES[self.scope]
        except KeyError:
            raise ImproperlyConfigured(f"No throttle rate set for scope {self.scope!r}") from None
