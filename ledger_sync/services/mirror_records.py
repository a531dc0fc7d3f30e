"""What both mirrors (ATLAS, Gotransverse) and the ATLAS write-back do the same way with a
remote record's raw JSON: hash it, tell which top-level fields changed, and make a value fit a
JSONField without ever passing money through float; and the names of the entities they read."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from django.db import models

from integration import wire

# The entities each mirror reads, in the order a full pass reads them (kept here, below the
# mirrors, so the error queue's sources can name them without importing a mirror).
ATLAS_ENTITIES = (
    "CustomFieldType",
    "CustomFieldDefinition",
    "Counterparty",
    "Order",
    "OrderItem",
    "Invoice",
    "Payment",
)
# Gotransverse reference data.
ENTITY_LEDGER = "Ledger"
ENTITY_YEAR = "AccountingYear"
ENTITY_PERIOD = "AccountingPeriod"
ENTITY_ACCOUNT = "GLAccount"
GOTRANSVERSE_ENTITIES = (ENTITY_LEDGER, ENTITY_YEAR, ENTITY_PERIOD, ENTITY_ACCOUNT)


def raw_content_hash(raw: Any) -> str:
    """SHA-256 of the canonical JSON (sorted keys, exact decimals): equal means unchanged.

    The same digest as integration.atlas.records.AtlasRecord.content_hash, so a row written from
    a write-back answer is "unchanged" to the next mirror pass."""
    return hashlib.sha256(wire.canonical(raw).encode()).hexdigest()


def raw_changes(before: Any, after: Any) -> dict[str, list[Any]]:
    """Top-level fields of a remote record whose value changed: {"field": [before, after]}, in
    the remote system's own names, ready for RecordChange.changes."""
    if not isinstance(before, Mapping) or not isinstance(after, Mapping):
        return {"(record)": [json_safe(before), json_safe(after)]}
    return {
        key: [json_safe(before.get(key)), json_safe(after.get(key))]
        for key in sorted(set(before) | set(after))
        if wire.canonical(before.get(key)) != wire.canonical(after.get(key))
    }


def json_safe(value: Any) -> Any:
    """A value for a JSONField (standard encoder): a Decimal keeps its exact digits as text,
    dates become ISO text, a model instance its pk."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Mapping):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    if isinstance(value, models.Model):
        return value.pk
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


# Every entity of a full pass, in the order they are read (parents before children).
