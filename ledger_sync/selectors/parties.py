"""Reads over ERP parties, counterparty mappings, proposals and custom-field mappings."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from django.db.models import Exists, F, OuterRef, Prefetch, Q, QuerySet, Window
from django.db.models.functions import RowNumber

from ledger_sync.models import (
    CounterpartyMapping,
    CustomFieldMapping,
    MatchProposal,
    RecordChange,
)


@dataclass(frozen=True)
class ErpCode:
    """The ERP code journals use for a counterparty, and whether a person should look at it."""

    code: str
    flagged: bool
    reason: str = ""


def counterparty_erp_code(*, counterparty: Any) -> ErpCode | None:
    """The ERP customer/vendor code of a counterparty, or None when it is not mapped yet.

    ATLAS's `externalId` wins (CONTRACT: it is the stable key, and journals use it even when the
    ERP register does not know the code; the mapping then carries the flag). Otherwise an
    approved mapping's code is used, written back to ATLAS or not yet.
    """
    mapping = CounterpartyMapping.objects.filter(counterparty_id=counterparty.pk).first()
    external_id = (counterparty.external_id or "").strip()
    if external_id:
        if mapping is not None and mapping.erp_code == external_id:
            return ErpCode(external_id, mapping.flagged, mapping.flag_reason)
        return ErpCode(external_id, False)
    if mapping is not None:
        return ErpCode(mapping.erp_code, mapping.flagged, mapping.flag_reason)
    return None


def counterparties_unmapped() -> QuerySet:
    """Counterparties with no ERP code: no mapping and no externalId."""
    from ledger_sync.models import Counterparty

    return Counterparty.objects.filter(erp_mapping__isnull=True).filter(
        Q(external_id__isnull=True) | Q(external_id="")
    )


def counterparties_awaiting_decision(*, queryset: QuerySet | None = None) -> QuerySet:
    """Unmapped counterparties with their open proposals (`open_proposals`, best first) and
    `has_proposals`, for the matching page."""
    from ledger_sync.models import Counterparty

    if queryset is None:
        queryset = Counterparty.objects.all()
    open_proposals = MatchProposal.objects.filter(
        counterparty=OuterRef("pk"), status=MatchProposal.Status.PROPOSED
    )
    return (
        queryset.filter(erp_mapping__isnull=True)
        .annotate(has_proposals=Exists(open_proposals))
        .prefetch_related(
            Prefetch(
                "match_proposals",
                queryset=MatchProposal.objects.filter(status=MatchProposal.Status.PROPOSED)
                .select_related("erp_party")
                .order_by("rank", "-score"),
                to_attr="open_proposals",
            )
        )
        .order_by("atlas_id")
    )


def match_proposals_open(*, counterparty: Any) -> list[MatchProposal]:
    return list(
        MatchProposal.objects.filter(
            counterparty=counterparty, status=MatchProposal.Status.PROPOSED
        )
        .select_related("erp_party")
        .order_by("rank", "-score")
    )


def counterparty_history(*, counterparty: Any) -> QuerySet[RecordChange]:
    """What changed on the counterparty, from mirror passes and from our write-backs."""
    return RecordChange.objects.filter(
        system="atlas", entity="Counterparty", remote_id=str(counterparty.atlas_id)
    ).order_by("-changed_at", "-id")


@dataclass(frozen=True)
class CustomFieldRow:
    definition: Any
    mapping: CustomFieldMapping | None
    samples: tuple[Any, ...]

    @property
    def needs_attention(self) -> bool:
        """A required ATLAS field with no mapping (neither a key nor ignored)."""
        return bool(self.definition.is_required) and self.mapping is None


def custom_field_rows(*, samples_per_field: int = 3) -> list[CustomFieldRow]:
    """Every mirrored custom field definition with its mapping and a few distinct values."""
    from ledger_sync.models import CounterpartyCustomFieldValue, CustomFieldDefinition

    definitions = list(CustomFieldDefinition.objects.order_by("atlas_id"))
    mappings = {m.definition_id: m for m in CustomFieldMapping.objects.select_related("updated_by")}
    samples = custom_field_samples(
        definition_ids=[d.pk for d in definitions],
        per_field=samples_per_field,
        model=CounterpartyCustomFieldValue,
    )
    return [
        CustomFieldRow(definition=d, mapping=mappings.get(d.pk), samples=samples.get(d.pk, ()))
        for d in definitions
    ]


def custom_field_samples(
    *, definition_ids: list[int], per_field: int = 3, model: Any = None
) -> dict[int, tuple[Any, ...]]:
    """Up to `per_field` distinct example values per definition, from the mirrored values."""
    if model is None:
        from ledger_sync.models import CounterpartyCustomFieldValue as model
    found: dict[int, list[Any]] = defaultdict(list)
    if not definition_ids:
        return {}
    # One query for every field (the page must not cost a query per field), bounded: at most a
    # few hundred rows per field, numbered per field by a window function, instead of every
    # counterparty's value.
    rows = (
        model.objects.filter(definition_id__in=definition_ids)
        .exclude(value__isnull=True)
        .annotate(
            position=Window(
                RowNumber(), partition_by=[F("definition_id")], order_by=F("counterparty_id").asc()
            )
        )
        .filter(position__lte=per_field * 50)
        .order_by("definition_id", "position")
        .values_list("definition_id", "value")
    )
    for definition_id, value in rows:
        samples = found[definition_id]
        if len(samples) < per_field and value not in samples and value not in ("", None):
            samples.append(value)
    return {key: tuple(values) for key, values in found.items()}


def custom_fields_required_unmapped() -> QuerySet:
    from ledger_sync.models import CustomFieldDefinition

    return CustomFieldDefinition.objects.filter(is_required=True, mapping__isnull=True)


# Ledger fields a journal entry commonly carries in `entry_values` (the AR Ledger API leaves
# the keys to the customer): offered on the mapping page beside the keys already in use.
SUGGESTED_ENTRY_KEYS = (
    "cost_centre",
    "profit_centre",
    "department",
    "project",
    "contract_reference",
    "deal_reference",
    "trader",
    "book",
    "commodity",
    "region",
)


def custom_field_target_suggestions() -> list[str]:
    """The entry_values keys to offer when mapping a field: those in use first, then the usual."""
    in_use = sorted(
        set(
            CustomFieldMapping.objects.filter(ignored=False)
            .exclude(target_key="")
            .values_list("target_key", flat=True)
        )
    )
    return in_use + [key for key in SUGGESTED_ENTRY_KEYS if key not in in_use]


def custom_field_entry_keys() -> dict[int, str]:
    """ATLAS custom field id -> entry_values key, for building journal entries."""
    return dict(
        CustomFieldMapping.objects.filter(ignored=False)
        .exclude(target_key="")
        .values_list("definition__atlas_id", "target_key")
    )
