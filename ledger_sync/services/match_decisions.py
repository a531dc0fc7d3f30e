"""Safe decisions on counterparty matches: what makes an approval risky, one ERP code per
counterparty, and undoing a decision until its code has reached ATLAS.

`match_proposal_approve` (services/matching.py) calls `match_proposals_risks` and
`erp_codes_refuse_taken` inside its locked transaction, so a risky approval or a code already
given to another counterparty is refused whatever page, action or script asked for it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from ledger_sync.errors import ApplicationError, InvalidTransition
from ledger_sync.models import (
    Counterparty,
    CounterpartyMapping,
    ErpParty,
    Journal,
    JournalLine,
    MatchProposal,
    WriteBackState,
)
from ledger_sync.services.normalise import (
    iban_compact,
    iban_country,
    iban_mask,
    vat_normalise,
)

logger = logging.getLogger(__name__)

APPROVE_PERMISSION = "ledger_sync.approve_matchproposal"


def require_match_approver(user: Any) -> None:
    """Refuse anyone without the finance lead's permission to decide on matches."""
    if user is None or not user.has_perm(APPROVE_PERMISSION):
        raise PermissionDenied("Only a finance lead may approve or reject match proposals.")


class ApprovalNeedsConfirmation(ApplicationError):
    """An approval of candidates that a person must confirm explicitly (`confirmed=True`)."""


@dataclass(frozen=True)
class ApprovalRisk:
    """Why approving one proposal needs an explicit confirmation."""

    proposal_id: int
    counterparty: str
    erp_code: str
    score: int
    reasons: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "proposal": self.proposal_id,
            "counterparty": self.counterparty,
            "erp_code": self.erp_code,
            "score": self.score,
            "reasons": list(self.reasons),
        }


def match_proposal_risks(*, proposal: MatchProposal, threshold: int) -> tuple[str, ...]:
    """The reasons approving `proposal` is risky, judged on today's data of both sides: a score
    below the auto-suggest threshold, VAT numbers that differ, IBANs that differ."""
    counterparty, party = proposal.counterparty, proposal.erp_party
    reasons = []
    if proposal.score < threshold:
        reasons.append(f"score {proposal.score} is below the auto-suggest threshold of {threshold}")
    ours = vat_normalise(counterparty.vat, country_hint=iban_country(counterparty.iban))
    theirs = vat_normalise(party.vat, country_hint=iban_country(party.iban))
    # As in the scoring: only two valid numbers prove two legal entities.
    if ours and theirs and ours.is_valid and theirs.is_valid:
        same = ours.full == theirs.full or (
            (not ours.country or not theirs.country) and ours.number == theirs.number
        )
        if not same:
            reasons.append(f"VAT numbers differ (ATLAS {ours.full}, ERP {theirs.full})")
    atlas_iban, erp_iban = iban_compact(counterparty.iban), iban_compact(party.iban)
    if atlas_iban and erp_iban and atlas_iban != erp_iban:
        reasons.append(f"IBANs differ (ATLAS {iban_mask(atlas_iban)}, ERP {iban_mask(erp_iban)})")
    return tuple(reasons)


def match_proposals_risks(
    *, proposals: Iterable[MatchProposal], threshold: int
) -> list[ApprovalRisk]:
    """The proposals among `proposals` that need a confirmation, each with its reasons.
    The proposals must come with `counterparty` and `erp_party` loaded."""
    risks = []
    for proposal in proposals:
        reasons = match_proposal_risks(proposal=proposal, threshold=threshold)
        if reasons:
            risks.append(
                ApprovalRisk(
                    proposal_id=proposal.pk,
                    counterparty=str(proposal.counterparty),
                    erp_code=proposal.erp_party.code,
                    score=proposal.score,
                    reasons=reasons,
                )
            )
    return risks


def approval_refuse_unconfirmed(*, risks: Sequence[ApprovalRisk]) -> None:
    """Raise ApprovalNeedsConfirmation naming every risky proposal and why."""
    if not risks:
        return
    listed = "; ".join(f"{r.counterparty} → {r.erp_code}: {', '.join(r.reasons)}" for r in risks)
    raise ApprovalNeedsConfirmation(
        f"{len(risks)} of the selected candidates need an explicit confirmation ({listed}). "
        "Check them on the confirmation page, or reject them.",
        details={"risks": [risk.as_json() for risk in risks]},
    )


def erp_codes_refuse_taken(*, codes_by_counterparty: dict[int, str]) -> None:
    """Refuse to give an ERP code to a counterparty when another counterparty is mapped to it,
    or when two of the counterparties being mapped would share it.

    Called inside the approving transaction after `erp_parties_lock`: on PostgreSQL two people
    approving the same code for two counterparties at once are serialised by the ERP party's
    row lock, and the second sees the first's mapping; SQLite takes its write lock at BEGIN
    (transaction_mode IMMEDIATE), which serialises the whole approval.
    """
    by_code: dict[str, list[int]] = {}
    for counterparty_id, code in codes_by_counterparty.items():
        by_code.setdefault(code, []).append(counterparty_id)
    taken = {
        mapping.erp_code: mapping
        for mapping in CounterpartyMapping.objects.filter(erp_code__in=list(by_code))
        .exclude(counterparty_id__in=list(codes_by_counterparty))
        .select_related("counterparty")
    }
    names = {
        cp.pk: str(cp) for cp in Counterparty.objects.filter(pk__in=list(codes_by_counterparty))
    }
    for code, counterparty_ids in sorted(by_code.items()):
        wanted = ", ".join(names.get(pk, str(pk)) for pk in counterparty_ids)
        if code in taken:
            other = taken[code]
            raise ApplicationError(
                f"ERP code {code} is already mapped to {other.counterparty}; it cannot also be "
                f"given to {wanted}. One ERP party is one legal entity: reject this candidate, "
                f"or undo or correct the mapping of {other.counterparty} first.",
                details={
                    "erp_code": code,
                    "mapped_counterparty": other.counterparty_id,
                    "fix_url": reverse(
                        "admin:ledger_sync_counterpartymapping_change", args=[other.pk]
                    ),
                },
            )
        if len(counterparty_ids) > 1:
            raise ApplicationError(
                f"ERP code {code} was selected for {len(counterparty_ids)} counterparties "
                f"({wanted}); one ERP party maps to one counterparty. Approve one of them.",
                details={"erp_code": code, "counterparties": sorted(counterparty_ids)},
            )


def erp_parties_lock(*, party_ids: Iterable[int]) -> None:
    """Lock the ERP parties' rows for the rest of the transaction (in a stable order, so two
    approvals never wait on each other crosswise). Explicit, so that the code check stays
    serialised whatever other queries of the approval happen to lock."""
    list(
        ErpParty.objects.select_for_update()
        .filter(pk__in=sorted(set(party_ids)))
        .order_by("pk")
        .values_list("pk", flat=True)
    )


# --- undo -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UndoCheck:
    """Whether a decision can still be undone, and if not, why."""

    possible: bool
    reason: str = ""


def match_proposal_undo_check(*, proposal: MatchProposal) -> UndoCheck:
    """Can the decision on `proposal` be undone? An approval can until its code is written to
    ATLAS (or used on a journal); a rejection can while the counterparty is unmapped."""
    if proposal.status == MatchProposal.Status.REJECTED:
        mapped = CounterpartyMapping.objects.filter(counterparty_id=proposal.counterparty_id)
        if mapped.exists():
            return UndoCheck(
                False,
                f"{proposal.counterparty} has been mapped to an ERP code since; the rejection "
                "no longer matters.",
            )
        return UndoCheck(True)
    if proposal.status != MatchProposal.Status.APPROVED:
        return UndoCheck(
            False, f"The proposal is {proposal.get_status_display().lower()}: nothing to undo."
        )
    mapping = CounterpartyMapping.objects.filter(proposal=proposal).first()
    if mapping is None:
        return UndoCheck(False, "Its mapping no longer exists; nothing to undo.")
    return _mapping_undo_check(mapping)


def _mapping_undo_check(mapping: CounterpartyMapping) -> UndoCheck:
    if mapping.write_back_state == WriteBackState.WRITTEN:
        when = f" on {mapping.written_back_at:%Y-%m-%d %H:%M}" if mapping.written_back_at else ""
        return UndoCheck(
            False,
            f"ERP code {mapping.erp_code} was written to ATLAS as externalId of "
            f"{mapping.counterparty}{when}; it can no longer be undone here. To change it, "
            "correct the externalId in ATLAS; the mapping follows at the next mirror pass.",
        )
    used = (
        JournalLine.objects.filter(
            billing_account_num=mapping.erp_code,
            journal__order_sync__order__counterparty_id=mapping.counterparty_id,
        )
        .exclude(journal__status=Journal.Status.REJECTED)
        .values_list("journal__source_transaction_reference", flat=True)
        .first()
    )
    if used:
        return UndoCheck(
            False,
            f"Journal {used} already uses ERP code {mapping.erp_code}; reject or reverse it "
            "before undoing the match.",
        )
    return UndoCheck(True)


@transaction.atomic
def match_proposal_undo(
    *, proposal: MatchProposal, user: Any, now: datetime | None = None
) -> MatchProposal:
    """Undo the decision on `proposal`: an approval (its mapping removed, the candidates of that
    counterparty proposed again) until the code is written to ATLAS, or a rejection (proposed
    again). Refused with the reason otherwise. Finance leads only."""
    require_match_approver(user)
    now = now or timezone.now()
    proposal = (
        MatchProposal.objects.select_for_update()
        .select_related("counterparty", "erp_party")
        .get(pk=proposal.pk)
    )
    mapping = None
    if proposal.status == MatchProposal.Status.APPROVED:
        # Locked, so a write-back that marks it written waits for this decision or wins first.
        mapping = (
            CounterpartyMapping.objects.select_for_update()
            .select_related("counterparty")
            .filter(proposal=proposal)
            .first()
        )
    check = match_proposal_undo_check(proposal=proposal)
    if not check.possible:
        raise InvalidTransition(
            f"Cannot undo the decision on {proposal.erp_party.code} for "
            f"{proposal.counterparty}: {check.reason}",
            details={"proposal": proposal.pk},
        )
    if mapping is not None:
        decided_at = mapping.approved_at
        mapping.delete()
        # The candidates that this approval superseded are candidates again.
        MatchProposal.objects.filter(
            counterparty_id=proposal.counterparty_id,
            status=MatchProposal.Status.SUPERSEDED,
            decided_at=decided_at,
        ).update(status=MatchProposal.Status.PROPOSED, decided_by=None, decided_at=None)
    undone = proposal.get_status_display().lower()
    proposal.status = MatchProposal.Status.PROPOSED
    proposal.decided_by = None
    proposal.decided_at = None
    proposal.save(update_fields=["status", "decided_by", "decided_at"])
    logger.info(
        "match decision undone",
        extra={"proposal": proposal.pk, "was": undone, "user": user.pk, "at": now.isoformat()},
    )
    return proposal
