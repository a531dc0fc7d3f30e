"""Read queries over the ATLAS mirror, for the admin and other areas."""

from __future__ import annotations

from django.db.models import QuerySet

from ledger_sync.models import (
    Counterparty,
    CustomFieldDefinition,
    CustomFieldType,
    Invoice,
    MirroredRecord,
    Order,
    OrderItem,
    Payment,
    RecordChange,
    SyncRun,
    SyncRunError,
    SyncState,
)

ATLAS_SYSTEM = SyncRun.System.ATLAS
# The entity names the mirror, RecordChange and SyncRunError use for each model.
ATLAS_ENTITY_MODELS: dict[str, type[MirroredRecord]] = {
    "CustomFieldType": CustomFieldType,
    "CustomFieldDefinition": CustomFieldDefinition,
    "Counterparty": Counterparty,
    "Order": Order,
    "OrderItem": OrderItem,
    "Invoice": Invoice,
    "Payment": Payment,
}
ATLAS_MODEL_ENTITIES: dict[type[MirroredRecord], str] = {
    model: entity for entity, model in ATLAS_ENTITY_MODELS.items()
}


def atlas_entity_of(model: type[MirroredRecord]) -> str:
    return ATLAS_MODEL_ENTITIES[model]


def atlas_record_history(*, entity: str, atlas_id: int, limit: int = 200) -> list[RecordChange]:
    """The observed changes of one ATLAS record, newest first (each with its sync run)."""
    return list(
        RecordChange.objects.filter(system=ATLAS_SYSTEM, entity=entity, remote_id=str(atlas_id))
        .select_related("sync_run")
        .order_by("-changed_at", "-id")[:limit]
    )


def atlas_record_errors(*, entity: str, atlas_id: int, limit: int = 20) -> list[SyncRunError]:
    """The latest failures of one ATLAS record in mirror runs, newest first."""
    return list(
        SyncRunError.objects.filter(
            sync_run__system=ATLAS_SYSTEM, entity=entity, remote_id=str(atlas_id)
        )
        .select_related("sync_run")
        .order_by("-id")[:limit]
    )


def sync_run_errors(*, run: SyncRun, limit: int = 200) -> list[SyncRunError]:
    return list(run.errors.order_by("id")[:limit])


def atlas_last_mirror_run() -> SyncRun | None:
    """The latest finished full or partial ATLAS mirror run."""
    return (
        SyncRun.objects.filter(system=ATLAS_SYSTEM)
        .exclude(status=SyncRun.Status.RUNNING)
        .order_by("-started_at", "-id")
        .first()
    )


def atlas_orders_in_status_without_erp_code(*, statuses: list[str]) -> QuerySet[Order]:
    """Mirrored, in-sync orders in one of `statuses` whose erpCode is null (journal candidates
    before any further check); uses the (status, erp_code) index."""
    return Order.objects.filter(
        status__in=statuses, erp_code__isnull=True, sync_state=SyncState.SYNCED
    ).select_related("counterparty")
