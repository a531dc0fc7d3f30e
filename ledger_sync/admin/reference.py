"""Back office for the Gotransverse reference data (read-only) and the posting settings.

The ledger, calendar and chart are owned by the AR Ledger: they are shown, never edited here (a
change would be overwritten by the next mirror pass). The posting settings are ours and only a
user holding `ledger_sync.change_postingsettings` (finance leads) may change them; everyone else
with view permission sees them read-only.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django_q.tasks import async_task

from ledger_sync.admin.mirror import change_history_table, raw_json_block
from ledger_sync.admin.readonly import ReadOnlyPermissions, SuperuserOnlyFields
from ledger_sync.models import (
    AccountingPeriod,
    AccountingYear,
    ClosedPeriodPolicy,
    GLAccount,
    Ledger,
    PostingSettings,
    PostingSettingsChange,
    SyncRun,
)
from ledger_sync.selectors.reference import (
    gotransverse_record_history,
    period_landings_for_closed,
)
from ledger_sync.services.posting_settings import (
    EDITABLE_FIELDS,
    PostingSettingsInvalid,
    posting_settings_problems,
    posting_settings_update,
    posting_settings_validate,
)

SYNC_TASK = "ledger_sync.tasks.sync_gotransverse_task"

_BADGE = (
    '<span style="display:inline-block;padding:1px 8px;border-radius:8px;'
    'color:#fff;background:{};font-weight:600">{}</span>'
)


def _badge(colour: str, text: str) -> SafeString:
    return format_html(_BADGE, colour, text)


MIRROR_FIELDS = ("sync_state", "sync_error", "first_seen_at", "last_seen_at", "last_changed_at")


class MirroredReadOnlyAdmin(SuperuserOnlyFields, ReadOnlyPermissions, admin.ModelAdmin):
    """Read-only: the AR Ledger is the system of record for these rows."""

    superuser_only_fields = ("raw_json_pretty",)

    show_full_result_count = False  # a COUNT(*) per page view is what times large lists out

    @admin.display(description="Raw JSON (as Gotransverse last sent it)")
    def raw_json_pretty(self, obj: Any) -> SafeString:
        return raw_json_block(obj.raw_json)

    @admin.display(description="Change history")
    def change_history(self, obj: Any) -> SafeString:
        return change_history_table(
            gotransverse_record_history(
                entity=type(obj).__name__, gotransverse_id=obj.gotransverse_id
            )
        )


@admin.register(Ledger)
class LedgerAdmin(MirroredReadOnlyAdmin):
    list_display = (
        "gotransverse_id",
        "name",
        "conversion_currency",
        "convert_currency",
        "status",
        "create_zero_amount_entries",
        "sync_state",
        "last_seen_at",
    )
    list_filter = ("status", "sync_state")
    search_fields = ("name", "=gotransverse_id")
    readonly_fields = (
        "gotransverse_id",
        "name",
        "description",
        "status",
        "convert_currency",
        "conversion_currency",
        "conversion_rate_set_id",
        "currency_exchange_version",
        "chart_of_account_id",
        "rule_set_id",
        "timezone_name",
        "create_zero_amount_entries",
        "is_valid",
        *MIRROR_FIELDS,
        "change_history",
        "raw_json_pretty",
    )
    exclude = ("raw_json", "content_hash")
    actions = ("sync_now",)

    @admin.action(description="Sync the Gotransverse reference data now")
    def sync_now(self, request: HttpRequest, queryset: QuerySet) -> None:
        # Queued, never run in the request: a pass reads every page of the chart. The task
        # mirrors the configured ledger (GOTRANSVERSE_LEDGER_ID), whichever rows were selected.
        transaction.on_commit(lambda: async_task(SYNC_TASK, SyncRun.Trigger.ADMIN))
        self.message_user(
            request,
            "Queued a Gotransverse reference-data pass; its result appears under sync runs.",
            messages.SUCCESS,
        )


@admin.register(AccountingYear)
class AccountingYearAdmin(MirroredReadOnlyAdmin):
    list_display = (
        "name",
        "ledger",
        "start_date",
        "end_date",
        "is_open",
        "is_complete",
        "sync_state",
    )
    list_filter = ("ledger", "is_open", "sync_state")
    list_select_related = ("ledger",)
    # By name, or by the AR Ledger's id (exact: an id is never matched by its digits).
    search_fields = ("name", "=gotransverse_id")
    readonly_fields = (
        "ledger",
        "gotransverse_id",
        "name",
        "description",
        "year",
        "start_date",
        "end_date",
        "is_open",
        "is_complete",
        *MIRROR_FIELDS,
        "change_history",
        "raw_json_pretty",
    )
    exclude = ("raw_json", "content_hash")


@admin.register(AccountingPeriod)
class AccountingPeriodAdmin(MirroredReadOnlyAdmin):
    list_display = (
        "name",
        "open_badge",
        "start_date",
        "end_date",
        "quarter",
        "year",
        "ledger",
        "sync_state",
    )
    list_filter = ("is_open", "year", "ledger", "sync_state")
    list_select_related = ("year", "ledger")
    date_hierarchy = "start_date"
    search_fields = ("name", "=gotransverse_id")
    readonly_fields = (
        "ledger",
        "year",
        "gotransverse_id",
        "name",
        "description",
        "quarter",
        "start_date",
        "end_date",
        "open_badge",
        "status",
        *MIRROR_FIELDS,
        "change_history",
        "raw_json_pretty",
    )
    exclude = ("raw_json", "content_hash", "is_open")

    @admin.display(description="Open", ordering="is_open")
    def open_badge(self, obj: AccountingPeriod) -> SafeString:
        return _badge("#2e7d32", "OPEN") if obj.is_open else _badge("#c62828", "CLOSED")


@admin.register(GLAccount)
class GLAccountAdmin(MirroredReadOnlyAdmin):
    list_display = (
        "number",
        "name",
        "type",
        "designation",
        "designation_category",
        "is_posting_account",
        "status",
        "sync_state",
    )
    list_filter = ("type", "designation", "is_posting_account", "status", "sync_state")
    search_fields = ("number", "name")
    readonly_fields = (
        "gotransverse_id",
        "number",
        "name",
        "description",
        "type",
        "designation",
        "designation_category",
        "is_posting_account",
        "status",
        "chart_of_account_ids",
        *MIRROR_FIELDS,
        "change_history",
        "raw_json_pretty",
    )
    exclude = ("raw_json", "content_hash")


class PostingSettingsForm(forms.ModelForm):
    """Validates through the service, so the admin and every other caller share one rule."""

    class Meta:
        model = PostingSettings
        fields = EDITABLE_FIELDS

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        values = {name: cleaned.get(name) for name in EDITABLE_FIELDS if name in cleaned}
        try:
            cleaned.update(posting_settings_validate(values))
        except PostingSettingsInvalid as invalid:
            for name, message in invalid.errors.items():
                self.add_error(name if name in self.fields else None, message)
        return cleaned


@admin.register(PostingSettings)
class PostingSettingsAdmin(admin.ModelAdmin):
    form = PostingSettingsForm
    fieldsets = (
        (
            "Control accounts (GL account numbers of the Gotransverse chart)",
            {
                "fields": (
                    "receivables_account",
                    "payables_account",
                    "output_vat_account",
                    "input_vat_account",
                    "bank_account",
                    "control_account_problems",
                )
            },
        ),
        (
            "Default accounts (for an item whose own and counterparty's accounts do not fit)",
            {"fields": ("default_revenue_account", "default_expense_account")},
        ),
        ("Journal workflow", {"fields": ("journal_workflow",)}),
        ("Closed periods", {"fields": ("closed_period_policy", "closed_period_landings")}),
        ("Changes", {"fields": ("updated_by", "updated_at", "change_history")}),
    )
    readonly_fields = (
        "control_account_problems",
        "closed_period_landings",
        "updated_by",
        "updated_at",
        "change_history",
    )

    # One row, created from the environment on first use: no adding, no deleting.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if not self.has_view_or_change_permission(request):
            return super().changelist_view(request, extra_context)  # answers 403
        row = PostingSettings.load()
        return HttpResponseRedirect(
            reverse("admin:ledger_sync_postingsettings_change", args=[row.pk])
        )

    def save_model(
        self, request: HttpRequest, obj: PostingSettings, form: forms.ModelForm, change: bool
    ) -> None:
        # The service, not form.save(), writes the row: it locks it and records the history.
        changes = {name: form.cleaned_data[name] for name in EDITABLE_FIELDS}
        posting_settings_update(user=request.user, **changes)
        obj.refresh_from_db()

    @admin.display(description="Checked against the mirrored chart")
    def control_account_problems(self, obj: PostingSettings) -> SafeString:
        problems = posting_settings_problems(obj)
        if not problems:
            return _badge("#2e7d32", "All control accounts are active posting accounts")
        return format_html_join(
            "", '<p style="color:#c62828">{}</p>', ((p,) for p in problems.values())
        )

    @admin.display(description="Where a transaction dated in a closed period lands")
    def closed_period_landings(self, obj: PostingSettings) -> SafeString:
        ledger = Ledger.objects.filter(gotransverse_id=_configured_ledger_id()).first()
        if ledger is None:
            return format_html(
                "Ledger {} has not been mirrored yet; "
                "run <code>manage.py sync_gotransverse</code>.",
                settings.GOTRANSVERSE_LEDGER_ID,
            )
        landings = period_landings_for_closed(ledger=ledger)
        if not landings:
            return format_html("No period of {} is closed.", ledger)
        blocking = obj.closed_period_policy == ClosedPeriodPolicy.BLOCK
        rows = []
        for landing in landings:
            target = landing.landing.name if landing.landing else "nowhere"
            if landing.landing is None:
                effect = f"blocked ({landing.problem}): a person must fix it in Gotransverse"
            elif blocking:
                effect = f"blocked for review (the ledger would post it into {target})"
            else:
                effect = f"posted into {target}"
            rows.append(
                (
                    landing.period.name,
                    f"{landing.period.start_date:%Y-%m-%d} to {landing.period.end_date:%Y-%m-%d}",
                    target,
                    effect,
                )
            )
        body = format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", rows)
        return format_html(
            "<table><thead><tr><th>Closed period</th><th>Dates</th><th>The ledger posts into</th>"
            "<th>Under the current policy</th></tr></thead><tbody>{}</tbody></table>",
            body,
        )

    @admin.display(description="History")
    def change_history(self, obj: PostingSettings) -> SafeString:
        changes = PostingSettingsChange.objects.select_related("changed_by")[:50]
        if not changes:
            return format_html(
                "{}", "No change since the settings were created from the environment."
            )
        rows = (
            (
                f"{change.changed_at:%Y-%m-%d %H:%M}",
                change.changed_by.get_username() if change.changed_by else "—",
                "; ".join(
                    f"{name}: {before} → {after}"
                    for name, (before, after) in change.changes.items()
                ),
            )
            for change in changes
        )
        return format_html(
            "<table><thead><tr><th>When</th><th>Who</th><th>What</th></tr></thead>"
            "<tbody>{}</tbody></table>",
            format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td></tr>", rows),
        )


@admin.register(PostingSettingsChange)
class PostingSettingsChangeAdmin(ReadOnlyPermissions, admin.ModelAdmin):
    """The full history of the posting settings (the settings page shows the latest 50)."""

    list_display = ("changed_at", "changed_by", "what_changed")
    list_select_related = ("changed_by",)
    list_filter = ("changed_by",)
    date_hierarchy = "changed_at"
    readonly_fields = ("changed_at", "changed_by", "what_changed", "before", "after")
    exclude = ("changes",)

    @admin.display(description="Change")
    def what_changed(self, obj: PostingSettingsChange) -> str:
        return "; ".join(
            f"{name}: {before} → {after}" for name, (before, after) in obj.changes.items()
        )


def _configured_ledger_id() -> int | None:
    try:
        return int(settings.GOTRANSVERSE_LEDGER_ID)
    except (TypeError, ValueError):
        return None
