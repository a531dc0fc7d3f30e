"""Mirror ATLAS into the database: one full pass, or a re-fetch of chosen records.

A full pass reads every entity with as few calls as the API allows (one "all" read per entity,
payments by invoice ids in the client's batches), then for each entity:

- compares each record's content hash with the stored one: new rows are created, changed rows
  updated (with a RecordChange holding the before/after of each changed top-level JSON field),
  unchanged rows are not written at all (only `last_seen_at`, in one UPDATE per entity);
- writes in batches with an upsert keyed on `atlas_id`, so two passes that race cannot create
  the same row twice; foreign keys come from atlas-id → pk maps, never from per-row queries;
- records a record that does not parse (or does not fit: an amount with more than 2 decimals is
  refused, never rounded) as a failed item of the run; a stored row of that record becomes
  INVALID and keeps its last good values; the rest of the pass goes on;
- marks rows whose record ATLAS no longer returns as MISSING.

A failure of the whole pass (ATLAS unreachable, credentials refused ...) ends the run FAILED with
the typed error's text. Only one full pass runs at a time: a second one is refused with
AtlasMirrorAlreadyRunning and does nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from django.db import models, transaction
from django.utils import timezone

from integration import wire
from integration.atlas import records as atlas
from integration.atlas.errors import AtlasError
from integration.atlas.records import ReadResult, RecordError
from ledger_sync.errors import ApplicationError
from ledger_sync.models import (
    MirroredRecord,
    OrderItem,
    Payment,
    RecordChange,
    SyncRun,
    SyncState,
)
from ledger_sync.services.atlas_mirror_specs import (
    MIRROR_BOOKKEEPING,
    SPECS,
    WRITE_BATCH,
    EntitySpec,
    ParentLinks,
    chunks,
    link_null_fk,
)
from ledger_sync.services.mirror_records import ATLAS_ENTITIES, raw_changes
from ledger_sync.services.problem_sources import MIRROR_KINDS
from ledger_sync.services.problems import problems_refresh_safely
from ledger_sync.services.sync_runs import (
    RunRecorder,
    SyncRunAlreadyRunning,
    sync_run_start,
    sync_run_start_exclusive,
)

logger = logging.getLogger(__name__)

SYSTEM = SyncRun.System.ATLAS
ProgressCallback = Callable[[str, int, int], None]
"""progress(entity, done, total): called after each written batch (and once with done=0)."""


class AtlasMirrorAlreadyRunning(SyncRunAlreadyRunning):
    """A full ATLAS mirror pass is already running; this one was skipped, nothing was done."""


class AtlasReader(Protocol):
    """What the mirror needs of integration.atlas.client.AtlasClient."""

    stats: Any

    def get_custom_field_types(self) -> ReadResult: ...
    def get_counterparty_custom_fields(self, counterparty_type_ids: Sequence[int] = ()) -> Any: ...
    def get_counterparties(self, ids: Sequence[int] | None = None) -> ReadResult: ...
    def get_orders(self, ids: Sequence[int] | None = None) -> ReadResult: ...
    def get_order_items(self, ids: Sequence[int] | None = None) -> ReadResult: ...
    def get_order_items_by_order_ids(self, order_ids: Sequence[int]) -> ReadResult: ...
    def get_invoices(self, ids: Sequence[int] | None = None) -> ReadResult: ...
    def get_payments_by_invoice_ids(self, invoice_ids: Sequence[int]) -> ReadResult: ...
    def get_payments_by_order_ids(self, order_ids: Sequence[int]) -> ReadResult: ...


# --- public services -----------------------------------------------------------------------------


def atlas_mirror_run(
    *,
    client: AtlasReader,
    trigger: str,
    user: Any = None,
    progress: ProgressCallback | None = None,
) -> SyncRun:
    """One full mirror pass of ATLAS, recorded as a SyncRun (returned, also when it failed).

    Raises AtlasMirrorAlreadyRunning when another full pass is running (nothing is done then).
    """
    recorder = _claim_full_pass(trigger=trigger, user=user)
    mirror = _Mirror(client=client, recorder=recorder, progress=progress)
    run = mirror.run(mirror.full_pass)
    problems_refresh_safely(kinds=MIRROR_KINDS)
    return run


def atlas_mirror_records(
    *,
    client: AtlasReader,
    entity: str,
    atlas_ids: Sequence[int],
    trigger: str,
    user: Any = None,
    with_items: bool = False,
) -> SyncRun:
    """Re-fetch the chosen records of one entity from ATLAS and mirror them (the admin's
    "resync selected", webhooks). A chosen record ATLAS no longer returns becomes MISSING.

    with_items (orders only): also re-fetch the orders' items in the same run (one
    OrderItem/GetByOrderIds call per batch); a stored item of those orders that ATLAS no longer
    lists becomes MISSING.
    """
    if with_items and entity != "Order":
        raise ApplicationError("with_items applies to orders only.", details={"entity": entity})
    if entity not in SPECS:
        raise ApplicationError(
            f"Unknown ATLAS entity {entity!r}; use one of {', '.join(ATLAS_ENTITIES)}.",
            details={"entity": entity},
        )
    ids = sorted({int(atlas_id) for atlas_id in atlas_ids})
    if not ids:
        raise ApplicationError("No ATLAS ids given to resync.", details={"entity": entity})
    recorder = sync_run_start(system=SYSTEM, trigger=trigger, user=user)
    mirror = _Mirror(client=client, recorder=recorder, progress=None)
    return mirror.run(lambda: mirror.records_pass(SPECS[entity], ids, with_items=with_items))


# --- one pass ------------------------------------------------------------------------------------


def _claim_full_pass(*, trigger: str, user: Any) -> RunRecorder:
    """Start the run unless a full pass is already running (checked and claimed atomically;
    a resync of a few records, admin or webhook, never blocks a pass nor is blocked)."""
    return sync_run_start_exclusive(
        system=SYSTEM,
        trigger=trigger,
        user=user,
        entities=ATLAS_ENTITIES,
        what="An ATLAS mirror pass",
        already_running=AtlasMirrorAlreadyRunning,
    )


class _Mirror:
    def __init__(
        self, *, client: AtlasReader, recorder: RunRecorder, progress: ProgressCallback | None
    ):
        self.client = client
        self.recorder = recorder
        self.progress = progress or (lambda entity, done, total: None)
        self.links = ParentLinks()
        stats = client.stats
        self._stats_at_start = (stats.requests, stats.rate_limited)

    def run(self, body: Callable[[], None]) -> SyncRun:
        try:
            body()
        except AtlasError as exc:
            # ATLAS itself failed (unreachable, refused, rate limited past the retries): the
            # run says so and the caller gets the record of it, not a traceback.
            logger.warning(
                "ATLAS mirror pass failed",
                extra={"run": self.recorder.run.pk, "error": type(exc).__name__},
            )
            return self._finish(error=str(exc))
        except Exception as exc:
            # A bug or a database failure: record it on the run first, then let it surface.
            self._finish(error=f"{type(exc).__name__}: {exc}")
            raise
        return self._finish()

    def _finish(self, *, error: str = "") -> SyncRun:
        stats = self.client.stats
        return self.recorder.finish(
            api_calls=stats.requests - self._stats_at_start[0],
            rate_limited=stats.rate_limited - self._stats_at_start[1],
            error=error,
        )

    # --- a full pass ---

    def full_pass(self) -> None:
        client = self.client
        self._mirror(SPECS["CustomFieldType"], client.get_custom_field_types())
        self._mirror(SPECS["CustomFieldDefinition"], client.get_counterparty_custom_fields())
        self._mirror(SPECS["Counterparty"], client.get_counterparties())
        self._mirror(SPECS["Order"], client.get_orders())
        self._mirror(SPECS["OrderItem"], client.get_order_items())
        invoices = client.get_invoices()
        self._mirror(SPECS["Invoice"], invoices)
        # Payments of every invoice ATLAS knows, also of invoices that failed to parse, so that
        # their payments are not taken for deleted.
        invoice_ids = [record.id for record in invoices.records] + [
            error.record_id for error in invoices.errors if _is_id(error.record_id)
        ]
        self._mirror(SPECS["Payment"], client.get_payments_by_invoice_ids(invoice_ids))

    # --- chosen records ---

    def records_pass(self, spec: EntitySpec, ids: list[int], *, with_items: bool) -> None:
        client = self.client
        wanted = set(ids)
        if spec.name == "CustomFieldType":
            result = _only(client.get_custom_field_types(), wanted)
        elif spec.name == "CustomFieldDefinition":
            result = _only(client.get_counterparty_custom_fields(), wanted)
        elif spec.name == "Counterparty":
            result = client.get_counterparties(ids=ids)
        elif spec.name == "Order":
            result = client.get_orders(ids=ids)
        elif spec.name == "OrderItem":
            result = client.get_order_items(ids=ids)
        elif spec.name == "Invoice":
            result = client.get_invoices(ids=ids)
        else:
            # ATLAS reads payments by invoice or by order only: ask for those of the invoices
            # (or, without one, the orders) the chosen payments belong to.
            parents = Payment.objects.filter(atlas_id__in=ids).values_list(
                "invoice_atlas_id", "order_atlas_id"
            )
            invoice_ids = sorted({inv for inv, _ in parents if inv is not None})
            order_ids = sorted({order for inv, order in parents if inv is None and order})
            result = client.get_payments_by_invoice_ids(invoice_ids)
            result.extend(client.get_payments_by_order_ids(order_ids))
            result = _only(result, wanted)
        self._mirror(spec, result, scope=wanted)
        if with_items:
            items = self.client.get_order_items_by_order_ids(ids)
            stored = set(
                OrderItem.objects.filter(order_atlas_id__in=ids).values_list("atlas_id", flat=True)
            )
            returned = {item.id for item in items.records} | {
                error.record_id for error in items.errors if _is_id(error.record_id)
            }
            self._mirror(SPECS["OrderItem"], items, scope=stored | returned)

    # --- one entity ---

    def _mirror(
        self, spec: EntitySpec, result: ReadResult, *, scope: set[int] | None = None
    ) -> None:
        """Write one entity's read. scope None: a full read (unseen rows become MISSING);
        otherwise the ids asked for (only those can become MISSING)."""
        now = timezone.now()
        model = spec.model
        records = list({record.id: record for record in result.records}.values())
        total = len(records) + len(result.errors)
        self.progress(spec.name, 0, total)

        for parent_entity, atlas_ids in spec.parent_ids(records).items():
            self.links.ensure(parent_entity, atlas_ids)
        existing = _existing_rows(model, None if scope is None else scope | {r.id for r in records})

        seen: set[int] = set()
        errors: list[RecordError] = list(result.errors)
        created: list[tuple[atlas.AtlasRecord, dict[str, Any]]] = []
        changed: list[tuple[atlas.AtlasRecord, dict[str, Any]]] = []
        restored: list[tuple[atlas.AtlasRecord, dict[str, Any]]] = []
        unchanged_ids: list[int] = []
        for record in records:
            seen.add(record.id)
            try:
                values = spec.values(record, self.links)
                _check_fits(spec, record, values)
            except RecordError as error:
                errors.append(error)
                continue
            # Hashed once here (it serialises the whole record) and stored as it is.
            values["content_hash"] = digest = record.content_hash
            previous = existing.get(record.id)
            if previous is None:
                created.append((record, values))
            elif previous.content_hash != digest:
                changed.append((record, values))
            elif previous.sync_state != SyncState.SYNCED:
                # Same content, but it had been MISSING or INVALID: it is back and good.
                restored.append((record, values))
            else:
                unchanged_ids.append(record.id)

        done = 0
        for kind, batch in _batches(created=created, changed=changed, restored=restored):
            with transaction.atomic():
                self._write_batch(spec, kind, batch, now=now)
            done += len(batch)
            self.progress(spec.name, done, total)

        self._record_errors(spec, errors, existing, seen, now=now)
        missing = [
            atlas_id
            for atlas_id, row in existing.items()
            if atlas_id not in seen
            and (scope is None or atlas_id in scope)
            and row.sync_state != SyncState.MISSING
        ]
        unidentified = sum(1 for error in errors if not _is_id(error.record_id))
        if unidentified and missing:
            # A record whose id cannot be read may be any of the unseen rows: taking them for
            # deleted could hide live records. The next readable pass settles it.
            self.recorder.error(
                entity=spec.name,
                message=f"{unidentified} {spec.name} record(s) came without a readable id, so "
                f"no {spec.name} was marked missing in this pass ({len(missing)} stored "
                "not returned).",
                count=False,
            )
            missing = []
        for chunk in chunks(missing, WRITE_BATCH):
            model.objects.filter(atlas_id__in=chunk).update(
                sync_state=SyncState.MISSING, updated_at=now
            )
        if missing:
            logger.info(
                "ATLAS records no longer returned", extra={"entity": spec.name, "n": len(missing)}
            )
        self._refresh_last_seen(model, unchanged_ids, scope=scope, now=now)
        self._link_orphans(spec)

        recorder = self.recorder
        recorder.count(spec.name, "created", len(created))
        recorder.count(spec.name, "updated", len(changed) + len(restored))
        recorder.count(spec.name, "unchanged", len(unchanged_ids))
        self.links.load(spec.name, scope_all=scope is None)
        self.progress(spec.name, total, total)

    def _write_batch(
        self,
        spec: EntitySpec,
        kind: str,
        batch: list[tuple[atlas.AtlasRecord, dict[str, Any]]],
        *,
        now: datetime,
    ) -> None:
        model = spec.model
        ids = [record.id for record, _ in batch]
        before: dict[int, str] = {}
        if kind == "changed":
            before = dict(
                model.objects.filter(atlas_id__in=ids).values_list("atlas_id", "raw_json")
            )
        rows = [
            model(
                atlas_id=record.id,
                raw_json=wire.dumps(record.raw),
                first_seen_at=now,
                last_seen_at=now,
                last_changed_at=now,
                sync_state=SyncState.SYNCED,
                sync_error="",
                **values,
            )
            for record, values in batch
        ]
        update_fields = [
            *spec.field_names,
            "raw_json",
            "content_hash",
            "last_seen_at",
            "sync_state",
            "sync_error",
            "updated_at",
        ]
        if kind != "restored":
            update_fields.append("last_changed_at")
        # An upsert even for rows believed new: a racing pass may have created one meanwhile.
        model.objects.bulk_create(
            rows, update_conflicts=True, unique_fields=["atlas_id"], update_fields=update_fields
        )
        if kind == "changed":
            changes = []
            for record, _ in batch:
                diff = raw_changes(_loads_or_empty(before.get(record.id)), record.raw)
                if diff:
                    changes.append(
                        RecordChange(
                            system=SYSTEM,
                            entity=spec.name,
                            remote_id=str(record.id),
                            sync_run=self.recorder.run,
                            changed_at=now,
                            changes=diff,
                            source="mirror",
                        )
                    )
            RecordChange.objects.bulk_create(changes)
        if spec.after_write is not None and kind != "restored":
            pks = dict(model.objects.filter(atlas_id__in=ids).values_list("atlas_id", "pk"))
            spec.after_write([record for record, _ in batch], pks, self.links)

    def _record_errors(
        self,
        spec: EntitySpec,
        errors: list[RecordError],
        existing: Mapping[int, _Row],
        seen: set[int],
        *,
        now: datetime,
    ) -> None:
        invalid: dict[int, str] = {}
        for error in errors:
            self.recorder.error(
                entity=spec.name,
                remote_id=error.record_id,
                field=error.field,
                message=str(error),
                raw=error.raw,
            )
            if _is_id(error.record_id):
                seen.add(error.record_id)
                invalid[error.record_id] = str(error)
        # A stored record that no longer reads keeps its last good values, flagged INVALID.
        rows = [
            spec.model(pk=existing[atlas_id].pk, sync_state=SyncState.INVALID, sync_error=message)
            for atlas_id, message in invalid.items()
            if atlas_id in existing
            and (existing[atlas_id].sync_state, existing[atlas_id].sync_error)
            != (SyncState.INVALID, message)
        ]
        for row in rows:
            row.last_seen_at = now
            row.updated_at = now
        if rows:
            spec.model.objects.bulk_update(
                rows,
                ["sync_state", "sync_error", "last_seen_at", "updated_at"],
                batch_size=WRITE_BATCH,
            )

    def _refresh_last_seen(
        self,
        model: type[MirroredRecord],
        unchanged_ids: list[int],
        *,
        scope: set[int] | None,
        now: datetime,
    ) -> None:
        # No content is written for unchanged rows (updated_at stays): only "ATLAS still has it".
        if scope is None:
            model.objects.filter(last_seen_at__lt=now).exclude(sync_state=SyncState.MISSING).update(
                last_seen_at=now
            )
            return
        for chunk in chunks(unchanged_ids, WRITE_BATCH):
            model.objects.filter(atlas_id__in=chunk).update(last_seen_at=now)

    def _link_orphans(self, spec: EntitySpec) -> None:
        """Set foreign keys left null because the parent was not mirrored yet (one UPDATE per
        foreign key, touching only rows whose parent now exists)."""
        for fk_name, atlas_field, parent_entity in spec.foreign_keys:
            link_null_fk(spec.model.objects.all(), fk_name, atlas_field, SPECS[parent_entity].model)


# --- helpers -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Row:
    pk: int
    content_hash: str
    sync_state: str
    sync_error: str


def _existing_rows(model: type[MirroredRecord], atlas_ids: set[int] | None) -> dict[int, _Row]:
    columns = ("atlas_id", "pk", "content_hash", "sync_state", "sync_error")
    if atlas_ids is None:
        rows: Iterable[tuple[Any, ...]] = model.objects.values_list(*columns).iterator(
            chunk_size=5000
        )
        return {row[0]: _Row(*row[1:]) for row in rows}
    found: dict[int, _Row] = {}
    for chunk in chunks(sorted(atlas_ids), WRITE_BATCH):
        for row in model.objects.filter(atlas_id__in=chunk).values_list(*columns):
            found[row[0]] = _Row(*row[1:])
    return found


def _check_fits(spec: EntitySpec, record: atlas.AtlasRecord, values: Mapping[str, Any]) -> None:
    """Refuse a value its column cannot hold: PostgreSQL would fail the whole batch with it."""
    for name, value in (("id", record.id), *values.items()):
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= _BIGINT_LIMIT:
            raise RecordError(
                record.entity,
                record.id,
                spec.json_name(name) if name != "id" else "id",
                f"is {value}, beyond the 64-bit integers ledger_sync stores",
                record.raw,
            )
    for name, max_length in _text_limits(spec.model):
        value = values.get(name)
        if isinstance(value, str) and len(value) > max_length:
            raise RecordError(
                record.entity,
                record.id,
                spec.json_name(name),
                f"is {len(value)} characters long; at most {max_length} are stored",
                record.raw,
            )


_BIGINT_LIMIT = 2**63
_TEXT_LIMITS: dict[type[models.Model], list[tuple[str, int]]] = {}


def _text_limits(model: type[models.Model]) -> list[tuple[str, int]]:
    if model not in _TEXT_LIMITS:
        _TEXT_LIMITS[model] = [
            (f.name, f.max_length)
            for f in model._meta.concrete_fields
            if isinstance(f, models.CharField) and f.max_length and f.name not in MIRROR_BOOKKEEPING
        ]
    return _TEXT_LIMITS[model]


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _only(result: ReadResult, wanted: set[int]) -> ReadResult:
    return ReadResult(
        records=[record for record in result.records if record.id in wanted],
        errors=[error for error in result.errors if error.record_id in wanted],
    )


def _batches(
    **groups: list[tuple[Any, dict[str, Any]]],
) -> Iterator[tuple[str, list[tuple[Any, dict[str, Any]]]]]:
    for kind, items in groups.items():
        for chunk in chunks(items, WRITE_BATCH):
            yield kind, chunk


def _loads_or_empty(raw_json: str | None) -> Any:
    if not raw_json:
        return {}
    try:
        return wire.loads(raw_json)
    except ValueError:
        return {}
