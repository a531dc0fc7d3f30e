"""The error queue: every problem in one list, with a link to the exact record that fixes it.

Accountants and finance leads work it: assign to me, resolve, ignore, reopen (each asks for a
confirmation first), a note and an assignee on the problem's page, and CSV/XLSX export of what
the filters show. Rows are written by services/problems.py only (reports and refreshes);
nothing here is typed in, and the list never refreshes the queue itself: a page view is a
handful of queries whatever the size of the queue.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import Truncator
from django.utils.translation import ngettext
from import_export import fields, resources
from import_export.admin import ExportMixin
from import_export.formats import base_formats

from integration import wire
from ledger_sync.models import Problem
from ledger_sync.services.problems import (
    CHANGE_PERMISSION,
    problem_update,
    problems_assign,
    problems_ignore,
    problems_reopen,
    problems_resolve,
)

S = Problem.Status
DATETIME = "%Y-%m-%d %H:%M"
_STATUS_COLOURS = {S.OPEN: "#c62828", S.RESOLVED: "#2e7d32", S.IGNORED: "#777"}


class StatusFilter(admin.SimpleListFilter):
    """Open problems unless asked otherwise: the queue is what still needs a person."""

    title = "status"
    parameter_name = "status"
    ALL = "all"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [*S.choices, (self.ALL, "All")]

    def value(self) -> str:
        return super().value() or S.OPEN

    def choices(self, changelist: Any) -> Any:
        for lookup, title in self.lookup_choices:
            yield {
                "selected": self.value() == lookup,
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        return queryset if value == self.ALL else queryset.filter(status=value)


class AssigneeFilter(admin.SimpleListFilter):
    """Mine or nobody's: no list of every user (no query, however many users there are)."""

    title = "assignee"
    parameter_name = "assignee"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("me", "Assigned to me"), ("nobody", "Assigned to nobody")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "me":
            return queryset.filter(assignee=request.user)
        if self.value() == "nobody":
            return queryset.filter(assignee__isnull=True)
        return queryset


class ProblemResource(resources.ModelResource):
    """The queue as a person reads it: labels, not codes; dates without seconds."""

    kind = fields.Field(attribute="get_kind_display", column_name="Type")
    record = fields.Field(attribute="record_label", column_name="Record")
    message = fields.Field(attribute="message", column_name="Message")
    first_seen = fields.Field(column_name="First seen (UTC)")
    last_seen = fields.Field(column_name="Last seen (UTC)")
    count = fields.Field(attribute="count", column_name="Count")
    status = fields.Field(attribute="get_status_display", column_name="Status")
    assignee = fields.Field(column_name="Assignee")
    note = fields.Field(attribute="note", column_name="Note")
    fix_link = fields.Field(attribute="fix_url", column_name="Fix link")

    class Meta:
        model = Problem
        fields = (
            "kind",
            "record",
            "message",
            "first_seen",
            "last_seen",
            "count",
            "status",
            "assignee",
            "note",
            "fix_link",
        )
        export_order = fields

    def dehydrate_first_seen(self, problem: Problem) -> str:
        return f"{problem.first_seen_at:{DATETIME}}"

    def dehydrate_last_seen(self, problem: Problem) -> str:
        return f"{problem.last_seen_at:{DATETIME}}"

    def dehydrate_assignee(self, problem: Problem) -> str:
        return problem.assignee.get_username() if problem.assignee_id else ""


def _confirm(
    modeladmin: ProblemAdmin,
    request: HttpRequest,
    queryset: QuerySet,
    *,
    action: str,
    verb: str,
    apply: Any,
) -> TemplateResponse | None:
    """Ask first; on "yes", apply and say how many changed, with the right plural."""
    if request.POST.get("confirmed") != "yes":
        problems = list(queryset.select_related("assignee")[:201])
        return TemplateResponse(
            request,
            "admin/ledger_sync/problem/confirm_action.html",
            {
                **modeladmin.admin_site.each_context(request),
                "title": _question(verb, len(queryset)),
                "verb": verb,
                "past": _past(verb),
                "count_text": _plural(len(queryset)).capitalize(),
                "problems": problems[:200],
                "more": len(problems) > 200,
                "pks": list(queryset.values_list("pk", flat=True)),
                "action": action,
                "opts": modeladmin.model._meta,
                "action_checkbox_name": ACTION_CHECKBOX_NAME,
            },
        )
    changed = apply(problems=queryset, user=request.user)
    skipped = len(queryset) - changed
    text = ngettext("%(n)d problem %(done)s.", "%(n)d problems %(done)s.", changed) % {
        "n": changed,
        "done": _past(verb),
    }
    if skipped:
        text += " " + ngettext(
            "%(n)d was already so and left as it was.",
            "%(n)d were already so and left as they were.",
            skipped,
        ) % {"n": skipped}
    if verb == "resolve" and changed:
        text += (
            " A problem whose source still shows it (an order still blocked, say) reopens at"
            " the next refresh: fix it at its link."
        )
    modeladmin.message_user(request, text, messages.SUCCESS)
    return None


def _plural(n: int) -> str:
    return ngettext("%(n)d problem", "%(n)d problems", n) % {"n": n}


def _question(verb: str, n: int) -> str:
    if verb == "assign to me":
        return f"Assign {_plural(n)} to you?"
    return f"{verb.capitalize()} {_plural(n)}?"


def _past(verb: str) -> str:
    return {
        "assign to me": "assigned to you",
        "resolve": "resolved",
        "ignore": "ignored",
        "reopen": "reopened",
    }[verb]


@admin.register(Problem)
class ProblemAdmin(ExportMixin, admin.ModelAdmin):
    # Few, wide columns: the page reads at 1,280 px without scrolling sideways.
    list_display = (
        "problem_column",
        "seen",
        "status_and_assignee",
    )
    list_display_links = None  # the problem column links its page and the fixing record
    list_filter = ("kind", StatusFilter, AssigneeFilter)
    list_select_related = ("assignee",)
    search_fields = ("record_label", "message")
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER  # a count per filter option is a query per option
    list_per_page = 100
    actions = ("assign_to_me", "resolve", "ignore", "reopen")
    resource_classes = [ProblemResource]
    export_formats = [base_formats.CSV, base_formats.XLSX]
    fields = (
        "kind_label",
        "record_link",
        "message",
        "first_seen",
        "last_seen",
        "count",
        "status_badge",
        "decided",
        "assignee",
        "note",
        "details_panel",
    )
    readonly_fields = (
        "kind_label",
        "record_link",
        "message",
        "first_seen",
        "last_seen",
        "count",
        "status_badge",
        "decided",
        "details_panel",
    )

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "assignee":
            # The people who work the queue, by name (accountants may not browse all users).
            from django.contrib.auth import get_user_model
            from django.db.models import Q

            from ledger_sync.services.roles import ACCOUNTANT, FINANCE_LEAD

            kwargs["queryset"] = (
                get_user_model()
                .objects.filter(is_active=True, is_staff=True)
                .filter(Q(is_superuser=True) | Q(groups__name__in=[ACCOUNTANT, FINANCE_LEAD]))
                .distinct()
                .order_by("username")
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    # --- permissions: rows come from services; a person only works them ---

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm(CHANGE_PERMISSION)

    def save_model(self, request: HttpRequest, obj: Problem, form: Any, change: bool) -> None:
        problem_update(problem=obj, user=request.user, note=obj.note, assignee=obj.assignee)

    # --- columns ---

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> Any:
        return super().changelist_view(
            request, {"title": "Error queue", "subtitle": None, **(extra_context or {})}
        )

    @admin.display(description="Type", ordering="kind")
    def kind_label(self, problem: Problem) -> str:
        # Blocked orders by reason: what an accountant sorts them by.
        reason = (problem.details or {}).get("reason_label")
        label = problem.get_kind_display()
        return (
            f"{label}: {reason}" if reason and problem.kind == Problem.Kind.BLOCKED_ORDER else label
        )

    @admin.display(description="Problem, record (opens what fixes it) and message", ordering="kind")
    def problem_column(self, problem: Problem) -> SafeString:
        # One column: with the navigation and the filters beside it, separate columns for
        # type, record and message would not fit 1,280 px.
        return format_html(
            '<a href="{}" aria-label="{}"><b>{}</b></a> · {}<div style="margin-top:3px">{}</div>',
            reverse("admin:ledger_sync_problem_change", args=[problem.pk]),
            f"Open problem {problem.pk}: {self.kind_label(problem)}",
            self.kind_label(problem),
            self.record_link(problem),
            self.message_short(problem),
        )

    @admin.display(description="Seen (UTC)", ordering="-last_seen_at")
    def seen(self, problem: Problem) -> SafeString:
        times = ngettext("%(n)d time", "%(n)d times", problem.count) % {"n": problem.count}
        return format_html(
            '<span style="white-space:nowrap">last {}</span><br>'
            '<span style="white-space:nowrap;color:#666">first {}</span><br>{}',
            f"{problem.last_seen_at:{DATETIME}}",
            f"{problem.first_seen_at:{DATETIME}}",
            times,
        )

    @admin.display(description="Record (opens what fixes it)", ordering="record_label")
    def record_link(self, problem: Problem) -> SafeString | str:
        label = problem.record_label or problem.key
        if not problem.fix_url:
            return label
        return format_html(
            '<a href="{}" aria-label="{}">{}</a>',
            problem.fix_url,
            f"Fix {label}",
            label,
        )

    @admin.display(description="Message")
    def message_short(self, problem: Problem) -> str:
        return Truncator(problem.message).chars(200)

    @admin.display(description="Status", ordering="status")
    def status_badge(self, problem: Problem) -> SafeString:
        return format_html(
            '<span style="color:{};font-weight:600">{}</span>',
            _STATUS_COLOURS.get(problem.status, "#333"),
            problem.get_status_display(),
        )

    @admin.display(description="Status", ordering="status")
    def status_and_assignee(self, problem: Problem) -> SafeString:
        who = problem.assignee.get_username() if problem.assignee_id else "unassigned"
        return format_html(
            '{}<br><span style="white-space:nowrap;color:#666">{}</span>',
            self.status_badge(problem),
            who,
        )

    @admin.display(description="First seen")
    def first_seen(self, problem: Problem) -> str:
        return f"{problem.first_seen_at:{DATETIME}} UTC"

    @admin.display(description="Last seen")
    def last_seen(self, problem: Problem) -> str:
        return f"{problem.last_seen_at:{DATETIME}} UTC"

    @admin.display(description="Decided")
    def decided(self, problem: Problem) -> str:
        if problem.status == S.OPEN or problem.resolved_at is None:
            return "—"
        who = (
            problem.resolved_by.get_username()
            if problem.resolved_by_id
            else "automatically: the source recovered"
        )
        return f"{problem.get_status_display()} {problem.resolved_at:{DATETIME}} UTC by {who}"

    @admin.display(description="Details")
    def details_panel(self, problem: Problem) -> SafeString | str:
        if not problem.details:
            return "None."
        return format_html(
            "<details><summary>Show the details</summary>"
            '<pre style="white-space:pre-wrap;margin:0">{}</pre></details>',
            wire.dumps(problem.details, indent=2),
        )

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = super().get_fields(request, obj)
        # Machine details (ids, a traceback) are for administrators, not for accountants.
        if not request.user.is_superuser:
            fields = [name for name in fields if name != "details_panel"]
        return fields

    # --- actions (each confirms first) ---

    @admin.action(description="Assign to me", permissions=["change"])
    def assign_to_me(self, request: HttpRequest, queryset: QuerySet) -> Any:
        return _confirm(
            self,
            request,
            queryset,
            action="assign_to_me",
            verb="assign to me",
            apply=lambda problems, user: problems_assign(
                problems=problems, user=user, assignee=user
            ),
        )

    @admin.action(description="Resolve", permissions=["change"])
    def resolve(self, request: HttpRequest, queryset: QuerySet) -> Any:
        return _confirm(
            self, request, queryset, action="resolve", verb="resolve", apply=problems_resolve
        )

    @admin.action(description="Ignore", permissions=["change"])
    def ignore(self, request: HttpRequest, queryset: QuerySet) -> Any:
        return _confirm(
            self, request, queryset, action="ignore", verb="ignore", apply=problems_ignore
        )

    @admin.action(description="Reopen", permissions=["change"])
    def reopen(self, request: HttpRequest, queryset: QuerySet) -> Any:
        return _confirm(
            self, request, queryset, action="reopen", verb="reopen", apply=problems_reopen
        )
