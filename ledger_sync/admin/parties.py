"""Back office for ERP parties, counterparty matching, master-data corrections and custom-field
mappings.

Accountants see everything here; decisions (approving or rejecting matches, creating ERP
parties, approving corrections, mapping custom fields, importing the register) need the
permissions of the "Finance lead" group. Every decision is a service call; ATLAS is never
called in the request: write-backs are queued after the request's transaction commits.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import ngettext
from django_q.tasks import async_task
from import_export.admin import ImportExportModelAdmin
from import_export.formats import base_formats

from ledger_sync.admin.display import counted
from ledger_sync.admin.match_decisions import (
    approve_with_confirmation,
    confirmation_page,
    enqueue_write_back,
    reject_with_confirmation,
    undo_page,
)
from ledger_sync.admin.readonly import ReadOnlyPermissions
from ledger_sync.errors import ApplicationError
from ledger_sync.models import (
    CounterpartyMapping,
    CounterpartyMatching,
    CustomFieldDefinition,
    CustomFieldMapping,
    CustomFieldMappingChange,
    ErpParty,
    MasterDataCorrection,
    MatchProposal,
    WriteBackState,
)
from ledger_sync.selectors.parties import (
    counterparties_awaiting_decision,
    counterparty_history,
    custom_field_rows,
    custom_field_target_suggestions,
)
from ledger_sync.services.counterparty_writeback import (
    APPROVE_CORRECTION_PERMISSION,
    master_data_correction_approve,
    master_data_correction_request,
    master_data_correction_validate,
)
from ledger_sync.services.custom_fields import (
    CHANGE_PERMISSION as CUSTOM_FIELD_PERMISSION,
)
from ledger_sync.services.custom_fields import (
    custom_field_mapping_remove,
    custom_field_mapping_set,
)
from ledger_sync.services.erp_parties import ErpPartyResource
from ledger_sync.services.match_decisions import APPROVE_PERMISSION, match_proposal_risks
from ledger_sync.services.match_engine import auto_suggest_score
from ledger_sync.services.matching import counterparty_create_erp_party

PUSH_CORRECTIONS_TASK = "ledger_sync.tasks.master_data_corrections_push_task"
PROPOSE_TASK = "ledger_sync.tasks.propose_matches_task"
# What accountants call the fields a master-data correction changes.
CORRECTION_FIELD_LABELS = {"gl_account": "GL account", "iban": "IBAN", "swift_bic": "SWIFT/BIC"}


def _enqueue_push(correction_ids: list[int]) -> None:
    if correction_ids:
        transaction.on_commit(
            lambda: async_task(
                PUSH_CORRECTIONS_TASK,
                correction_ids,
                task_name="Push "
                + counted(len(correction_ids), "master-data correction", "master-data corrections")
                + " to ATLAS",
            )
        )


def _score_badge(score: int) -> SafeString:
    colour = "#2e7d32" if score >= auto_suggest_score() else "#ef6c00" if score >= 40 else "#777"
    return format_html('<b style="color:{}">{}</b>', colour, score)


def _reasons(reasons: list[dict[str, Any]]) -> SafeString:
    return format_html_join(
        "",
        '<div style="color:{}">{} ({})</div>',
        (
            (
                "#c62828" if r.get("points", 0) < 0 else "inherit",
                r.get("text", ""),
                f"{r.get('points', 0):+d}",
            )
            for r in reasons or []
        ),
    )


def _needs_confirmation(proposal: MatchProposal, threshold: int) -> SafeString:
    """Why approving this candidate will ask for an explicit confirmation (nothing if not)."""
    risks = match_proposal_risks(proposal=proposal, threshold=threshold)
    if not risks:
        return mark_safe("")
    return format_html(
        '<div style="color:var(--error-fg,#ba2121)"><b>Needs confirmation:</b> {}</div>',
        "; ".join(risks),
    )


def _party_fields(name: str, legal_name: str, vat: str, iban: str) -> SafeString:
    return format_html(
        "<div><b>{}</b></div><div>{}</div><div>VAT {}</div><div>IBAN {}</div>",
        name,
        legal_name or "—",
        vat or "—",
        _iban_display(iban),
    )


def _iban_display(iban: str) -> str:
    # Grouped by four, as people compare IBANs; finance staff need the whole number here.
    return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4)) if iban else "—"


def _undo_link(proposal_id: int, label: str) -> SafeString:
    return format_html(
        '<a href="{}" aria-label="{}">Undo…</a>',
        reverse("admin:ledger_sync_counterpartymatching_undo", args=[proposal_id]),
        label,
    )


def _counterparty_link(counterparty: Any) -> SafeString:
    url = reverse("admin:ledger_sync_counterparty_change", args=[counterparty.pk])
    return format_html('<a href="{}">{}</a>', url, counterparty)


class _DecisionMixin:
    """Permissions named after the roles: `approve` is the finance lead's."""

    approve_permission = APPROVE_PERMISSION

    def has_approve_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(self.approve_permission)


# --- ERP parties ---------------------------------------------------------------------------------


@admin.register(ErpParty)
class ErpPartyAdmin(ImportExportModelAdmin):
    """The register, imported from CSV or XLSX with a preview of new / changed / invalid rows
    (django-import-export's dry run) before anything is saved."""

    resource_classes = [ErpPartyResource]
    import_formats = [base_formats.CSV, base_formats.XLSX]
    export_formats = [base_formats.CSV, base_formats.XLSX]
    list_display = ("code", "legal_name", "vat", "iban_grouped", "role", "active", "mapped")
    list_filter = ("role", "active")
    search_fields = ("code", "legal_name", "vat", "iban")
    readonly_fields = ("created_at", "updated_at")
    list_per_page = 100
    show_full_result_count = False

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(mapped_count=Count("mappings"))

    @admin.display(description="IBAN")
    def iban_grouped(self, obj: ErpParty) -> str:
        return _iban_display(obj.iban)

    @admin.display(description="Counterparties", ordering="mapped_count")
    def mapped(self, obj: ErpParty) -> int:
        return obj.mapped_count

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # The code is the key mappings, journals and ATLAS's externalId already hold: a typo is
        # fixed by a new party and a remap, never by renaming this one under them.
        if obj is not None:
            return ("code", *self.readonly_fields)
        return self.readonly_fields

    def has_import_permission(self, request: HttpRequest) -> bool:
        # django-import-export lets anyone with admin access import unless told otherwise.
        return request.user.has_perm("ledger_sync.add_erpparty") and request.user.has_perm(
            "ledger_sync.change_erpparty"
        )

    def has_export_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("ledger_sync.view_erpparty")

    def process_result(self, result: Any, request: HttpRequest) -> HttpResponse:
        # A new register changes the candidates: propose again once the import has committed.
        transaction.on_commit(lambda: async_task(PROPOSE_TASK, task_name="Propose ERP matches"))
        self.message_user(request, "Matching against the new register has been queued.")
        return super().process_result(result, request)

    def save_model(self, request: HttpRequest, obj: ErpParty, form: Any, change: bool) -> None:
        # Typed by hand: the same normalisation and checks as an imported row.
        from ledger_sync.services.erp_parties import erp_party_values_clean

        clean, problems = erp_party_values_clean(
            {name: getattr(obj, name) for name in ("code", "legal_name", "vat", "iban", "role")}
            | {"active": "true" if obj.active else "false"}
        )
        # The form refused anything with problems; what is left is normalising.
        for name, value in clean.items():
            if name not in problems:
                setattr(obj, name, value)
        super().save_model(request, obj, form, change)

    def get_form(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, **kwargs)

        class CleanedForm(form):  # type: ignore[misc, valid-type]
            def clean(self) -> dict[str, Any]:
                from ledger_sync.services.erp_parties import erp_party_values_clean

                data = super().clean()
                values = {k: data.get(k) for k in ("code", "legal_name", "vat", "iban", "role")}
                if "code" not in self.fields:  # an existing party: its code is read-only
                    values["code"] = self.instance.code
                values["active"] = "true" if data.get("active") else "false"
                _clean, problems = erp_party_values_clean(values)
                for name, text in problems.items():
                    self.add_error(name if name in self.fields else None, text)
                return data

        return CleanedForm


# --- matching ------------------------------------------------------------------------------------


class HasCandidatesFilter(admin.SimpleListFilter):
    title = "candidates"
    parameter_name = "candidates"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "With candidates"), ("no", "No candidate (create an ERP party)")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "yes":
            return queryset.filter(has_proposals=True)
        if self.value() == "no":
            return queryset.filter(has_proposals=False)
        return queryset


@admin.register(CounterpartyMatching)
class CounterpartyMatchingAdmin(_DecisionMixin, ReadOnlyPermissions, admin.ModelAdmin):
    """Each unmapped ATLAS counterparty beside its best ERP candidates, with the reasons.

    A finance lead approves or rejects one candidate with its buttons, or many at once with the
    actions; "no match" creates a new ERP party. Accountants see the same page without them.
    """

    list_display = ("counterparty", "atlas_fields", "candidates")
    # The counterparty column links to the mirrored counterparty itself; no change page here.
    list_display_links = None
    list_filter = (HasCandidatesFilter,)
    search_fields = ("name", "legal_name", "vat", "=atlas_id")
    actions = ("approve_best", "reject_all", "create_erp_party", "run_matching")
    list_per_page = 50
    show_full_result_count = False

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return counterparties_awaiting_decision(queryset=super().get_queryset(request))

    def get_urls(self) -> list[Any]:
        return [
            path(
                "decide/",
                self.admin_site.admin_view(self.decide_view),
                name="ledger_sync_counterpartymatching_decide",
            ),
            path(
                "decide/undo/<int:proposal_id>/",
                self.admin_site.admin_view(self.undo_view),
                name="ledger_sync_counterpartymatching_undo",
            ),
            *super().get_urls(),
        ]

    @admin.display(description="ATLAS counterparty")
    def counterparty(self, obj: Any) -> SafeString:
        return _counterparty_link(obj)

    @admin.display(description="ATLAS fields")
    def atlas_fields(self, obj: Any) -> SafeString:
        return _party_fields(f"ATLAS {obj.atlas_id}", obj.legal_name or obj.name, obj.vat, obj.iban)

    def get_list_display(self, request: HttpRequest) -> Any:
        can_decide = self.has_approve_permission(request)

        @admin.display(description="ERP candidates, best first")
        def candidates(obj: Any) -> SafeString:
            return self.candidates(obj, can_decide=can_decide)

        return ("counterparty", "atlas_fields", candidates)

    def candidates(self, obj: Any, *, can_decide: bool = False) -> SafeString:
        proposals = getattr(obj, "open_proposals", [])
        threshold = auto_suggest_score()
        no_match = self._no_match_button(obj) if can_decide else ""
        if not proposals:
            return format_html("<i>No candidate.</i> {}", no_match)
        rows = format_html_join(
            "",
            '<tr><td style="padding:2px 8px">{}</td><td style="padding:2px 8px">{}</td>'
            '<td style="padding:2px 8px">{}</td><td style="padding:2px 8px">{}</td></tr>',
            (
                (
                    _party_fields(
                        p.erp_party.code, p.erp_party.legal_name, p.erp_party.vat, p.erp_party.iban
                    ),
                    _score_badge(p.score),
                    _reasons(p.reasons) + _needs_confirmation(p, threshold),
                    self._decision_buttons(p, obj) if can_decide else "",
                )
                for p in proposals
            ),
        )
        return format_html('<table style="margin:0">{}</table>{}', rows, no_match)

    def _decision_buttons(self, proposal: MatchProposal, counterparty: Any) -> SafeString:
        # Each button names its row, so a screen reader (and a browser test) can tell the
        # twenty "Approve" buttons of a page apart.
        url = reverse("admin:ledger_sync_counterpartymatching_decide")
        code = proposal.erp_party.code
        return format_html(
            '<button type="submit" class="button" name="approve" value="{}" formaction="{}" '
            'aria-label="Approve {} for {}">Approve</button> '
            '<button type="submit" class="button" name="reject" value="{}" formaction="{}" '
            'aria-label="Reject {} for {}">Reject</button>',
            proposal.pk,
            url,
            code,
            counterparty,
            proposal.pk,
            url,
            code,
            counterparty,
        )

    def _no_match_button(self, obj: Any) -> SafeString:
        return format_html(
            '<button type="submit" class="button" name="no_match" value="{}" formaction="{}" '
            'aria-label="No match: create an ERP party for {}">'
            "No match: create ERP party</button>",
            obj.pk,
            reverse("admin:ledger_sync_counterpartymatching_decide"),
            obj,
        )

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        extra_context = {
            **(extra_context or {}),
            "subtitle": f"Candidates scoring {auto_suggest_score()} or more are strong matches.",
        }
        return super().changelist_view(request, extra_context)

    def decide_view(self, request: HttpRequest) -> HttpResponse:
        """One button of the page: approve or reject a candidate, or "no match"."""
        if request.method != "POST":
            return HttpResponseRedirect(
                reverse("admin:ledger_sync_counterpartymatching_changelist")
            )
        if not self.has_approve_permission(request):
            raise PermissionDenied("Only a finance lead may decide on matches.")
        back_url = self._back_url(request)
        back = HttpResponseRedirect(back_url)
        hidden = [("next", back_url)]
        try:
            if "approve" in request.POST:
                proposal = get_object_or_404(MatchProposal, pk=request.POST["approve"])
                page = approve_with_confirmation(
                    self,
                    request,
                    [proposal],
                    hidden=[*hidden, ("approve", proposal.pk)],
                    cancel_url=back_url,
                )
                return page or back
            elif "reject" in request.POST:
                proposal = get_object_or_404(MatchProposal, pk=request.POST["reject"])
                page = reject_with_confirmation(
                    self,
                    request,
                    [proposal],
                    hidden=[*hidden, ("reject", proposal.pk)],
                    cancel_url=back_url,
                )
                return page or back
            elif "no_match" in request.POST:
                counterparty = get_object_or_404(CounterpartyMatching, pk=request.POST["no_match"])
                if "confirm" not in request.POST:
                    return self._no_match_page(
                        request,
                        [counterparty],
                        hidden=[*hidden, ("no_match", counterparty.pk)],
                        cancel_url=back_url,
                    )
                self._create_parties(request, [counterparty])
        except ApplicationError as error:
            self.message_user(request, error.message, messages.ERROR)
        return back

    def _back_url(self, request: HttpRequest) -> str:
        """Back to the page the decision was made on (with its filters), never another site."""
        back = request.POST.get("next") or request.META.get("HTTP_REFERER", "")
        if not url_has_allowed_host_and_scheme(
            back, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        ):
            back = reverse("admin:ledger_sync_counterpartymatching_changelist")
        return back

    def undo_view(self, request: HttpRequest, proposal_id: int) -> HttpResponse:
        """Undo an approval (until written to ATLAS) or a rejection, after asking."""
        if not self.has_approve_permission(request):
            raise PermissionDenied("Only a finance lead may undo match decisions.")
        proposal = get_object_or_404(
            MatchProposal.objects.select_related("counterparty", "erp_party"), pk=proposal_id
        )
        back_url = reverse("admin:ledger_sync_counterpartymatching_changelist")
        page = undo_page(self, request, proposal, back_url=back_url)
        return page or HttpResponseRedirect(back_url)

    def _no_match_page(
        self,
        request: HttpRequest,
        counterparties: list[Any],
        *,
        hidden: list[tuple[str, Any]],
        cancel_url: str,
    ) -> HttpResponse:
        """Ask before "no match": which ERP parties will be created from which ATLAS data; a
        counterparty that still has open candidates is marked (the party may already exist)."""
        candidates: dict[int, list[MatchProposal]] = {}
        for proposal in (
            MatchProposal.objects.filter(
                counterparty__in=counterparties, status=MatchProposal.Status.PROPOSED
            )
            .select_related("erp_party")
            .order_by("rank", "-score")
        ):
            candidates.setdefault(proposal.counterparty_id, []).append(proposal)
        rows = []
        for counterparty in counterparties:
            open_ones = candidates.get(counterparty.pk, [])
            risks = []
            if open_ones:
                best = open_ones[0]
                risks.append(
                    ngettext(
                        "%(count)d open candidate (best %(code)s, score %(score)d): check the "
                        "ERP party does not exist already.",
                        "%(count)d open candidates (best %(code)s, score %(score)d): check the "
                        "ERP party does not exist already.",
                        len(open_ones),
                    )
                    % {"count": len(open_ones), "code": best.erp_party.code, "score": best.score}
                )
            rows.append(
                {
                    "cells": [
                        f"{counterparty.name} (ATLAS {counterparty.atlas_id})",
                        counterparty.legal_name or counterparty.name,
                        counterparty.vat or "—",
                        _iban_display(counterparty.iban),
                    ],
                    "risks": risks,
                }
            )
        count, risky = len(counterparties), sum(1 for row in rows if row["risks"])
        return confirmation_page(
            self,
            request,
            title=ngettext(
                "Create an ERP party for this counterparty?",
                "Create ERP parties for these %(count)d counterparties?",
                count,
            )
            % {"count": count},
            intro=ngettext(
                "A new ERP party is created from the ATLAS data below with the next free code; "
                "the counterparty is mapped to it and the code written to ATLAS as its "
                "externalId.",
                "A new ERP party is created for each counterparty below from its ATLAS data, "
                "each with the next free code; each counterparty is mapped to its party and the "
                "code written to ATLAS as its externalId.",
                count,
            ),
            columns=["ATLAS counterparty", "Legal name", "VAT number", "IBAN"],
            table_rows=rows,
            risky_count=risky,
            risky_warning=ngettext(
                "%(count)d counterparty still has candidates; creating confirms a new party "
                "anyway.",
                "%(count)d counterparties still have candidates; creating confirms new parties "
                "anyway.",
                risky,
            )
            % {"count": risky},
            hidden=hidden,
            submit_label=ngettext("Create the ERP party", "Create the ERP parties", count),
            cancel_url=cancel_url,
        )

    def _create_parties(self, request: HttpRequest, counterparties: list[Any]) -> None:
        created = []
        try:
            for counterparty in counterparties:
                # Each one commits on its own: a refusal further down the list must not leave
                # the parties already made waiting for a write-back nobody queued.
                created.append(
                    counterparty_create_erp_party(
                        counterparty=counterparty, user=request.user, write_back=False
                    )
                )
        finally:
            enqueue_write_back([m.pk for m in created])
            if created:
                self.message_user(
                    request,
                    ngettext(
                        "Created %(count)d ERP party: %(list)s; its code is being written to "
                        "ATLAS.",
                        "Created %(count)d ERP parties: %(list)s; their codes are being "
                        "written to ATLAS.",
                        len(created),
                    )
                    % {
                        "count": len(created),
                        "list": ", ".join(
                            f"{m.erp_code} for {m.counterparty}" for m in created[:10]
                        ),
                    },
                    messages.SUCCESS,
                )

    @admin.action(
        description="Approve the best candidate of each selected counterparty",
        permissions=["approve"],
    )
    def approve_best(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        selected = list(queryset)
        best = [obj.open_proposals[0] for obj in selected if getattr(obj, "open_proposals", None)]
        if not best:
            self.message_user(request, "None of the selected has a candidate.", messages.WARNING)
            return None
        return approve_with_confirmation(
            self,
            request,
            best,
            hidden=_action_fields("approve_best", selected),
            cancel_url=request.get_full_path(),
        )

    @admin.action(
        description="Reject every candidate of the selected counterparties", permissions=["approve"]
    )
    def reject_all(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        selected = list(queryset)
        proposals = [p for obj in selected for p in getattr(obj, "open_proposals", [])]
        if not proposals:
            self.message_user(request, "None of the selected has a candidate.", messages.WARNING)
            return None
        return reject_with_confirmation(
            self,
            request,
            proposals,
            hidden=_action_fields("reject_all", selected),
            cancel_url=request.get_full_path(),
        )

    @admin.action(
        description="No match: create a new ERP party for each selected", permissions=["approve"]
    )
    def create_erp_party(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        selected = list(queryset)
        if "confirm" not in request.POST:
            return self._no_match_page(
                request,
                selected,
                hidden=_action_fields("create_erp_party", selected),
                cancel_url=request.get_full_path(),
            )
        try:
            self._create_parties(request, selected)
        except ApplicationError as error:
            self.message_user(request, error.message, messages.ERROR)

    @admin.action(
        description="Run matching again for every unmapped counterparty", permissions=["approve"]
    )
    def run_matching(self, request: HttpRequest, queryset: QuerySet) -> None:
        transaction.on_commit(lambda: async_task(PROPOSE_TASK, task_name="Propose ERP matches"))
        self.message_user(request, "Matching queued; reload this page in a moment.")


def _action_fields(action: str, selected: list[Any]) -> list[tuple[str, Any]]:
    """What the confirmation page posts back so that the same action runs on the same rows."""
    return [("action", action), *((ACTION_CHECKBOX_NAME, obj.pk) for obj in selected)]


@admin.register(MatchProposal)
class MatchProposalAdmin(_DecisionMixin, ReadOnlyPermissions, admin.ModelAdmin):
    """Every proposal and decision: counterparty and candidate side by side."""

    list_display = (
        "atlas_side",
        "erp_side",
        "score_display",
        "reasons_display",
        "status",
        "decided_by",
    )
    list_filter = ("status",)
    list_select_related = ("counterparty", "erp_party", "decided_by")
    search_fields = (
        "counterparty__name",
        "counterparty__legal_name",
        "counterparty__vat",
        "erp_party__code",
        "erp_party__legal_name",
    )
    ordering = ("counterparty__atlas_id", "rank")
    actions = ("approve_selected", "reject_selected")
    list_per_page = 100
    show_full_result_count = False

    @admin.display(description="ATLAS counterparty")
    def atlas_side(self, obj: MatchProposal) -> SafeString:
        cp = obj.counterparty
        return _party_fields(str(cp), cp.legal_name, cp.vat, cp.iban)

    @admin.display(description="ERP candidate")
    def erp_side(self, obj: MatchProposal) -> SafeString:
        party = obj.erp_party
        return _party_fields(party.code, party.legal_name, party.vat, party.iban)

    @admin.display(description="Score", ordering="score")
    def score_display(self, obj: MatchProposal) -> SafeString:
        return _score_badge(obj.score)

    @admin.display(description="Why")
    def reasons_display(self, obj: MatchProposal) -> SafeString:
        return _reasons(obj.reasons)

    def get_list_display(self, request: HttpRequest) -> Any:
        if self.has_approve_permission(request):
            return (*self.list_display, "undo")
        return self.list_display

    @admin.display(description="Undo")
    def undo(self, obj: MatchProposal) -> SafeString | str:
        # The undo page says whether it is still possible (not once written to ATLAS).
        if obj.status not in (MatchProposal.Status.APPROVED, MatchProposal.Status.REJECTED):
            return ""
        decision = "approval" if obj.status == MatchProposal.Status.APPROVED else "rejection"
        return _undo_link(
            obj.pk, f"Undo the {decision} of {obj.erp_party.code} for {obj.counterparty}"
        )

    @admin.action(
        description="Approve selected (and write the codes to ATLAS)", permissions=["approve"]
    )
    def approve_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        selected = list(queryset)
        return approve_with_confirmation(
            self,
            request,
            selected,
            hidden=_action_fields("approve_selected", selected),
            cancel_url=request.get_full_path(),
        )

    @admin.action(description="Reject selected (never proposed again)", permissions=["approve"])
    def reject_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        selected = list(queryset)
        return reject_with_confirmation(
            self,
            request,
            selected,
            hidden=_action_fields("reject_selected", selected),
            cancel_url=request.get_full_path(),
        )


@admin.register(CounterpartyMapping)
class CounterpartyMappingAdmin(_DecisionMixin, ReadOnlyPermissions, admin.ModelAdmin):
    list_display = (
        "counterparty_link",
        "erp_code",
        "source",
        "flag",
        "write_back_state",
        "last_error",
        "approved_by",
        "approved_at",
        "correct_link",
    )
    list_display_links = ("erp_code",)
    list_filter = ("flagged", "write_back_state", "source")
    list_select_related = ("counterparty", "erp_party", "approved_by")
    search_fields = ("erp_code", "counterparty__name", "counterparty__legal_name")
    readonly_fields = [f.name for f in CounterpartyMapping._meta.fields]
    actions = ("retry_write_back",)
    show_full_result_count = False

    @admin.display(description="Counterparty", ordering="counterparty__atlas_id")
    def counterparty_link(self, obj: CounterpartyMapping) -> SafeString:
        return _counterparty_link(obj.counterparty)

    @admin.display(description="Flag", ordering="flagged")
    def flag(self, obj: CounterpartyMapping) -> SafeString:
        if not obj.flagged:
            return ""
        return format_html(
            '<span style="color:#c62828" title="{}">⚑ {}</span>',
            obj.flag_reason,
            obj.flag_reason[:80],
        )

    @admin.display(description="Master data")
    def correct_link(self, obj: CounterpartyMapping) -> SafeString:
        url = reverse("admin:ledger_sync_masterdatacorrection_add")
        return format_html(
            '<a href="{}?counterparty={}" aria-label="Correct the master data of {}">'
            "Correct GL account / IBAN / BIC</a>",
            url,
            obj.counterparty_id,
            obj.counterparty,
        )

    def get_list_display(self, request: HttpRequest) -> Any:
        if self.has_approve_permission(request):
            return (*self.list_display, "undo")
        return self.list_display

    @admin.display(description="Undo")
    def undo(self, obj: CounterpartyMapping) -> SafeString | str:
        if obj.proposal_id is None or obj.write_back_state == WriteBackState.WRITTEN:
            return ""
        return _undo_link(
            obj.proposal_id, f"Undo the approval of {obj.erp_code} for {obj.counterparty}"
        )

    @admin.action(description="Write the codes to ATLAS again", permissions=["approve"])
    def retry_write_back(self, request: HttpRequest, queryset: QuerySet) -> None:
        ids = list(
            queryset.filter(write_back_state__in=["pending", "failed"]).values_list("pk", flat=True)
        )
        enqueue_write_back(ids)
        self.message_user(
            request, f"Queued the write-back of {counted(len(ids), 'mapping', 'mappings')}."
        )


# --- master-data corrections ----------------------------------------------------------------


class MasterDataCorrectionForm(forms.ModelForm):
    gl_account = forms.CharField(required=False, label="GL account")
    iban = forms.CharField(required=False, label="IBAN")
    swift_bic = forms.CharField(required=False, label="SWIFT/BIC")

    class Meta:
        model = MasterDataCorrection
        fields = ("counterparty", "reason")

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        changes = {name: data[name] for name in MasterDataCorrection.FIELDS if data.get(name)}
        if not changes:
            raise forms.ValidationError("Enter at least one of GL account, IBAN, SWIFT/BIC.")
        try:
            data["changes"] = master_data_correction_validate(changes=changes)
        except ApplicationError as error:
            for name, text in error.details.items():
                self.add_error(name if name in self.fields else None, text)
        return data


@admin.register(MasterDataCorrection)
class MasterDataCorrectionAdmin(_DecisionMixin, admin.ModelAdmin):
    """Corrections of GL account, IBAN and SWIFT/BIC: requested here, approved by a finance lead,
    pushed to ATLAS; ATLAS's answer and the counterparty's history are shown."""

    approve_permission = APPROVE_CORRECTION_PERMISSION
    form = MasterDataCorrectionForm
    list_display = (
        "pk",
        "counterparty_link",
        "change_summary",
        "status",
        "requested_by",
        "approved_by",
        "pushed_at",
        "last_error",
    )
    list_filter = ("status",)
    list_select_related = ("counterparty", "requested_by", "approved_by")
    raw_id_fields = ("counterparty",)
    actions = ("approve_and_push", "retry_push")
    show_full_result_count = False

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ("counterparty", "gl_account", "iban", "swift_bic", "reason")
        return (
            "counterparty_link",
            "change_summary",
            "reason",
            "status",
            "requested_by",
            "requested_at",
            "approved_by",
            "approved_at",
            "pushed_at",
            "push_attempts",
            "last_error",
            "atlas_answer",
            "history",
        )

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return () if obj is None else self.get_fields(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False if obj is not None else super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        correction = master_data_correction_request(
            counterparty=form.cleaned_data["counterparty"],
            changes=form.cleaned_data["changes"],
            reason=form.cleaned_data.get("reason", ""),
            user=request.user,
        )
        obj.pk = correction.pk
        obj.__dict__.update(correction.__dict__)

    @admin.display(description="Counterparty")
    def counterparty_link(self, obj: MasterDataCorrection) -> SafeString:
        return _counterparty_link(obj.counterparty)

    @admin.display(description="Change")
    def change_summary(self, obj: MasterDataCorrection) -> SafeString:
        def shown(name: str, value: Any) -> str:
            return _iban_display(value) if name == "iban" else (value or "—")

        return format_html_join(
            "",
            "<div>{}: {} → <b>{}</b></div>",
            (
                (
                    CORRECTION_FIELD_LABELS.get(name, name),
                    shown(name, obj.before.get(name)),
                    shown(name, value),
                )
                for name, value in obj.after.items()
            ),
        )

    @admin.display(description="Counterparty history (mirror and write-backs)")
    def history(self, obj: MasterDataCorrection) -> SafeString:
        changes = counterparty_history(counterparty=obj.counterparty)[:20]
        return (
            format_html_join(
                "",
                "<div>{} <i>{}</i>: {}</div>",
                (
                    (
                        f"{c.changed_at:%Y-%m-%d %H:%M}",
                        c.source,
                        "; ".join(f"{k}: {v[0]!r} → {v[1]!r}" for k, v in c.changes.items()),
                    )
                    for c in changes
                ),
            )
            or "—"
        )

    @admin.action(description="Approve selected and push them to ATLAS", permissions=["approve"])
    def approve_and_push(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        if "confirm" not in request.POST:
            return self._approval_page(request, list(queryset.select_related("counterparty")))
        try:
            master_data_correction_approve(corrections=queryset, user=request.user, push=False)
        except ApplicationError as error:
            self.message_user(request, error.message, messages.ERROR)
            return
        ids = list(queryset.values_list("pk", flat=True))
        _enqueue_push(ids)
        self.message_user(
            request,
            f"Approved {counted(len(ids), 'correction', 'corrections')}; pushing to ATLAS.",
            messages.SUCCESS,
        )

    def _approval_page(
        self, request: HttpRequest, corrections: list[MasterDataCorrection]
    ) -> HttpResponse:
        """Ask before approving: each change as it will reach ATLAS; a correction whose field
        changed in ATLAS since it was requested, or that is no longer a draft, is marked."""
        rows = []
        for correction in corrections:
            risks = []
            if correction.status != MasterDataCorrection.Status.DRAFT:
                risks.append(
                    f"It is {correction.get_status_display().lower()}; only a draft can be "
                    "approved."
                )
            for name in correction.after:
                requested_from = correction.before.get(name) or ""
                now_in_atlas = getattr(correction.counterparty, name, "") or ""
                if requested_from != now_in_atlas:
                    shown = _iban_display(now_in_atlas) if name == "iban" else now_in_atlas
                    risks.append(
                        f"{CORRECTION_FIELD_LABELS.get(name, name)} changed in ATLAS since the "
                        f"request (now {shown or '—'}); approving overwrites it."
                    )
            rows.append(
                {
                    "cells": [
                        str(correction.counterparty),
                        self.change_summary(correction),
                        correction.reason or "—",
                        correction.requested_by.get_username() if correction.requested_by else "—",
                    ],
                    "risks": risks,
                }
            )
        count, risky = len(corrections), sum(1 for row in rows if row["risks"])
        return confirmation_page(
            self,
            request,
            title=ngettext(
                "Approve this correction?", "Approve these %(count)d corrections?", count
            )
            % {"count": count},
            intro=ngettext(
                "The change below is pushed to ATLAS (Counterparty/Post) once approved.",
                "The changes below are pushed to ATLAS (Counterparty/Post) once approved.",
                count,
            ),
            columns=["Counterparty", "Change", "Reason", "Requested by"],
            table_rows=rows,
            risky_count=risky,
            risky_warning=ngettext(
                "%(count)d correction needs checking (see why above).",
                "%(count)d corrections need checking (see why above).",
                risky,
            )
            % {"count": risky},
            hidden=_action_fields("approve_and_push", corrections),
            submit_label=ngettext("Approve and push", "Approve and push them", count),
            cancel_url=request.get_full_path(),
            breadcrumb_url=reverse("admin:ledger_sync_masterdatacorrection_changelist"),
            breadcrumb_label="Master-data corrections",
        )

    @admin.action(description="Push failed corrections again", permissions=["approve"])
    def retry_push(self, request: HttpRequest, queryset: QuerySet) -> None:
        ids = list(
            queryset.filter(status=MasterDataCorrection.Status.FAILED).values_list("pk", flat=True)
        )
        _enqueue_push(ids)
        self.message_user(
            request, f"Queued {counted(len(ids), 'correction', 'corrections')} to push again."
        )


# --- custom field mappings --------------------------------------------------------------------


@admin.register(CustomFieldMapping)
class CustomFieldMappingAdmin(admin.ModelAdmin):
    """One page: every ATLAS custom field with sample values and its mapping, required fields
    without a mapping highlighted; a finance lead edits the mapping in place."""

    change_list_template = "admin/ledger_sync/custom_field_mappings.html"

    def get_urls(self) -> list[Any]:
        return [
            path(
                "set/",
                self.admin_site.admin_view(self.set_view),
                name="ledger_sync_customfieldmapping_set",
            ),
            *super().get_urls(),
        ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Changes go through set_view (custom_field_mapping_set records who, when, before and
        # after); Django's own change form would save the row without that history.
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        rows = custom_field_rows()
        context = {
            **self.admin_site.each_context(request),
            "title": "Custom field mappings",
            "opts": self.model._meta,
            "rows": rows,
            "unmapped_required": sum(1 for row in rows if row.needs_attention),
            "can_change": request.user.has_perm(CUSTOM_FIELD_PERMISSION),
            "history_url": reverse("admin:ledger_sync_customfieldmappingchange_changelist"),
            "suggestions": custom_field_target_suggestions(),
            **(extra_context or {}),
        }
        return TemplateResponse(request, self.change_list_template, context)

    def set_view(self, request: HttpRequest) -> HttpResponse:
        back = HttpResponseRedirect(reverse("admin:ledger_sync_customfieldmapping_changelist"))
        if request.method != "POST":
            return back
        if not request.user.has_perm(CUSTOM_FIELD_PERMISSION):
            raise PermissionDenied("Only a finance lead may change custom field mappings.")
        definition = get_object_or_404(CustomFieldDefinition, pk=request.POST.get("definition"))
        choice = request.POST.get("choice", "map")
        try:
            if choice == "remove":
                custom_field_mapping_remove(definition=definition, user=request.user)
                text = f"{definition.name}: mapping removed."
            elif choice == "ignore":
                custom_field_mapping_set(definition=definition, ignored=True, user=request.user)
                text = f"{definition.name}: ignored."
            else:
                key = request.POST.get("target_key", "")
                custom_field_mapping_set(definition=definition, target_key=key, user=request.user)
                text = f"{definition.name} → entry_values[{key.strip()!r}]."
        except ApplicationError as error:
            # The page again, with what was typed still in its box and the error beside it.
            return self.changelist_view(
                request,
                {
                    "error_definition": definition.pk,
                    "error_message": error.message,
                    "entered_key": request.POST.get("target_key", ""),
                },
            )
        self.message_user(request, text, messages.SUCCESS)
        return back


@admin.register(CustomFieldMappingChange)
class CustomFieldMappingChangeAdmin(ReadOnlyPermissions, admin.ModelAdmin):
    list_display = ("changed_at", "definition", "before", "after", "changed_by")
    list_filter = ("definition",)
    list_select_related = ("definition", "changed_by")
    readonly_fields = ("definition", "changed_by", "changed_at", "before", "after")
