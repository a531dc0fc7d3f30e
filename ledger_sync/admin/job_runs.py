"""Run now: the ATLAS mirror and the journal cycle started from the back office, and the page
that follows a run (it refreshes itself while the run is queued or running; no JavaScript).

The buttons are on the home page; `run_now_view` (POST /admin/run-now/<kind>/) asks the
service to queue the run and lands on the run's page. Starting needs `ledger_sync.start_jobrun`
(accountants and finance leads, services/roles.py); seeing runs needs the view permission.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.views.decorators.http import require_POST

from ledger_sync.admin.readonly import ReadOnlyAdmin
from ledger_sync.models import BlockedReason, JobRun, OrderState
from ledger_sync.services.job_runs import JobAlreadyRunning, job_run_request
from ledger_sync.services.pipeline import STAGES

START_PERMISSION = "ledger_sync.start_jobrun"
REFRESH_SECONDS = 2
_STAGE_LABELS = {
    "atlas_mirror": "ATLAS mirror",
    "gotransverse_mirror": "AR Ledger reference data",
    "matching": "Counterparty matching",
    "counterparty_write_back": "ERP codes to ATLAS",
    "selection": "Order selection",
    "build": "Journals built",
    "post": "Posting",
    "write_back": "Write-backs to ATLAS",
}
_STATUS_COLOURS = {
    JobRun.Status.QUEUED: "#555",
    JobRun.Status.RUNNING: "#1565c0",
    JobRun.Status.SUCCEEDED: "#2e7d32",
    JobRun.Status.NEEDS_ATTENTION: "#ef6c00",
    JobRun.Status.FAILED: "#c62828",
}


@require_POST
def run_now_view(request: HttpRequest, kind: str) -> HttpResponse:
    if kind not in JobRun.Kind.values:
        raise Http404("No such job.")
    if not request.user.has_perm(START_PERMISSION):
        raise PermissionDenied
    label = JobRun.Kind(kind).label
    try:
        job = job_run_request(kind=kind, user=request.user)
    except JobAlreadyRunning as refused:
        messages.warning(request, refused.message)
        running = refused.details.get("running_job_run_id")
        if running:
            return HttpResponseRedirect(reverse("admin:ledger_sync_jobrun_change", args=[running]))
        return HttpResponseRedirect(reverse("admin:index"))
    messages.success(request, f"{label} queued (run {job.pk}); this page follows it.")
    return HttpResponseRedirect(reverse("admin:ledger_sync_jobrun_change", args=[job.pk]))


@admin.register(JobRun)
class JobRunAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "kind",
        "trigger",
        "requested_by",
        "status_badge",
        "requested_at",
        "finished_at",
        "problems",
    )
    list_filter = ("kind", "status", "trigger")
    list_select_related = ("requested_by",)
    change_form_template = "admin/ledger_sync/jobrun/change_form.html"
    fields = (
        "kind",
        "trigger",
        "requested_by",
        "status_badge",
        "requested_at",
        "started_at",
        "finished_at",
        "progress_view",
        "result_view",
        "problems_view",
        "error_message",
        "sync_run",
    )
    readonly_fields = fields

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        job = self.get_object(request, object_id)
        context = {
            **(extra_context or {}),
            "refresh_seconds": REFRESH_SECONDS if job is not None and job.is_active else None,
            "can_start": request.user.has_perm(START_PERMISSION),
            "run_now_url": reverse("admin:ledger_sync_run_now", args=[job.kind]) if job else "",
        }
        return super().change_view(request, object_id, form_url, extra_context=context)

    @admin.display(description="Status", ordering="status")
    def status_badge(self, job: JobRun) -> SafeString:
        return format_html(
            '<strong class="job-status" style="color:{}">{}</strong>',
            _STATUS_COLOURS.get(job.status, "#333"),
            job.get_status_display(),
        )

    @admin.display(description="Progress")
    def progress_view(self, job: JobRun) -> SafeString:
        if job.status == JobRun.Status.QUEUED:
            return format_html("<em>{}</em>", "Waiting for a worker to pick it up.")
        progress = job.progress or {}
        parts = []
        if job.kind == JobRun.Kind.JOURNAL_CYCLE:
            done = progress.get("stages_done", [])
            if job.status != JobRun.Status.RUNNING and job.result.get("stages"):
                done = list(STAGES)
            parts.append(
                format_html(
                    '<progress max="{}" value="{}" aria-label="Stages done">{} of {}</progress> '
                    "{} of {} stages done",
                    len(STAGES),
                    len(done),
                    len(done),
                    len(STAGES),
                    len(done),
                    len(STAGES),
                )
            )
            parts.append(
                format_html(
                    '<ol class="job-stages">{}</ol>',
                    format_html_join(
                        "",
                        '<li class="{}">{}{}</li>',
                        (
                            (
                                "done" if stage in done else "",
                                _STAGE_LABELS.get(stage, stage),
                                " ✓" if stage in done else "",
                            )
                            for stage in STAGES
                        ),
                    ),
                )
            )
        entity = progress.get("entity")
        if entity and job.status == JobRun.Status.RUNNING:
            total = progress.get("total")
            parts.append(
                format_html(
                    "<p>ATLAS mirror: {} — {} of {} records</p>",
                    entity,
                    f"{progress.get('done', 0):,}",
                    f"{total:,}" if total is not None else "?",
                )
            )
        if not parts:
            return format_html("<em>{}</em>", "Finished." if not job.is_active else "Starting…")
        return format_html_join("", "{}", ((part,) for part in parts))

    @admin.display(description="Result")
    def result_view(self, job: JobRun) -> SafeString:
        result = job.result or {}
        if job.kind == JobRun.Kind.ATLAS_MIRROR and result.get("counts"):
            outcomes = ("created", "updated", "unchanged", "failed")
            rows = format_html_join(
                "",
                "<tr><th scope='row'>{}</th>{}</tr>",
                (
                    (
                        entity,
                        format_html_join(
                            "", "<td>{}</td>", ((f"{counts.get(o, 0):,}",) for o in outcomes)
                        ),
                    )
                    for entity, counts in result["counts"].items()
                ),
            )
            head = format_html_join(
                "", "<th scope='col'>{}</th>", ((o.capitalize(),) for o in outcomes)
            )
            return format_html(
                "<table><thead><tr><th scope='col'>Record</th>{}</tr></thead><tbody>{}</tbody>"
                "</table>",
                head,
                rows,
            )
        stages = result.get("stages")
        if stages:
            rows = format_html_join(
                "",
                "<tr><th scope='row'>{}</th><td>{}</td></tr>",
                (
                    (_STAGE_LABELS.get(stage, stage), _counts_text(stages.get(stage, {})))
                    for stage in STAGES
                    if stage in stages
                ),
            )
            orders = stages.get("orders") or {}
            states = dict(OrderState.choices)
            by_state = ", ".join(
                f"{states.get(state, state)}: {count:,}" for state, count in sorted(orders.items())
            )
            return format_html(
                "<table><tbody>{}<tr><th scope='row'>Orders by state</th><td>{}</td></tr>"
                "</tbody></table>",
                rows,
                by_state or "none",
            )
        return format_html("<em>{}</em>", "Not finished yet." if job.is_active else "Nothing.")

    @admin.display(description="Needs a person")
    def problems_view(self, job: JobRun) -> SafeString:
        problems = (job.result or {}).get("problems") or []
        errors = (job.result or {}).get("errors") or []
        if not problems and not errors:
            return format_html("{}", f"{job.problems:,}" if job.problems else "Nothing.")
        reasons = dict(BlockedReason.choices)
        rows = format_html_join(
            "",
            "<li>Order {} {}: {} — {}</li>",
            (
                (
                    p.get("atlas_order_id"),
                    p.get("document_reference") or "",
                    reasons.get(p.get("reason"), p.get("reason")),
                    p.get("message") or "",
                )
                for p in problems
            ),
        )
        more = job.problems - len(problems)
        tail = format_html("<p>… and {} more.</p>", f"{more:,}") if more > 0 else ""
        error_list = format_html_join("", "<li>{}</li>", ((e,) for e in errors))
        return format_html(
            '<p><a href="{}?state__exact=blocked">Blocked orders</a> · '
            '<a href="{}?state__exact=failed">Failed orders</a></p><ul>{}{}</ul>{}',
            reverse("admin:ledger_sync_ordersync_changelist"),
            reverse("admin:ledger_sync_ordersync_changelist"),
            rows,
            error_list,
            tail,
        )


def _counts_text(counts: dict[str, Any]) -> str:
    if "skipped" in counts:
        return f"skipped: {counts['skipped']}"
    return (
        ", ".join(
            f"{name.replace('_', ' ')}: {value:,}" if isinstance(value, int) else f"{name}: {value}"
            for name, value in counts.items()
        )
        or "nothing to do"
    )
