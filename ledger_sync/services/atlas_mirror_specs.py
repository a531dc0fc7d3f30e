"""How each ATLAS entity is mirrored: its model, the values a record is stored as (amounts
exact, never through float), its parents' foreign keys, and what runs after a batch is written
(custom-field values). `SPECS` is read by the mirror pass in services/atlas_mirror.py."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation, localcontext
from typing import Any

from django.db import models
from django.db.models import Exists, OuterRef, Subquery

from integration.atlas import records as atlas
from integration.atlas.records import RecordError
from ledger_sync.models import (
    Counterparty,
    CounterpartyCustomFieldValue,
    CustomFieldDefinition,
    CustomFieldType,
    Invoice,
    MirroredRecord,
    Order,
    OrderItem,
    Payment,
)
from ledger_sync.services.mirror_records import json_safe

# Rows written per transaction: big enough to be fast on SQLite, small enough that a writer
# never holds the database lock for long and an IN list stays far under any parameter limit.
WRITE_BATCH = 1000


class ParentLinks:
    """atlas id → pk of mirrored parents, loaded in bulk (whole table after a full read of the
    parent, otherwise only the ids needed), so children never look a parent up row by row."""

    def __init__(self) -> None:
        self._pks: dict[str, dict[int, int]] = {}
        self._complete: set[str] = set()
        self._asked: dict[str, set[int]] = {}

    def pk(self, entity: str, atlas_id: int | None) -> int | None:
        if atlas_id is None:
            return None
        return self._pks.get(entity, {}).get(atlas_id)

    def load(self, entity: str, *, scope_all: bool) -> None:
        if not scope_all or not SPECS[entity].is_parent:
            self._pks.pop(entity, None)
            self._complete.discard(entity)
            self._asked.pop(entity, None)
            return
        self._pks[entity] = dict(SPECS[entity].model.objects.values_list("atlas_id", "pk"))
        self._complete.add(entity)

    def ensure(self, entity: str, atlas_ids: Iterable[int]) -> None:
        if entity in self._complete:
            return
        asked = self._asked.setdefault(entity, set())
        wanted = sorted(set(atlas_ids) - asked)
        asked.update(wanted)
        pks = self._pks.setdefault(entity, {})
        for chunk in chunks(wanted, WRITE_BATCH):
            pks.update(
                SPECS[entity].model.objects.filter(atlas_id__in=chunk).values_list("atlas_id", "pk")
            )


@dataclass(frozen=True)
class EntitySpec:
    name: str
    model: type[MirroredRecord]
    values: Callable[[Any, ParentLinks], dict[str, Any]]
    # (fk field, field holding the parent's ATLAS id, parent entity)
    foreign_keys: tuple[tuple[str, str, str], ...] = ()
    after_write: Callable[[list[Any], dict[int, int], ParentLinks], None] | None = None
    # JSON names of model fields, where they are not the camelCase of the field name.
    json_names: Mapping[str, str] = field(default_factory=dict)
    is_parent: bool = False

    @property
    def field_names(self) -> list[str]:
        return [
            f.attname
            for f in self.model._meta.concrete_fields
            if f.name not in MIRROR_BOOKKEEPING and not f.primary_key
        ]

    def parent_ids(self, records: list[Any]) -> dict[str, set[int]]:
        wanted: dict[str, set[int]] = {}
        for _, atlas_field, parent in self.foreign_keys:
            attribute = _RECORD_ATTRIBUTE[atlas_field]
            wanted.setdefault(parent, set()).update(
                value for record in records if (value := getattr(record, attribute)) is not None
            )
        return wanted

    def json_name(self, field_name: str) -> str:
        if field_name in self.json_names:
            return self.json_names[field_name]
        # order_atlas_id → orderId, legal_name → legalName
        head, *rest = field_name.replace("_atlas_id", "_id").split("_")
        return head + "".join(part.title() for part in rest)


MIRROR_BOOKKEEPING = {
    "atlas_id",
    "raw_json",
    "content_hash",
    "first_seen_at",
    "last_seen_at",
    "last_changed_at",
    "sync_state",
    "sync_error",
    "created_at",
    "updated_at",
}


_RECORD_ATTRIBUTE = {
    "counterparty_atlas_id": "counterparty_id",
    "order_atlas_id": "order_id",
    "invoice_atlas_id": "invoice_id",
}


def _custom_field_type_values(record: atlas.CustomFieldType, links: ParentLinks) -> dict[str, Any]:
    return {"name": record.name}


def _definition_values(record: atlas.CustomFieldDefinition, links: ParentLinks) -> dict[str, Any]:
    return {
        "name": record.name,
        "field_type": record.type or "",
        "is_required": record.is_required,
        "counterparty_type_ids": list(record.counterparty_type_ids),
        "options": json_safe(list(record.options)),
    }


def _counterparty_values(record: atlas.Counterparty, links: ParentLinks) -> dict[str, Any]:
    field_ids = [value.custom_field_id for value in record.custom_field_values]
    duplicated = sorted({i for i in field_ids if field_ids.count(i) > 1})
    if duplicated:
        raise RecordError(
            record.entity,
            record.id,
            "customFieldValues",
            f"lists customFieldId {duplicated[0]} more than once; ATLAS must send one value "
            "per custom field",
            record.raw,
        )
    return {
        "name": record.name,
        "legal_name": record.legal_name or "",
        "external_id": record.external_id,
        "counterparty_type_id": record.counterparty_type_id,
        "vat": record.vat or "",
        "gl_account": record.gl_account or "",
        "iban": record.iban or "",
        "swift_bic": record.swift_bic or "",
        "self_billing": record.self_billing,
    }


def _order_values(record: atlas.Order, links: ParentLinks) -> dict[str, Any]:
    return {
        "counterparty_id": links.pk("Counterparty", record.counterparty_id),
        "counterparty_atlas_id": record.counterparty_id,
        "status": record.status,
        "erp_code": record.erp_code,
        "document_reference": record.document_reference or "",
        "currency": record.currency,
        "registration_date": record.registration_date,
        "due_date": record.due_date,
        "period_from": record.period_from,
        "period_to": record.period_to,
        "total_amount": _exact(record, "totalAmount", record.total_amount, Order),
    }


def _item_values(record: atlas.OrderItem, links: ParentLinks) -> dict[str, Any]:
    return {
        "order_id": links.pk("Order", record.order_id),
        "order_atlas_id": record.order_id,
        "deal_id": record.deal_id,
        "description": record.description or "",
        "net_amount": _exact(record, "netAmount", record.net_amount, OrderItem, "net_amount"),
        "vat_amount": _exact(record, "vatAmount", record.vat_amount, OrderItem, "vat_amount"),
        "vat_rate": _exact(record, "vatRate", record.vat_rate, OrderItem, "vat_rate"),
        "volume": _exact(record, "volume", record.volume, OrderItem, "volume"),
        "volume_unit": record.volume_unit or "",
        "period_from": record.period_from,
        "period_to": record.period_to,
        "cashflow": record.cashflow,
        "gl_account": record.gl_account or "",
        "iban": record.iban or "",
        "status": record.status,
    }


def _invoice_values(record: atlas.Invoice, links: ParentLinks) -> dict[str, Any]:
    return {
        "order_id": links.pk("Order", record.order_id),
        "order_atlas_id": record.order_id,
        "external_id": record.external_id,
        "invoice_number": record.invoice_number or "",
        "amount": _exact(record, "amount", record.amount, Invoice),
        "invoice_date": record.invoice_date,
        "due_date": record.due_date,
        "is_paid": record.is_paid,
    }


def _payment_values(record: atlas.Payment, links: ParentLinks) -> dict[str, Any]:
    return {
        "invoice_id": links.pk("Invoice", record.invoice_id),
        "invoice_atlas_id": record.invoice_id,
        "order_id": links.pk("Order", record.order_id),
        "order_atlas_id": record.order_id,
        "external_id": record.external_id,
        "amount": _exact(record, "amount", record.amount, Payment),
        "payment_date": record.payment_date,
    }


def _replace_custom_field_values(
    records: list[atlas.Counterparty], pks: dict[int, int], links: ParentLinks
) -> None:
    """A counterparty's custom field values have no ATLAS id: replace them as a whole whenever
    the counterparty is created or changed."""
    counterparty_pks = [pks[record.id] for record in records if record.id in pks]
    CounterpartyCustomFieldValue.objects.filter(counterparty_id__in=counterparty_pks).delete()
    CounterpartyCustomFieldValue.objects.bulk_create(
        [
            CounterpartyCustomFieldValue(
                counterparty_id=pks[record.id],
                custom_field_atlas_id=value.custom_field_id,
                definition_id=links.pk("CustomFieldDefinition", value.custom_field_id),
                name=(value.name or "")[:255],
                value=json_safe(value.value),
            )
            for record in records
            if record.id in pks
            for value in record.custom_field_values
        ],
        ignore_conflicts=True,
    )
    link_null_fk(
        CounterpartyCustomFieldValue.objects.filter(counterparty_id__in=counterparty_pks),
        "definition",
        "custom_field_atlas_id",
        CustomFieldDefinition,
    )


SPECS: dict[str, EntitySpec] = {
    spec.name: spec
    for spec in (
        EntitySpec(name="CustomFieldType", model=CustomFieldType, values=_custom_field_type_values),
        EntitySpec(
            name="CustomFieldDefinition",
            model=CustomFieldDefinition,
            values=_definition_values,
            json_names={"field_type": "type"},
            is_parent=True,
        ),
        EntitySpec(
            name="Counterparty",
            model=Counterparty,
            values=_counterparty_values,
            after_write=_replace_custom_field_values,
            is_parent=True,
        ),
        EntitySpec(
            name="Order",
            model=Order,
            values=_order_values,
            foreign_keys=(("counterparty", "counterparty_atlas_id", "Counterparty"),),
            is_parent=True,
        ),
        EntitySpec(
            name="OrderItem",
            model=OrderItem,
            values=_item_values,
            foreign_keys=(("order", "order_atlas_id", "Order"),),
        ),
        EntitySpec(
            name="Invoice",
            model=Invoice,
            values=_invoice_values,
            foreign_keys=(("order", "order_atlas_id", "Order"),),
            is_parent=True,
        ),
        EntitySpec(
            name="Payment",
            model=Payment,
            values=_payment_values,
            foreign_keys=(
                ("invoice", "invoice_atlas_id", "Invoice"),
                ("order", "order_atlas_id", "Order"),
            ),
        ),
    )
}


def _exact(
    record: atlas.AtlasRecord,
    json_name: str,
    value: Decimal | None,
    model: type[models.Model],
    field_name: str | None = None,
) -> Decimal | None:
    """The value as the column stores it, or RecordError if it would have to be rounded or does
    not fit: money is stored to the cent and never silently changed."""
    if value is None:
        return None
    db_field = model._meta.get_field(field_name or _snake(json_name))
    places, max_digits = db_field.decimal_places, db_field.max_digits
    with localcontext() as context:
        context.prec = 60
        try:
            exact = value.quantize(Decimal(1).scaleb(-places))
        except InvalidOperation:
            exact = None
    if exact is None or exact != value:
        raise RecordError(
            record.entity,
            record.id,
            json_name,
            f"has more than {places} decimal places ({value}); ledger_sync stores it to "
            f"{places} places and never rounds, so ATLAS must send it rounded",
            record.raw,
        )
    if exact.adjusted() >= max_digits - places:
        raise RecordError(
            record.entity,
            record.id,
            json_name,
            f"is too large ({value}); at most {max_digits - places} digits before the point",
            record.raw,
        )
    return exact


def link_null_fk(
    queryset: models.QuerySet,
    fk_name: str,
    atlas_field: str,
    parent_model: type[models.Model],
) -> int:
    parent = parent_model.objects.filter(atlas_id=OuterRef(atlas_field))
    return (
        queryset.filter(**{f"{fk_name}__isnull": True, f"{atlas_field}__isnull": False})
        .filter(Exists(parent))
        .update(**{fk_name: Subquery(parent.values("pk")[:1])})
    )


def chunks(items: Sequence[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def _snake(camel: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in camel)
