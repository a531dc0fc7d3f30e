"""Back office for sync runs (every pass against ATLAS or Gotransverse), their failed records
and the observed record changes. All read-only: they are the audit trail of what happened.

django-q2's own admin (Task queue → Failed tasks / Successful tasks / Scheduled tasks) stays
registered as django-q2 ships it: a task that crashed is listed there with its traceback.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from ledger_sync.admin.display import when
from ledger_sync.admin.mirror import raw_json_block
from ledger_sync.admin.readonly import ReadOnlyAdmin, SuperuserOnlyFields
from ledger_sync.models import RecordChange, SyncRun, SyncRunError
from ledger_sync.selectors.atlas import sync_run_errors
from ledger_sync.services.mirror_records import ATLAS_ENTITIES
from ledger_sync.services.sync_runs import OUTCOMES

ERRORS_SHOWN = 200
_STATUS_COLOURS = {
    SyncRun.Status.RUNNING: "#1565c0",
    SyncRun.Status.SUCCEEDED: "#2e7d32",
    SyncRun.Status.COMPLETED_WITH_ERRORS: "#ef6c00",
    SyncRun.Status.FAILED: "#c62828",
}


def _entity_order(item: tuple[str, Any]) -> tuple[int, str]:
    # PostgreSQL's jsonb does not keep key order: show ATLAS entities parents first.
    entity = item[0]
    position = ATLAS_ENTITIES.index(entity) if entity in ATLAS_ENTITIES else len(ATLAS_ENTITIES)
    return position, entity


class EntityFilter(admin.SimpleListFilter):
    """The entity names both mirrors use, from code: Django's default filter on a plain text
    column runs SELECT DISTINCT over the whole table on every page view."""

    title = "entity"
    parameter_name = "entity"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        from ledger_sync.services.mirror_records import GOTRANSVERSE_ENTITIES

        return [(name, name) for name in (*ATLAS_ENTITIES, *GOTRANSVERSE_ENTITIES)]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(entity=self.value()) if self.value() else queryset


class SystemFilter(admin.SimpleListFilter):
    title = "system"
    parameter_name = "system"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return list(SyncRun.System.choices)

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(system=self.value()) if self.value() else queryset


class SourceFilter(admin.SimpleListFilter):
    title = "source"
    parameter_name = "source"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("mirror", "Seen in the remote system"), ("write_back", "Sent by ledger_sync")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(source=self.value()) if self.value() else queryset


def _count_column(outcome: str) -> Any:
    @admin.display(description=outcome.capitalize())
    def column(self: Any, run: SyncRun) -> int:
        return run.total(outcome)

    column.__name__ = f"total_{outcome}"
    return column


@admin.register(SyncRun)
class SyncRunAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "system",
        "trigger",
        "status_badge",
        "started",
        "duration",
        "total_created",
        "total_updated",
        "total_failed",
        "api_calls",
    )  # narrow enough for 1,280 px; finished, unchanged and 429s are on the run's page
    list_filter = ("system", "status", "trigger")
    list_select_related = ("triggered_by",)
    date_hierarchy = "started_at"
    search_fields = ("=id", "error_message")
    fields = (
        "system",
        "trigger",
        "triggered_by",
        "status_badge",
        "started_at",
        "finished_at",
        "duration",
        "api_calls",
        "rate_limited",
        "error_message",
        "counts_table",
        "errors_table",
    )
    readonly_fields = fields

    total_created = _count_column("created")
    total_updated = _count_column("updated")
    total_unchanged = _count_column("unchanged")
    total_failed = _count_column("failed")

    @admin.display(description="429s", ordering="rate_limited")
    def rate_limited_429s(self, run: SyncRun) -> int:
        return run.rate_limited

    @admin.display(description="Status", ordering="status")
    def status_badge(self, run: SyncRun) -> SafeString:
        return format_html(
            '<span style="color:{};font-weight:600">{}</span>',
            _STATUS_COLOURS.get(run.status, "#333"),
            run.get_status_display(),
        )

    @admin.display(description="Started", ordering="started_at")
    def started(self, run: SyncRun) -> str:
        # Not the raw field: the admin never wraps a datetime cell, and 1,280 px has no room.
        return when(run.started_at)

    @admin.display(description="Duration")
    def duration(self, run: SyncRun) -> str:
        if run.finished_at is None:
            return "—"
        seconds = (run.finished_at - run.started_at).total_seconds()
        return f"{seconds:.1f}s" if seconds < 120 else f"{seconds / 60:.1f} min"

    @admin.display(description="Counts per entity")
    def counts_table(self, run: SyncRun) -> SafeString:
        if not run.counts:
            return format_html("<em>{}</em>", "Nothing counted.")
        head = format_html_join("", "<th>{}</th>", ((o.capitalize(),) for o in OUTCOMES))
        body = format_html_join(
            "",
            "<tr><td>{}</td>{}</tr>",
            (
                (
                    entity,
                    format_html_join("", "<td>{}</td>", ((counts.get(o, 0),) for o in OUTCOMES)),
                )
                for entity, counts in sorted(run.counts.items(), key=_entity_order)
            ),
        )
        return format_html(
            "<table><thead><tr><th>Entity</th>{}</tr></thead><tbody>{}</tbody></table>", head, body
        )

    @admin.display(description="Failed records")
    def errors_table(self, run: SyncRun) -> SafeString:
        errors = sync_run_errors(run=run, limit=ERRORS_SHOWN + 1)
        if not errors:
            return format_html("<em>{}</em>", "None.")
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
            ((e.entity, e.remote_id, e.field, e.message) for e in errors[:ERRORS_SHOWN]),
        )
        more = ""
        if len(errors) > ERRORS_SHOWN:
            more = format_html(
                '<p><a href="{}?sync_run__id__exact={}">All failed records of this run</a></p>',
                reverse("admin:ledger_sync_syncrunerror_changelist"),
                run.pk,
            )
        return format_html(
            "<table><thead><tr><th>Entity</th><th>Remote id</th><th>Field</th><th>Reason</th>"
            "</tr></thead><tbody>{}</tbody></table>{}",
            rows,
            more,
        )


@admin.register(SyncRunError)
class SyncRunErrorAdmin(SuperuserOnlyFields, ReadOnlyAdmin):
    superuser_only_fields = ("raw_json_pretty",)
    list_display = ("id", "sync_run", "entity", "remote_id", "field", "message", "created_at")
    list_filter = (EntityFilter,)
    list_select_related = ("sync_run",)
    search_fields = ("=remote_id", "message", "=sync_run__id")
    fields = (
        "sync_run",
        "entity",
        "remote_id",
        "field",
        "message",
        "raw_json_pretty",
        "created_at",
    )
    readonly_fields = fields

    @admin.display(description="Raw JSON (as the remote system sent it)")
    def raw_json_pretty(self, error: SyncRunError) -> SafeString:
        return raw_json_block(error.raw_json)


@admin.register(RecordChange)
class RecordChangeAdmin(ReadOnlyAdmin):
    list_display = ("changed_at", "system", "entity", "remote_id", "changed_fields", "sync_run")
    list_filter = (SystemFilter, EntityFilter, SourceFilter)
    list_select_related = ("sync_run",)
    search_fields = ("=remote_id",)
    fields = ("system", "entity", "remote_id", "source", "changed_at", "sync_run", "changes")
    readonly_fields = fields

    @admin.display(description="Fields")
    def changed_fields(self, change: RecordChange) -> str:
        return ", ".join(sorted(change.changes)) if isinstance(change.changes, dict) else ""
