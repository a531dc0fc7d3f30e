"""Match ATLAS counterparties to ERP parties, and decide on the proposals.

The services around the pure engine (services/match_engine.py) store proposals, approve or
reject them (finance leads only), create new ERP parties for "no match" and hand the resulting
codes to the write-back.
"""

from __future__ import annotations

import logging
import string
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from ledger_sync.errors import ApplicationError, InvalidTransition
from ledger_sync.models import (
    Counterparty,
    CounterpartyMapping,
    ErpParty,
    MatchProposal,
    WriteBackState,
)
from ledger_sync.services.counterparty_writeback import counterparty_mappings_write_back
from ledger_sync.services.match_decisions import (
    approval_refuse_unconfirmed,
    erp_codes_refuse_taken,
    erp_parties_lock,
    match_proposals_risks,
    require_match_approver,
)
from ledger_sync.services.match_engine import (
    Candidate,
    CounterpartyRecord,
    PartyIndex,
    PartyRecord,
    auto_suggest_score,
)
from ledger_sync.services.normalise import (
    iban_compact,
    iban_country,
    vat_normalise,
)
from ledger_sync.services.rechecks import orders_recheck_enqueue

logger = logging.getLogger(__name__)

# --- proposals in the database --------------------------------------------------------------------


@dataclass
class MatchingSummary:
    mapped_from_external_id: int = 0
    remapped_from_external_id: int = 0
    flagged_unknown_code: int = 0
    counterparties_with_proposals: int = 0
    proposals_created: int = 0
    without_candidates: int = 0
    counterparty_ids_without_candidates: list[int] = field(default_factory=list)


def party_index_build() -> PartyIndex:
    """An index of the active ERP parties (an inactive one is never proposed)."""
    rows = ErpParty.objects.filter(active=True).values_list(
        "pk", "code", "legal_name", "vat", "iban"
    )
    return PartyIndex(
        PartyRecord(pk=pk, code=code, legal_name=name, vat=vat, iban=iban)
        for pk, code, name, vat, iban in rows
    )


def counterparty_propose_matches(
    *,
    counterparties: QuerySet | None = None,
    limit: int | None = None,
    now: datetime | None = None,
) -> MatchingSummary:
    """Map counterparties that carry an `externalId`, and propose ERP parties for the rest.

    Mappings first follow any `externalId` changed in ATLAS (flagged). Then only counterparties
    without a mapping are looked at. A counterparty whose `externalId` is
    a known ERP code is mapped to it; an unknown code is mapped too (journals use it, CONTRACT)
    but flagged for a person. For the others, the best `limit` candidates are stored as
    proposals: pairs already approved, rejected or superseded are left as they are, and a
    rejected pair is never proposed again. Safe to run again at any time.
    """
    now = now or timezone.now()
    limit = limit or int(getattr(settings, "ERP_MATCH_CANDIDATES", 3))
    queryset = counterparties if counterparties is not None else Counterparty.objects.all()
    queryset = queryset.filter(erp_mapping__isnull=True).order_by("pk")
    summary = MatchingSummary()
    counterparty_mappings_follow_external_id(summary=summary)
    index = party_index_build()
    parties_by_code = dict(ErpParty.objects.values_list("code", "pk"))

    for chunk in _chunked(queryset.iterator(chunk_size=500), 500):
        ids = [counterparty.pk for counterparty in chunk]
        decided: dict[int, set[str]] = defaultdict(set)
        open_proposals: dict[int, dict[int, MatchProposal]] = defaultdict(dict)
        for proposal in MatchProposal.objects.filter(counterparty_id__in=ids).select_related(
            "erp_party"
        ):
            if proposal.status == MatchProposal.Status.PROPOSED:
                open_proposals[proposal.counterparty_id][proposal.erp_party_id] = proposal
            else:
                decided[proposal.counterparty_id].add(proposal.erp_party.code)

        writes = _ProposalWrites()
        for counterparty in chunk:
            external_id = (counterparty.external_id or "").strip()
            if external_id:
                _mapping_from_external_id(
                    counterparty=counterparty,
                    code=external_id,
                    party_pk=parties_by_code.get(external_id),
                    summary=summary,
                )
                continue
            candidates = index.candidates(
                CounterpartyRecord(
                    key=counterparty.pk,
                    name=counterparty.name,
                    legal_name=counterparty.legal_name,
                    vat=counterparty.vat,
                    iban=counterparty.iban,
                ),
                limit=limit,
                exclude_codes=decided[counterparty.pk],
            )
            _proposals_plan(
                counterparty_id=counterparty.pk,
                candidates=candidates,
                existing=open_proposals[counterparty.pk],
                now=now,
                writes=writes,
                summary=summary,
            )
        writes.flush(summary)
    return summary


def _mapping_from_external_id(
    *, counterparty: Any, code: str, party_pk: int | None, summary: MatchingSummary
) -> None:
    flagged = party_pk is None
    try:
        with transaction.atomic():
            CounterpartyMapping.objects.create(
                counterparty=counterparty,
                erp_code=code,
                erp_party_id=party_pk,
                source=CounterpartyMapping.Source.EXTERNAL_ID,
                flagged=flagged,
                flag_reason=_unknown_code_reason(code) if flagged else "",
                write_back_state=WriteBackState.NOT_NEEDED,
            )
            # Anything still open for this counterparty is moot now that ATLAS names its code.
            MatchProposal.objects.filter(
                counterparty=counterparty, status=MatchProposal.Status.PROPOSED
            ).update(status=MatchProposal.Status.SUPERSEDED)
    except IntegrityError:
        # A concurrent pass mapped it first; its mapping stands.
        return
    summary.mapped_from_external_id += 1
    summary.flagged_unknown_code += int(flagged)


def _unknown_code_reason(code: str) -> str:
    return (
        f"ATLAS externalId {code!r} is not in the ERP party register; journals use it. "
        "Import the ERP party, or correct the externalId in ATLAS."
    )


def counterparty_mappings_follow_external_id(*, summary: MatchingSummary | None = None) -> int:
    """Bring mappings in line with ATLAS when someone changed a counterparty's `externalId` there.

    The guide makes `externalId` the stable key, so the mapping follows it; the change is
    flagged for a person, since it overrides an earlier decision. Mappings still waiting to be
    written to ATLAS are left alone (their write-back reports the disagreement instead).
    Returns how many mappings changed.
    """
    parties_by_code = dict(ErpParty.objects.values_list("code", "pk"))
    stale = (
        CounterpartyMapping.objects.exclude(counterparty__external_id__isnull=True)
        .exclude(counterparty__external_id="")
        .exclude(write_back_state__in=[WriteBackState.PENDING, WriteBackState.FAILED])
        .select_related("counterparty")
    )
    changed = 0
    for mapping in stale.iterator(chunk_size=500):
        code = mapping.counterparty.external_id.strip()
        if code == mapping.erp_code:
            continue
        party_pk = parties_by_code.get(code)
        reason = f"ATLAS externalId changed from {mapping.erp_code!r} to {code!r}; check it."
        if party_pk is None:
            reason += " " + _unknown_code_reason(code)
        CounterpartyMapping.objects.filter(pk=mapping.pk).update(
            erp_code=code,
            erp_party_id=party_pk,
            source=CounterpartyMapping.Source.EXTERNAL_ID,
            flagged=True,
            flag_reason=reason,
            write_back_state=WriteBackState.NOT_NEEDED,
            updated_at=timezone.now(),
        )
        changed += 1
    if summary is not None:
        summary.remapped_from_external_id += changed
    return changed


@dataclass
class _ProposalWrites:
    """What one chunk of counterparties changes, written in one transaction at its end."""

    create: list[MatchProposal] = field(default_factory=list)
    update: list[MatchProposal] = field(default_factory=list)
    withdraw: list[int] = field(default_factory=list)

    @transaction.atomic
    def flush(self, summary: MatchingSummary) -> None:
        if self.create:
            # A pair stored by a concurrent pass, or decided by a person meanwhile, stands.
            MatchProposal.objects.bulk_create(self.create, ignore_conflicts=True, batch_size=500)
            summary.proposals_created += len(self.create)
        if self.update:
            MatchProposal.objects.bulk_update(
                self.update, ["score", "reasons", "rank"], batch_size=500
            )
        if self.withdraw:
            MatchProposal.objects.filter(
                pk__in=self.withdraw, status=MatchProposal.Status.PROPOSED
            ).delete()


def _proposals_plan(
    *,
    counterparty_id: int,
    candidates: Sequence[Candidate],
    existing: dict[int, MatchProposal],
    now: datetime,
    writes: _ProposalWrites,
    summary: MatchingSummary,
) -> None:
    keep: set[int] = set()
    for rank, candidate in enumerate(candidates, start=1):
        party_pk = candidate.party.pk
        keep.add(party_pk)
        reasons = [reason.as_json() for reason in candidate.reasons]
        proposal = existing.get(party_pk)
        if proposal is None:
            writes.create.append(
                MatchProposal(
                    counterparty_id=counterparty_id,
                    erp_party_id=party_pk,
                    score=candidate.score,
                    reasons=reasons,
                    rank=rank,
                    proposed_at=now,
                )
            )
        elif (proposal.score, proposal.reasons, proposal.rank) != (candidate.score, reasons, rank):
            proposal.score, proposal.reasons, proposal.rank = candidate.score, reasons, rank
            writes.update.append(proposal)
    # Open proposals that are no longer among the best (the register changed) are withdrawn;
    # decided ones are history and stay.
    writes.withdraw.extend(p.pk for party_pk, p in existing.items() if party_pk not in keep)
    if candidates:
        summary.counterparties_with_proposals += 1
    else:
        summary.without_candidates += 1
        summary.counterparty_ids_without_candidates.append(counterparty_id)


@dataclass
class ApprovalResult:
    mappings: list[CounterpartyMapping]
    write_back: Any = None  # counterparty_writeback.WriteBackResult when written


def match_proposal_approve(
    *,
    proposals: Iterable[MatchProposal] | QuerySet,
    user: Any,
    write_back: bool = True,
    confirmed: bool = False,
    client: Any = None,
    now: datetime | None = None,
) -> ApprovalResult:
    """Approve proposals (one per counterparty), map the counterparties to the proposed ERP
    codes, then write the codes to ATLAS as `externalId` in one batched Counterparty/Post.

    A candidate below the auto-suggest threshold, or whose VAT number or IBAN conflicts with
    the counterparty's, is approved only with `confirmed=True` (after a person saw the
    confirmation page); otherwise ApprovalNeedsConfirmation lists them and nothing is saved.
    An ERP code already mapped to another counterparty is refused.

    The decisions are committed before ATLAS is called: a failed write-back leaves the mapping
    approved with its write-back state FAILED and the error on it, to be retried.
    """
    require_match_approver(user)
    now = now or timezone.now()
    ids = [p.pk for p in proposals]
    try:
        mappings = _proposals_approve(ids=ids, user=user, now=now, confirmed=confirmed)
    except IntegrityError:
        # Someone mapped one of these counterparties in the same instant (SQLite has no row
        # locks to make the second approver wait); nothing of this approval was saved.
        raise InvalidTransition(
            "One of these counterparties was mapped by someone else just now; reload the page."
        ) from None
    orders_recheck_enqueue(
        reason="match approved", counterparty_ids=[m.counterparty_id for m in mappings]
    )
    result = ApprovalResult(mappings=mappings)
    if write_back and mappings:
        result.write_back = counterparty_mappings_write_back(
            mappings=CounterpartyMapping.objects.filter(pk__in=[m.pk for m in mappings]),
            client=client,
        )
    return result


@transaction.atomic
def _proposals_approve(
    *, ids: list[int], user: Any, now: datetime, confirmed: bool
) -> list[CounterpartyMapping]:
    locked = list(
        MatchProposal.objects.select_for_update()
        .filter(pk__in=ids)
        .select_related("erp_party", "counterparty")
        .order_by("pk")
    )
    if len(locked) != len(set(ids)):
        raise ApplicationError("Some proposals no longer exist; reload the page and try again.")
    seen: dict[int, MatchProposal] = {}
    for proposal in locked:
        if proposal.status != MatchProposal.Status.PROPOSED:
            raise InvalidTransition(
                f"Proposal {proposal.erp_party.code} for counterparty "
                f"{proposal.counterparty} is already {proposal.get_status_display().lower()}.",
                details={"proposal": proposal.pk},
            )
        if proposal.counterparty_id in seen:
            raise ApplicationError(
                f"Counterparty {proposal.counterparty} has two proposals selected "
                f"({seen[proposal.counterparty_id].erp_party.code} and "
                f"{proposal.erp_party.code}); approve one of them.",
                details={"counterparty": proposal.counterparty_id},
            )
        seen[proposal.counterparty_id] = proposal
    already = set(
        CounterpartyMapping.objects.filter(counterparty_id__in=seen).values_list(
            "counterparty_id", flat=True
        )
    )
    if already:
        raise InvalidTransition(
            "Counterparties already mapped: "
            + ", ".join(str(seen[cid].counterparty) for cid in sorted(already)),
            details={"counterparties": sorted(already)},
        )
    if not confirmed:
        approval_refuse_unconfirmed(
            risks=match_proposals_risks(proposals=locked, threshold=auto_suggest_score())
        )
    erp_parties_lock(party_ids=[p.erp_party_id for p in locked])
    erp_codes_refuse_taken(
        codes_by_counterparty={p.counterparty_id: p.erp_party.code for p in locked}
    )

    mappings = []
    for proposal in locked:
        proposal.status = MatchProposal.Status.APPROVED
        proposal.decided_by = user
        proposal.decided_at = now
        proposal.save(update_fields=["status", "decided_by", "decided_at"])
        mappings.append(
            CounterpartyMapping.objects.create(
                counterparty_id=proposal.counterparty_id,
                erp_code=proposal.erp_party.code,
                erp_party=proposal.erp_party,
                source=CounterpartyMapping.Source.PROPOSAL,
                proposal=proposal,
                approved_by=user,
                approved_at=now,
                write_back_state=WriteBackState.PENDING,
            )
        )
    MatchProposal.objects.filter(
        counterparty_id__in=seen, status=MatchProposal.Status.PROPOSED
    ).update(status=MatchProposal.Status.SUPERSEDED, decided_by=user, decided_at=now)
    logger.info("match proposals approved", extra={"count": len(mappings), "user": user.pk})
    return mappings


@transaction.atomic
def match_proposal_reject(
    *, proposals: Iterable[MatchProposal] | QuerySet, user: Any, now: datetime | None = None
) -> int:
    """Reject proposals. A rejected pair is kept, so matching never proposes it again."""
    require_match_approver(user)
    now = now or timezone.now()
    ids = [p.pk for p in proposals]
    locked = list(MatchProposal.objects.select_for_update().filter(pk__in=ids).order_by("pk"))
    for proposal in locked:
        if proposal.status != MatchProposal.Status.PROPOSED:
            raise InvalidTransition(
                f"Proposal {proposal.pk} is already {proposal.get_status_display().lower()}.",
                details={"proposal": proposal.pk},
            )
    MatchProposal.objects.filter(pk__in=[p.pk for p in locked]).update(
        status=MatchProposal.Status.REJECTED, decided_by=user, decided_at=now
    )
    return len(locked)


# --- "no match": a new ERP party ---------------------------------------------------------------


def erp_party_next_code(*, pattern: str | None = None) -> str:
    """The next free code from ERP_PARTY_CODE_PATTERN, e.g. "CUST-{number:06d}" -> CUST-000042.

    The number is one more than the highest number already used by codes of that pattern.
    """
    pattern = pattern or str(getattr(settings, "ERP_PARTY_CODE_PATTERN", "ERP-{number:06d}"))
    fields = [name for _, name, _, _ in string.Formatter().parse(pattern) if name]
    if fields != ["number"]:
        raise ApplicationError(
            f"ERP_PARTY_CODE_PATTERN {pattern!r} must contain exactly one {{number}} "
            "placeholder, e.g. 'ERP-{number:06d}'."
        )
    prefix = pattern.split("{", 1)[0]
    highest = 0
    for code in ErpParty.objects.filter(code__startswith=prefix).values_list("code", flat=True):
        number = _number_in(code, pattern)
        if number is not None:
            highest = max(highest, number)
    return pattern.format(number=highest + 1)


def _number_in(code: str, pattern: str) -> int | None:
    before, _, rest = pattern.partition("{")
    after = rest.partition("}")[2]
    if not code.startswith(before) or not code.endswith(after):
        return None
    digits = code[len(before) : len(code) - len(after) if after else None]
    return int(digits) if digits.isdigit() else None


def counterparty_create_erp_party(
    *,
    counterparty: Any,
    user: Any,
    role: str = ErpParty.Role.BOTH,
    write_back: bool = True,
    client: Any = None,
    now: datetime | None = None,
) -> CounterpartyMapping:
    """Resolve "no match": create an ERP party from the counterparty's data with the next code
    of ERP_PARTY_CODE_PATTERN, map the counterparty to it and write the code back to ATLAS."""
    require_match_approver(user)
    now = now or timezone.now()
    mapping = _erp_party_create_and_map(counterparty=counterparty, user=user, role=role, now=now)
    orders_recheck_enqueue(reason="ERP party created", counterparty_ids=[mapping.counterparty_id])
    if write_back:
        counterparty_mappings_write_back(
            mappings=CounterpartyMapping.objects.filter(pk=mapping.pk), client=client
        )
        mapping.refresh_from_db()
    return mapping


@transaction.atomic
def _erp_party_create_and_map(
    *, counterparty: Any, user: Any, role: str, now: datetime
) -> CounterpartyMapping:
    counterparty = Counterparty.objects.select_for_update().get(pk=counterparty.pk)
    if CounterpartyMapping.objects.filter(counterparty=counterparty).exists():
        raise InvalidTransition(f"Counterparty {counterparty} is already mapped to an ERP code.")
    vat = vat_normalise(counterparty.vat, country_hint=iban_country(counterparty.iban))
    # Codes are unique; two people creating parties at once retry with the next number.
    for _attempt in range(5):
        code = erp_party_next_code()
        try:
            with transaction.atomic():
                party = ErpParty.objects.create(
                    code=code,
                    legal_name=counterparty.legal_name or counterparty.name,
                    vat=vat.full if vat else "",
                    iban=iban_compact(counterparty.iban),
                    role=role,
                )
            break
        except IntegrityError:
            continue
    else:  # pragma: no cover - five collisions in a row means something else is wrong
        raise ApplicationError("Could not find a free ERP party code; try again.")
    MatchProposal.objects.filter(
        counterparty=counterparty, status=MatchProposal.Status.PROPOSED
    ).update(status=MatchProposal.Status.SUPERSEDED, decided_by=user, decided_at=now)
    return CounterpartyMapping.objects.create(
        counterparty=counterparty,
        erp_code=party.code,
        erp_party=party,
        source=CounterpartyMapping.Source.NEW_PARTY,
        approved_by=user,
        approved_at=now,
        write_back_state=WriteBackState.PENDING,
    )


def _chunked(iterable: Iterable[Any], size: int) -> Iterable[list[Any]]:
    chunk: list[Any] = []
    for item in iterable:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
