"""Mapping ATLAS custom fields to ledger fields (an `entry_values` key on journal entries).

Every change is kept as a CustomFieldMappingChange (who, when, before, after): the mapping
decides what lands on journal entries, so an auditor must be able to see when it changed.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from ledger_sync.errors import ApplicationError
from ledger_sync.models import CustomFieldMapping, CustomFieldMappingChange
from ledger_sync.services.rechecks import orders_recheck_enqueue

CHANGE_PERMISSION = "ledger_sync.change_customfieldmapping"
# entry_values keys are identifiers: they end up as JSON keys read by code and reports.
_TARGET_KEY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def _state(mapping: CustomFieldMapping | None) -> dict[str, Any] | None:
    if mapping is None:
        return None
    return {"target_key": mapping.target_key, "ignored": mapping.ignored}


@transaction.atomic
def custom_field_mapping_set(
    *,
    definition: Any,
    user: Any,
    target_key: str = "",
    ignored: bool = False,
    now: datetime | None = None,
) -> CustomFieldMapping:
    """Map a custom field definition to an entry_values key, or mark it ignored.

    Exactly one of `target_key` and `ignored` is given. Setting what is already set records
    nothing. Two fields cannot feed the same key (one would silently overwrite the other).
    """
    if user is None or not user.has_perm(CHANGE_PERMISSION):
        raise PermissionDenied("Only a finance lead may change custom field mappings.")
    target_key = (target_key or "").strip()
    if bool(target_key) == bool(ignored):
        raise ApplicationError(
            f"Custom field {definition.name!r}: give an entry_values key or mark it ignored "
            "(one of the two)."
        )
    if target_key and not _TARGET_KEY.match(target_key):
        raise ApplicationError(
            f"{target_key!r} is not a valid entry_values key: use lower-case letters, digits "
            "and underscores, starting with a letter (e.g. cost_centre)."
        )
    if target_key:
        taken = (
            CustomFieldMapping.objects.filter(target_key=target_key)
            .exclude(definition=definition)
            .select_related("definition")
            .first()
        )
        if taken is not None:
            raise ApplicationError(
                f"entry_values key {target_key!r} is already fed by custom field "
                f"{taken.definition.name!r}; choose another key or unmap that field first."
            )
    now = now or timezone.now()
    mapping = CustomFieldMapping.objects.select_for_update().filter(definition=definition).first()
    before = _state(mapping)
    after = {"target_key": target_key, "ignored": bool(ignored)}
    if before == after:
        return mapping
    if mapping is None:
        mapping = CustomFieldMapping(definition=definition)
    mapping.target_key = target_key
    mapping.ignored = bool(ignored)
    mapping.updated_by = user
    mapping.updated_at = now
    mapping.save()
    CustomFieldMappingChange.objects.create(
        definition=definition, changed_by=user, changed_at=now, before=before, after=after
    )
    orders_recheck_enqueue(reason="custom-field mapping saved")
    return mapping


@transaction.atomic
def custom_field_mapping_remove(*, definition: Any, user: Any, now: datetime | None = None) -> bool:
    """Remove a mapping (the field is then unmapped again); recorded like any change."""
    if user is None or not user.has_perm(CHANGE_PERMISSION):
        raise PermissionDenied("Only a finance lead may change custom field mappings.")
    mapping = CustomFieldMapping.objects.select_for_update().filter(definition=definition).first()
    if mapping is None:
        return False
    before = _state(mapping)
    mapping.delete()
    CustomFieldMappingChange.objects.create(
        definition=definition,
        changed_by=user,
        changed_at=now or timezone.now(),
        before=before,
        after={"target_key": "", "ignored": False, "removed": True},
    )
    orders_recheck_enqueue(reason="custom-field mapping removed")
    return True
