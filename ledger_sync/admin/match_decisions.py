"""The confirmation and undo pages of match decisions, shared by the matching page's buttons and
the bulk actions of the matching and proposals lists.

Every approval or rejection first shows exactly what is about to be decided; risky candidates
(services/match_decisions.py) are marked with the reasons, and only a confirmation of a page
that listed each of them lets the service approve them. The success message offers "Undo" for
each decision until its ERP code is written to ATLAS.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.contrib import messages
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import ngettext
from django_q.tasks import async_task

from ledger_sync.errors import ApplicationError
from ledger_sync.models import MatchProposal
from ledger_sync.services.match_decisions import (
    ApprovalNeedsConfirmation,
    match_proposal_undo,
    match_proposal_undo_check,
    match_proposals_risks,
)
from ledger_sync.services.match_engine import auto_suggest_score
from ledger_sync.services.matching import match_proposal_approve, match_proposal_reject

CONFIRM_TEMPLATE = "admin/ledger_sync/matching/confirm.html"
WRITE_BACK_TASK = "ledger_sync.tasks.counterparty_write_back_task"
UNDO_URL = "admin:ledger_sync_counterpartymatching_undo"
SHOWN_RISK = "confirmed_risk"


def enqueue_write_back(mapping_ids: list[int]) -> None:
    """Queue the externalId write-back of these mappings once the request has committed."""
    if mapping_ids:
        transaction.on_commit(
            lambda: async_task(
                WRITE_BACK_TASK,
                mapping_ids,
                task_name=ngettext(
                    "Write %(count)d ERP code to ATLAS",
                    "Write %(count)d ERP codes to ATLAS",
                    len(mapping_ids),
                )
                % {"count": len(mapping_ids)},
            )
        )


def _loaded(proposals: Sequence[MatchProposal]) -> list[MatchProposal]:
    return list(
        MatchProposal.objects.filter(pk__in=[p.pk for p in proposals])
        .select_related("counterparty", "erp_party")
        .order_by("counterparty__atlas_id", "rank")
    )


def _rows(proposals: Sequence[MatchProposal], risks: dict[int, Sequence[str]]) -> list[dict]:
    return [
        {
            "counterparty": str(p.counterparty),
            "erp_code": p.erp_party.code,
            "erp_name": p.erp_party.legal_name,
            "score": p.score,
            "risks": risks.get(p.pk, ()),
        }
        for p in proposals
    ]


def confirmation_page(
    modeladmin: Any, request: HttpRequest, *, title: str, **context: Any
) -> TemplateResponse:
    """The page asking before a decision: `intro`, the rows decided, `hidden` fields posted back
    with `confirm`, `submit_label`, `cancel_url` (see the template for the rest)."""
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": title,
        "opts": modeladmin.model._meta,
        "form_action": request.get_full_path(),
        "can_submit": True,
        **context,
    }
    return TemplateResponse(request, CONFIRM_TEMPLATE, context)


def _undo_links(proposals: Sequence[MatchProposal], verb: str) -> Any:
    return format_html_join(
        "; ",
        '{} → {} (<a href="{}" aria-label="Undo {} of {} for {}">undo</a>)',
        (
            (
                p.counterparty,
                p.erp_party.code,
                reverse(UNDO_URL, args=[p.pk]),
                verb,
                p.erp_party.code,
                p.counterparty,
            )
            for p in proposals[:10]
        ),
    )


def approve_with_confirmation(
    modeladmin: Any,
    request: HttpRequest,
    proposals: Sequence[MatchProposal],
    *,
    hidden: list[tuple[str, Any]],
    cancel_url: str,
) -> HttpResponse | None:
    """The confirmation page of an approval, or the approval once confirmed (None then: the
    caller redirects). A risky candidate is approved only when the confirmed page listed it."""
    proposals = _loaded(proposals)
    risks = {
        risk.proposal_id: risk.reasons
        for risk in match_proposals_risks(proposals=proposals, threshold=auto_suggest_score())
    }
    shown = {int(v) for v in request.POST.getlist(SHOWN_RISK) if v.isdigit()}
    refusal = ""
    if "confirm" in request.POST and set(risks) <= shown:
        try:
            result = match_proposal_approve(
                proposals=proposals, user=request.user, write_back=False, confirmed=bool(risks)
            )
        except ApprovalNeedsConfirmation as error:
            refusal = error.message  # the data changed since the page was shown
        except ApplicationError as error:
            modeladmin.message_user(request, error.message, messages.ERROR)
            return None
        else:
            enqueue_write_back([m.pk for m in result.mappings])
            approved = [m.proposal for m in result.mappings]
            count = len(approved)
            modeladmin.message_user(
                request,
                format_html(
                    "{}: {}. {}",
                    ngettext("Approved %(count)d match", "Approved %(count)d matches", count)
                    % {"count": count},
                    _undo_links(approved, "approval"),
                    ngettext(
                        "The code is being written to ATLAS; it can be undone until then.",
                        "The codes are being written to ATLAS; each can be undone until then.",
                        count,
                    ),
                ),
                messages.SUCCESS,
            )
            return None
    count, risky = len(proposals), len(risks)
    return confirmation_page(
        modeladmin,
        request,
        title=ngettext("Approve this match?", "Approve these %(count)d matches?", count)
        % {"count": count},
        intro=ngettext(
            "The counterparty below will be mapped to the ERP party, and the code written to "
            "ATLAS as its externalId.",
            "The counterparties below will be mapped to their ERP parties, and the codes written "
            "to ATLAS as their externalId.",
            count,
        ),
        rows=_rows(proposals, risks),
        risky_count=risky,
        risky_warning=ngettext(
            "%(count)d candidate needs checking (see why above); approving confirms it anyway.",
            "%(count)d candidates need checking (see why above); approving confirms them anyway.",
            risky,
        )
        % {"count": risky},
        refusal=refusal,
        hidden=[*hidden, *((SHOWN_RISK, pk) for pk in risks)],
        submit_label=(
            ngettext("Approve despite the warning", "Approve despite the warnings", risky)
            if risky
            else "Approve"
        ),
        cancel_url=cancel_url,
    )


def reject_with_confirmation(
    modeladmin: Any,
    request: HttpRequest,
    proposals: Sequence[MatchProposal],
    *,
    hidden: list[tuple[str, Any]],
    cancel_url: str,
) -> HttpResponse | None:
    """The confirmation page of a rejection, or the rejection once confirmed (None then)."""
    proposals = _loaded(proposals)
    if "confirm" in request.POST:
        try:
            match_proposal_reject(proposals=proposals, user=request.user)
        except ApplicationError as error:
            modeladmin.message_user(request, error.message, messages.ERROR)
            return None
        count = len(proposals)
        modeladmin.message_user(
            request,
            format_html(
                "{}: {}. {}",
                ngettext("Rejected %(count)d candidate", "Rejected %(count)d candidates", count)
                % {"count": count},
                _undo_links(proposals, "rejection"),
                ngettext(
                    "It will not be proposed again.", "They will not be proposed again.", count
                ),
            ),
            messages.SUCCESS,
        )
        return None
    count = len(proposals)
    return confirmation_page(
        modeladmin,
        request,
        title=ngettext("Reject this candidate?", "Reject these %(count)d candidates?", count)
        % {"count": count},
        intro="A rejected candidate is never proposed again for that counterparty "
        "(until the rejection is undone).",
        rows=_rows(proposals, {}),
        hidden=hidden,
        submit_label="Reject",
        cancel_url=cancel_url,
    )


def undo_page(
    modeladmin: Any, request: HttpRequest, proposal: MatchProposal, *, back_url: str
) -> HttpResponse | None:
    """Ask before undoing the decision on `proposal`; undo it on confirmation (None then)."""
    if request.method == "POST" and "confirm" in request.POST:
        try:
            match_proposal_undo(proposal=proposal, user=request.user)
        except ApplicationError as error:
            modeladmin.message_user(request, error.message, messages.ERROR)
            return None
        modeladmin.message_user(
            request,
            f"Undone: {proposal.erp_party.code} for {proposal.counterparty} is a candidate again.",
            messages.SUCCESS,
        )
        return None
    check = match_proposal_undo_check(proposal=proposal)
    decision = "approval" if proposal.status == MatchProposal.Status.APPROVED else "rejection"
    return confirmation_page(
        modeladmin,
        request,
        title=f"Undo the {decision} of {proposal.erp_party.code} for {proposal.counterparty}?",
        intro=(
            "The mapping is removed and the counterparty's candidates are proposed again."
            if decision == "approval"
            else "The candidate is proposed again."
        ),
        rows=_rows([proposal], {}),
        refusal="" if check.possible else check.reason,
        can_submit=check.possible,
        hidden=[],
        submit_label=f"Undo the {decision}",
        cancel_url=back_url,
    )
