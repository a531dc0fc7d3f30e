"""The back office's AdminSite: a dashboard as the home page and the navigation grouped by
task instead of one alphabetical list per app.

Installed as Django's default site (`ledger_sync.apps.BackOfficeAdminConfig` in INSTALLED_APPS
in place of django.contrib.admin), so `admin.site` and `@admin.register` work as usual. It
lives outside the ledger_sync.admin package on purpose: Django imports it when the first model
is registered, and importing that package then would register its models on a site that is
about to be replaced.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.text import slugify

# Where every model goes, by its class name (whichever app it belongs to). Models of branches
# still being built are listed already (Problem, ReconciliationRun, ...); a model listed
# nowhere lands in "Other", so nothing registered ever disappears from the navigation.
NAV_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "Work",
        (
            "Problem",
            "CounterpartyMatching",
            "MatchProposal",
            "MasterDataCorrection",
            "Journal",
            "OrderSync",
            "WriteBackStep",
        ),
    ),
    (
        "Master data",
        ("ErpParty", "CounterpartyMapping", "CustomFieldMapping", "CustomFieldMappingChange"),
    ),
    ("Inbound", ("InboundDelivery", "PaymentConfirmation", "InvoiceReport", "InvoiceSettlement")),
    (
        "ATLAS mirror (read-only)",
        (
            "Counterparty",
            "Order",
            "OrderItem",
            "Invoice",
            "Payment",
            "CustomFieldDefinition",
            "CustomFieldType",
        ),
    ),
    ("Ledger reference", ("Ledger", "AccountingYear", "AccountingPeriod", "GLAccount")),
    (
        "Settings",
        ("PostingSettings", "PostingSettingsChange", "ApiClient", "Schedule", "User", "Group"),
    ),
    (
        "Monitoring",
        (
            "JobRun",
            "ReconciliationRun",
            "ReconciliationDifference",
            "SyncRun",
            "SyncRunError",
            "RecordChange",
            "Failure",
            "Success",
            "OrmQ",
        ),
    ),
)
OTHER_GROUP = "Other"


def group_models(app_dicts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Django's per-app list regrouped by task: each model of each app in exactly one group
    (NAV_GROUPS order, then "Other"); groups with no model the user may see are left out."""
    position = {
        name: (index, rank)
        for index, (_group, names) in enumerate(NAV_GROUPS)
        for rank, name in enumerate(names)
    }
    buckets: dict[int, list[tuple[int, dict[str, Any]]]] = {}
    other = len(NAV_GROUPS)
    for app in app_dicts:
        for model in app["models"]:
            index, rank = position.get(model["object_name"], (other, 0))
            buckets.setdefault(index, []).append((rank, model))
    groups = []
    for index in sorted(buckets):
        name = NAV_GROUPS[index][0] if index < other else OTHER_GROUP
        models = [model for _rank, model in sorted(buckets[index], key=lambda pair: pair[0])]
        if index == other:
            models.sort(key=lambda model: model["name"].casefold())
        groups.append(
            {
                "name": name,
                "app_label": f"group-{slugify(name)}",
                "app_url": "",
                "has_module_perms": True,
                "models": models,
                "is_group": True,
            }
        )
    return groups


class BackOfficeSite(admin.AdminSite):
    site_header = "ledger_sync back office"
    site_title = "ledger_sync"
    index_title = "ATLAS ETRM ⇄ Gotransverse AR Ledger"
    index_template = "admin/ledger_sync/dashboard.html"

    def get_app_list(self, request: HttpRequest, app_label: str | None = None) -> list[dict]:
        if app_label is not None:
            # An app's own index page (/admin/ledger_sync/) keeps Django's list of that app.
            return super().get_app_list(request, app_label)
        return group_models(list(self._build_app_dict(request).values()))

    def get_urls(self) -> list[Any]:
        from ledger_sync.admin import job_runs

        return [
            path(
                "run-now/<str:kind>/",
                self.admin_view(job_runs.run_now_view),
                name="ledger_sync_run_now",
            ),
            *super().get_urls(),
        ]

    def index(self, request: HttpRequest, extra_context: dict | None = None) -> TemplateResponse:
        from ledger_sync.admin.dashboard import dashboard_context

        return super().index(
            request, extra_context={**dashboard_context(request), **(extra_context or {})}
        )
