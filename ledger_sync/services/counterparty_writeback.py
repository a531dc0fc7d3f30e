"""Write counterparty master data to ATLAS with Counterparty/Post: ERP codes as `externalId`, and
the corrections of master data the ERP owns (GL account, IBAN, SWIFT/BIC).

Every write is an upsert keyed by the ATLAS counterparty id carrying the whole record as
mirrored with the changed fields replaced (counterparty_post_record): ATLAS's upsert may blank
what a record does not mention, as the invoice write-back already allows for. Sending it twice
(a retry after a timeout, two workers) has the effect of sending it once. All pending records
go in one call (the client splits it into batches of ATLAS_BATCH_SIZE). ATLAS answers with
the saved records: that answer is mirrored onto the local counterparty at once, with a
RecordChange of source "write_back", so the change shows in the counterparty's history without
waiting for the next mirror pass. A failure is stored on the mapping or correction (state
FAILED, the error text) for the admin to show and retry.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from integration import wire
from ledger_sync.errors import ApplicationError, InvalidTransition
from ledger_sync.models import (
    CounterpartyMapping,
    MasterDataCorrection,
    RecordChange,
    WriteBackState,
)
from ledger_sync.selectors.reference import gl_account_check
from ledger_sync.services.mirror_records import json_safe, raw_changes, raw_content_hash
from ledger_sync.services.normalise import bic_validate, iban_mask, iban_validate
from ledger_sync.services.remote import atlas_client_from_settings

logger = logging.getLogger(__name__)

APPROVE_CORRECTION_PERMISSION = "ledger_sync.approve_masterdatacorrection"
ATLAS_SYSTEM = "atlas"
COUNTERPARTY_ENTITY = "Counterparty"
# Wire name -> local field, for what ATLAS answers and we mirror back.
_WIRE_TO_LOCAL = {
    "name": "name",
    "legalName": "legal_name",
    "externalId": "external_id",
    "counterpartyTypeId": "counterparty_type_id",
    "vat": "vat",
    "glAccount": "gl_account",
    "iban": "iban",
    "swiftBic": "swift_bic",
    "selfBilling": "self_billing",
}


@dataclass
class WriteBackResult:
    written: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.failed == 0


# --- externalId -----------------------------------------------------------------------------------


def counterparty_mappings_write_back(
    *,
    mappings: QuerySet | None = None,
    client: Any = None,
    now: datetime | None = None,
) -> WriteBackResult:
    """Write the ERP codes of mappings waiting for it (PENDING, or FAILED to retry) to ATLAS as
    `externalId`, in one batched Counterparty/Post."""
    queryset = mappings if mappings is not None else CounterpartyMapping.objects.all()
    due = list(
        queryset.filter(write_back_state__in=[WriteBackState.PENDING, WriteBackState.FAILED])
        .select_related("counterparty")
        .order_by("counterparty__atlas_id")
    )
    result = WriteBackResult()
    if not due:
        return result
    now = now or timezone.now()

    sendable = []
    for mapping in due:
        current = (mapping.counterparty.external_id or "").strip()
        if current and current != mapping.erp_code:
            # ATLAS already names another code: the guide makes externalId the stable key, so
            # overwriting it silently could break the other system's link. A person decides.
            # Judged on the mirror, so no call is made; once recorded, later passes (every
            # cycle) leave the failure as it is — nothing was attempted — and only report it.
            # Once ATLAS is corrected, the mirror shows it and the code goes out.
            problem = (
                f"ATLAS already holds externalId {current!r} for this counterparty; not "
                f"overwritten with {mapping.erp_code!r}. Correct it in ATLAS or remap."
            )
            if mapping.write_back_state == WriteBackState.FAILED and mapping.last_error == problem:
                result.failed += 1
                result.errors.append(f"Counterparty {mapping.counterparty}: {problem}")
                continue
            _mapping_failed(mapping, problem, now=now, result=result)
            continue
        sendable.append(mapping)
    if not sendable:
        return result

    records = [
        counterparty_post_record(counterparty=m.counterparty, changes={"externalId": m.erp_code})
        for m in sendable
    ]
    answer, error = _post(records, client=client)
    for mapping in sendable:
        atlas_id = mapping.counterparty.atlas_id
        saved = answer.get(atlas_id) if answer is not None else None
        problem = error or _problem(atlas_id, saved, {"externalId": mapping.erp_code}, answer)
        if problem:
            _mapping_failed(mapping, problem, now=now, result=result)
            continue
        with transaction.atomic():
            counterparty_apply_atlas_answer(
                counterparty=mapping.counterparty, record=saved, now=now
            )
            CounterpartyMapping.objects.filter(pk=mapping.pk).update(
                write_back_state=WriteBackState.WRITTEN,
                write_back_attempts=mapping.write_back_attempts + 1,
                written_back_at=now,
                last_error="",
                updated_at=now,
            )
        result.written += 1
    logger.info(
        "externalId write-back done", extra={"written": result.written, "failed": result.failed}
    )
    return result


def _mapping_failed(
    mapping: CounterpartyMapping, problem: str, *, now: datetime, result: WriteBackResult
) -> None:
    CounterpartyMapping.objects.filter(pk=mapping.pk).update(
        write_back_state=WriteBackState.FAILED,
        write_back_attempts=mapping.write_back_attempts + 1,
        last_error=problem,
        updated_at=now,
    )
    result.failed += 1
    result.errors.append(f"Counterparty {mapping.counterparty}: {problem}")
    logger.warning(
        "externalId write-back failed",
        extra={"counterparty": mapping.counterparty.atlas_id, "mapping": mapping.pk},
    )


# --- master-data corrections ----------------------------------------------------------------------


def _validators() -> dict[str, Callable[[str], str]]:
    return {"gl_account": _gl_account_validate, "iban": iban_validate, "swift_bic": bic_validate}


def _gl_account_validate(value: str) -> str:
    number = (value or "").strip()
    _account, problem = gl_account_check(number)
    if problem:
        raise ValueError(problem)
    return number


def master_data_correction_validate(*, changes: Mapping[str, str]) -> dict[str, str]:
    """The corrected values, normalised; ApplicationError listing every field that is wrong
    (IBAN checksum, BIC format, GL account not in the mirrored Gotransverse chart)."""
    unknown = sorted(set(changes) - set(MasterDataCorrection.FIELDS))
    if unknown:
        raise ApplicationError(
            f"Only {', '.join(MasterDataCorrection.FIELDS)} can be corrected here, "
            f"not {', '.join(unknown)}.",
            details={"fields": unknown},
        )
    cleaned: dict[str, str] = {}
    problems: dict[str, str] = {}
    for name, value in changes.items():
        try:
            cleaned[name] = _validators()[name](value)
        except ValueError as exc:
            problems[name] = str(exc)
    if problems:
        raise ApplicationError(
            " ".join(f"{name}: {text}" for name, text in problems.items()), details=problems
        )
    return cleaned


@transaction.atomic
def master_data_correction_request(
    *,
    counterparty: Any,
    changes: Mapping[str, str],
    user: Any,
    reason: str = "",
    now: datetime | None = None,
) -> MasterDataCorrection:
    """Record a correction of GL account / IBAN / SWIFT-BIC as a draft for a finance lead."""
    cleaned = master_data_correction_validate(changes=changes)
    before = {name: getattr(counterparty, name) or "" for name in cleaned}
    after = {name: value for name, value in cleaned.items() if value != before[name]}
    if not after:
        raise ApplicationError(
            f"Nothing to correct: counterparty {counterparty} already has these values."
        )
    return MasterDataCorrection.objects.create(
        counterparty=counterparty,
        before={name: before[name] for name in after},
        after=after,
        reason=reason,
        requested_by=user,
        requested_at=now or timezone.now(),
    )


def master_data_correction_approve(
    *,
    corrections: Iterable[MasterDataCorrection] | QuerySet,
    user: Any,
    push: bool = True,
    client: Any = None,
    now: datetime | None = None,
) -> WriteBackResult | None:
    """Approve draft corrections (finance leads only), then push them to ATLAS in one batch."""
    if user is None or not user.has_perm(APPROVE_CORRECTION_PERMISSION):
        raise PermissionDenied("Only a finance lead may approve master-data corrections.")
    now = now or timezone.now()
    ids = [c.pk for c in corrections]
    with transaction.atomic():
        locked = list(MasterDataCorrection.objects.select_for_update().filter(pk__in=ids))
        for correction in locked:
            if correction.status != MasterDataCorrection.Status.DRAFT:
                raise InvalidTransition(
                    f"Correction {correction.pk} is {correction.get_status_display().lower()}; "
                    "only a draft can be approved."
                )
            # The chart or the register may have changed since the request: check again.
            master_data_correction_validate(changes=correction.after)
        MasterDataCorrection.objects.filter(pk__in=[c.pk for c in locked]).update(
            status=MasterDataCorrection.Status.APPROVED, approved_by=user, approved_at=now
        )
    if not push:
        return None
    return master_data_corrections_push(
        corrections=MasterDataCorrection.objects.filter(pk__in=ids), client=client, now=now
    )


def master_data_corrections_push(
    *,
    corrections: QuerySet | None = None,
    client: Any = None,
    now: datetime | None = None,
) -> WriteBackResult:
    """Push approved corrections (and FAILED ones, to retry) in one batched Counterparty/Post.

    Two corrections of one counterparty go out as one record, the later one winning per field.
    """
    queryset = corrections if corrections is not None else MasterDataCorrection.objects.all()
    due = list(
        queryset.filter(
            status__in=[MasterDataCorrection.Status.APPROVED, MasterDataCorrection.Status.FAILED],
            approved_by__isnull=False,
        )
        .select_related("counterparty")
        .order_by("requested_at", "pk")
    )
    result = WriteBackResult()
    if not due:
        return result
    now = now or timezone.now()
    by_counterparty: dict[int, dict[str, Any]] = {}
    for correction in due:
        record = by_counterparty.setdefault(
            correction.counterparty.atlas_id,
            counterparty_post_record(counterparty=correction.counterparty, changes={}),
        )
        for name, value in correction.after.items():
            record[MasterDataCorrection.FIELDS[name]] = value
    records = [by_counterparty[atlas_id] for atlas_id in sorted(by_counterparty)]
    answer, error = _post(records, client=client)
    applied: set[int] = set()
    for correction in due:
        atlas_id = correction.counterparty.atlas_id
        expected = {MasterDataCorrection.FIELDS[n]: v for n, v in correction.after.items()}
        # A later correction of the same field may have won in the merged record.
        expected = {k: v for k, v in expected.items() if by_counterparty[atlas_id].get(k) == v}
        saved = answer.get(atlas_id) if answer is not None else None
        problem = error or _problem(atlas_id, saved, expected, answer)
        if problem:
            MasterDataCorrection.objects.filter(pk=correction.pk).update(
                status=MasterDataCorrection.Status.FAILED,
                push_attempts=correction.push_attempts + 1,
                last_error=problem,
            )
            result.failed += 1
            result.errors.append(
                f"Correction {correction.pk} of {correction.counterparty}: {problem}"
            )
            continue
        with transaction.atomic():
            if atlas_id not in applied:
                counterparty_apply_atlas_answer(
                    counterparty=correction.counterparty, record=saved, now=now
                )
                applied.add(atlas_id)
            MasterDataCorrection.objects.filter(pk=correction.pk).update(
                status=MasterDataCorrection.Status.PUSHED,
                push_attempts=correction.push_attempts + 1,
                pushed_at=now,
                atlas_answer=json_safe(saved.raw),
                last_error="",
            )
        result.written += 1
    return result


# --- the record sent -----------------------------------------------------------------------------


def counterparty_post_record(*, counterparty: Any, changes: Mapping[str, Any]) -> dict[str, Any]:
    """The Counterparty/Post record: the counterparty as mirrored (its raw ATLAS JSON, so every
    field ATLAS gave us, unknown ones and customFieldValues included), `changes` (wire names)
    replacing their fields, keyed by its ATLAS id. An upsert must not blank what it does not
    mention, so nothing is left out."""
    record = {key: value for key, value in (counterparty.raw or {}).items() if key != "id"}
    record.update(changes)
    return {"id": counterparty.atlas_id, **record}


# --- ATLAS's answer -------------------------------------------------------------------------------


def counterparty_apply_atlas_answer(*, counterparty: Any, record: Any, now: datetime) -> dict:
    """Mirror the record ATLAS answered a write with onto the local counterparty and record
    what changed (source "write_back"). Returns the changes ({wire field: [before, after]})."""
    before_raw = counterparty.raw or {}
    after_raw = dict(record.raw)
    changes = raw_changes(before_raw, after_raw)
    if not changes:
        return {}
    update: dict[str, Any] = {}
    for wire_name, local in _WIRE_TO_LOCAL.items():
        if wire_name not in after_raw:
            continue
        value = getattr(record, local)
        if local not in ("external_id", "counterparty_type_id", "self_billing"):
            value = value or ""
        update[local] = value
    raw_json = wire.dumps(after_raw)
    type(counterparty).objects.filter(pk=counterparty.pk).update(
        **update,
        raw_json=raw_json,
        content_hash=raw_content_hash(after_raw),
        last_seen_at=now,
        last_changed_at=now,
        updated_at=now,
    )
    for local, value in update.items():
        setattr(counterparty, local, value)
    counterparty.raw_json = raw_json
    RecordChange.objects.create(
        system=ATLAS_SYSTEM,
        entity=COUNTERPARTY_ENTITY,
        remote_id=str(counterparty.atlas_id),
        changed_at=now,
        changes=json_safe(_masked(changes)),
        source="write_back",
    )
    return changes


def _masked(changes: dict[str, list[Any]]) -> dict[str, list[Any]]:
    # History is shown to every back-office user: IBANs are masked like in logs.
    return {
        key: [iban_mask(v) if key == "iban" and v else v for v in values]
        for key, values in changes.items()
    }


def _post(
    records: Sequence[Mapping[str, Any]], *, client: Any
) -> tuple[dict[int, Any] | None, str]:
    """Send the records; return ATLAS's answer by id, or None and the reason it failed."""
    if client is None:
        client = atlas_client_from_settings()
    try:
        saved = client.post_counterparties(records)
    except Exception as exc:
        logger.warning(
            "Counterparty/Post failed", extra={"records": len(records), "error": type(exc).__name__}
        )
        return None, f"ATLAS Counterparty/Post failed: {exc}"
    answer: dict[int, Any] = dict(saved.by_id)
    for error in saved.errors:
        if error.record_id is not None:
            answer.setdefault(error.record_id, error)
    return answer, ""


def _problem(
    atlas_id: int, saved: Any, expected: Mapping[str, Any], answer: Mapping[int, Any] | None
) -> str:
    if saved is None:
        return f"ATLAS answered Counterparty/Post without counterparty {atlas_id}; try again."
    if isinstance(saved, Exception):
        return f"ATLAS answered with a record that could not be read: {saved}"
    for wire_name, value in expected.items():
        if saved.raw.get(wire_name) != value:
            shown = iban_mask(saved.raw.get(wire_name)) if wire_name == "iban" else None
            return (
                f"ATLAS saved {wire_name}={shown or saved.raw.get(wire_name)!r} instead of the "
                "value sent; check the counterparty in ATLAS."
            )
    return ""
