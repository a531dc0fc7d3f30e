"""Storing the rows of a Gotransverse reference-data pass (services/gotransverse_mirror.py reads
the ledger, its calendar and its chart; this module writes what was read)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import IntegrityError, models, transaction
from django.utils import timezone

from integration import wire
from integration.gotransverse.records import RecordError
from ledger_sync.models import (
    RecordChange,
    SyncRun,
    SyncState,
)
from ledger_sync.services.mirror_records import (
    ENTITY_YEAR,
    json_safe,
    raw_changes,
    raw_content_hash,
)
from ledger_sync.services.sync_runs import (
    RunRecorder,
)


@dataclass
class MirrorStorage:
    """The rows of one Gotransverse pass: upserts keyed on the remote id, rows the ledger no
    longer lists marked missing, a failed record recorded on the run, last_seen_at in bulk."""

    recorder: RunRecorder
    now: datetime = field(default_factory=timezone.now)
    missing: dict[str, int] = field(default_factory=dict)
    # pks of rows seen unchanged, per model: their last_seen_at moves in one UPDATE per stage.
    unchanged: dict[type[models.Model], list[int]] = field(default_factory=dict)

    @property
    def sync_run(self) -> SyncRun:
        return self.recorder.run

    def upsert(
        self,
        model: type[models.Model],
        *,
        entity: str,
        lookup: dict[str, Any],
        raw: Any,
        values: dict[str, Any],
        before_save: Callable[[Any], None] | None = None,
    ) -> Any:
        """Create or update one row; returns it, or None when it failed (recorded)."""
        remote_id = _remote_id(lookup)
        content_hash = raw_content_hash(raw)
        for attempt in (1, 2):
            try:
                with transaction.atomic():
                    return self._upsert_once(
                        model,
                        entity=entity,
                        lookup=lookup,
                        raw=raw,
                        content_hash=content_hash,
                        values=values,
                        before_save=before_save,
                    )
            except IntegrityError as exc:
                # A concurrent pass created the row between our read and our insert: read again.
                if attempt == 1:
                    continue
                self.recorder.error(
                    entity=entity,
                    remote_id=remote_id,
                    message=f"{entity} {remote_id} could not be stored: {exc}",
                    raw=raw,
                )
        return None

    def _upsert_once(
        self,
        model: type[models.Model],
        *,
        entity: str,
        lookup: dict[str, Any],
        raw: Any,
        content_hash: str,
        values: dict[str, Any],
        before_save: Callable[[Any], None] | None,
    ) -> Any:
        row = model.objects.select_for_update().filter(**lookup).first()
        if row is None:
            row = model(
                **lookup,
                **values,
                raw_json=wire.dumps(raw),
                content_hash=content_hash,
                first_seen_at=self.now,
                last_seen_at=self.now,
                last_changed_at=self.now,
                sync_state=SyncState.SYNCED,
            )
            if before_save:
                before_save(row)
            row.save()
            self.recorder.count(entity, "created")
            return row
        column_changes = {
            name: [row.serializable_value(name), value]
            for name, value in values.items()
            if _differs(row, name, value)
        }
        if (
            row.content_hash == content_hash
            and row.sync_state == SyncState.SYNCED
            and not column_changes
        ):
            self.recorder.count(entity, "unchanged")
            self.unchanged.setdefault(model, []).append(row.pk)
            return row
        changes = raw_changes(row.raw, raw)
        if row.sync_state != SyncState.SYNCED:
            changes["sync_state"] = [row.sync_state, SyncState.SYNCED.value]
        for name, value in values.items():
            setattr(row, name, value)
        row.raw_json = wire.dumps(raw)
        row.content_hash = content_hash
        row.last_seen_at = self.now
        row.last_changed_at = self.now
        row.sync_state = SyncState.SYNCED
        row.sync_error = ""
        if before_save:
            before_save(row)
        row.save()
        RecordChange.objects.create(
            system=SYSTEM,
            entity=entity,
            remote_id=str(lookup["gotransverse_id"]),
            sync_run=self.sync_run,
            changed_at=self.now,
            changes=json_safe(changes or column_changes),
        )
        self.recorder.count(entity, "updated")
        return row

    def mark_missing(self, queryset: models.QuerySet, *, entity: str) -> None:
        """Mark rows no longer in the AR Ledger MISSING, each with a RecordChange.

        The conditional UPDATE decides: when two passes overlap, only the one that actually
        turns a row MISSING records the change.
        """
        reason = f"Not in the AR Ledger at sync run {self.sync_run.pk}."
        candidates = queryset.exclude(sync_state=SyncState.MISSING).values_list(
            "pk", "gotransverse_id", "sync_state"
        )
        for pk, gotransverse_id, before in list(candidates):
            with transaction.atomic():
                turned = (
                    queryset.model.objects.filter(pk=pk)
                    .exclude(sync_state=SyncState.MISSING)
                    .update(
                        sync_state=SyncState.MISSING,
                        sync_error=reason,
                        last_changed_at=self.now,
                        updated_at=self.now,
                    )
                )
                if not turned:
                    continue
                RecordChange.objects.create(
                    system=SYSTEM,
                    entity=entity,
                    remote_id=str(gotransverse_id),
                    sync_run=self.sync_run,
                    changed_at=self.now,
                    changes={"sync_state": [before, SyncState.MISSING.value]},
                )
            self.missing[entity] = self.missing.get(entity, 0) + 1

    def fail(
        self,
        exc: RecordError,
        *,
        model: type[models.Model],
        scope: Mapping[str, Any] | None = None,
        default_id: Any = None,
    ) -> None:
        """Record a record that could not be taken; its stored row, if any, turns INVALID.

        The row keeps its last good values (journals may point at it) but selectors treat an
        INVALID row as unusable until a pass reads the record correctly again.
        """
        entity = _entity_for(exc.entity)
        record_id = as_int(exc.record_id if exc.record_id is not None else default_id)
        self.recorder.error(
            entity=entity,
            remote_id=record_id if record_id is not None else exc.record_id,
            field=exc.field,
            message=str(exc),
            raw=exc.raw,
        )
        if record_id is None:
            return
        reason = str(exc)
        rows = model.objects.filter(**(scope or {}), gotransverse_id=record_id).exclude(
            sync_state=SyncState.INVALID, sync_error=reason
        )
        for pk, before in list(rows.values_list("pk", "sync_state")):
            with transaction.atomic():
                model.objects.filter(pk=pk).update(
                    sync_state=SyncState.INVALID, sync_error=reason, updated_at=self.now
                )
                if before != SyncState.INVALID:
                    RecordChange.objects.create(
                        system=SYSTEM,
                        entity=entity,
                        remote_id=str(record_id),
                        sync_run=self.sync_run,
                        changed_at=self.now,
                        changes={"sync_state": [before, SyncState.INVALID.value]},
                    )

    def refresh_last_seen(self) -> None:
        """ "Still in the AR Ledger" for rows seen unchanged: one UPDATE per model and chunk, of
        last_seen_at alone (content, updated_at and history stay as they were)."""
        for model, pks in self.unchanged.items():
            for start in range(0, len(pks), LAST_SEEN_CHUNK):
                model.objects.filter(pk__in=pks[start : start + LAST_SEEN_CHUNK]).update(
                    last_seen_at=self.now
                )
        self.unchanged.clear()


SYSTEM = SyncRun.System.GOTRANSVERSE


LAST_SEEN_CHUNK = 500


def as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _remote_id(lookup: Mapping[str, Any]) -> Any:
    return lookup.get("gotransverse_id")


def _differs(row: models.Model, name: str, value: Any) -> bool:
    """Whether column `name` of `row` holds something else than `value` (FKs by pk, no query)."""
    field_obj = row._meta.get_field(name)
    if field_obj.is_relation:
        return getattr(row, field_obj.attname) != getattr(value, "pk", value)
    return getattr(row, name) != value


def _entity_for(remote_entity: str) -> str:
    return {"CalendarYear": ENTITY_YEAR}.get(remote_entity, remote_entity)
