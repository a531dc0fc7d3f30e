"""Read-only admin pages: rows a remote system, a sync run or a service wrote, never typed in."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest


class ReadOnlyPermissions:
    """Nobody adds, edits or deletes these rows in the admin; actions call services instead.

    Works for a ModelAdmin (`has_add_permission(request)`) and an inline (`(request, obj)`).
    """

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReadOnlyAdmin(ReadOnlyPermissions, admin.ModelAdmin):
    """A read-only list that stays fast on large tables."""

    show_full_result_count = False  # a COUNT(*) per page view is what times large lists out
    list_per_page = 100


class SuperuserOnlyFields:
    """Raw payloads and tracebacks are for whoever runs the system (superusers): accountants
    and finance leads see the readable fields only, never JSON or a stack trace.

    Lists the readonly display fields to drop from everyone else's change page (filtered from
    the fieldsets, so it works whether the admin declares `fields`, `fieldsets` or computes
    them).
    """

    superuser_only_fields: tuple[str, ...] = ()

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        fieldsets = super().get_fieldsets(request, obj)  # type: ignore[misc]
        if request.user.is_superuser:
            return fieldsets
        hidden = set(self.superuser_only_fields)
        return [
            (name, {**options, "fields": [f for f in options["fields"] if f not in hidden]})
            for name, options in fieldsets
        ]
