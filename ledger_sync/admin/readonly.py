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
