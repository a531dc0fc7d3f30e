"""Mapping ATLAS custom fields to entry_values keys, with the history of every change."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied

from ledger_sync.errors import ApplicationError
from ledger_sync.models import CustomFieldMapping, CustomFieldMappingChange
from ledger_sync.selectors.parties import (
    custom_field_entry_keys,
    custom_field_rows,
    custom_fields_required_unmapped,
)
from ledger_sync.services.custom_fields import custom_field_mapping_remove, custom_field_mapping_set
from ledger_sync.services.roles import ACCOUNTANT, FINANCE_LEAD, roles_ensure
from tests.factories.atlas import CounterpartyCustomFieldValueFactory, CustomFieldDefinitionFactory
from tests.factories.parties import accountant, finance_lead

pytestmark = pytest.mark.django_db


def test_every_change_is_recorded_with_who_when_before_and_after():
    lead = finance_lead()
    definition = CustomFieldDefinitionFactory(name="ERP Cost Centre")

    custom_field_mapping_set(definition=definition, target_key="cost_centre", user=lead)
    custom_field_mapping_set(definition=definition, target_key="cost_centre", user=lead)
    custom_field_mapping_set(definition=definition, ignored=True, user=lead)
    custom_field_mapping_remove(definition=definition, user=lead)

    history = list(CustomFieldMappingChange.objects.filter(definition=definition).order_by("id"))
    assert [(c.before, c.after) for c in history] == [
        (None, {"target_key": "cost_centre", "ignored": False}),
        (
            {"target_key": "cost_centre", "ignored": False},
            {"target_key": "", "ignored": True},
        ),
        (
            {"target_key": "", "ignored": True},
            {"target_key": "", "ignored": False, "removed": True},
        ),
    ]
    assert all(c.changed_by == lead and c.changed_at is not None for c in history)
    assert not CustomFieldMapping.objects.exists()


def test_an_accountant_cannot_change_mappings():
    definition = CustomFieldDefinitionFactory()
    with pytest.raises(PermissionDenied):
        custom_field_mapping_set(definition=definition, target_key="cost_centre", user=accountant())
    assert not CustomFieldMappingChange.objects.exists()


@pytest.mark.parametrize("key", ["Cost Centre", "1st", "cost-centre", ""])
def test_a_target_key_must_be_an_identifier(key):
    with pytest.raises(ApplicationError):
        custom_field_mapping_set(
            definition=CustomFieldDefinitionFactory(), target_key=key, user=finance_lead()
        )


def test_two_fields_cannot_feed_one_key():
    lead = finance_lead()
    custom_field_mapping_set(
        definition=CustomFieldDefinitionFactory(name="ERP Cost Centre"),
        target_key="cost_centre",
        user=lead,
    )
    with pytest.raises(ApplicationError, match="already fed by custom field 'ERP Cost Centre'"):
        custom_field_mapping_set(
            definition=CustomFieldDefinitionFactory(), target_key="cost_centre", user=lead
        )


def test_required_fields_without_mapping_are_highlighted_with_sample_values():
    lead = finance_lead()
    required = CustomFieldDefinitionFactory(name="ACER Code", is_required=True)
    mapped_required = CustomFieldDefinitionFactory(name="Cost", is_required=True)
    optional = CustomFieldDefinitionFactory(name="Rating", is_required=False)
    for value in ("A0001", "A0002", "A0001", "A0003", "A0004"):
        CounterpartyCustomFieldValueFactory(definition=required, value=value)
    custom_field_mapping_set(definition=mapped_required, target_key="cost_centre", user=lead)

    rows = {row.definition.name: row for row in custom_field_rows(samples_per_field=3)}

    assert rows["ACER Code"].needs_attention is True
    assert rows["ACER Code"].samples == ("A0001", "A0002", "A0003")
    assert rows["Cost"].needs_attention is False
    assert rows["Rating"].needs_attention is False
    assert list(custom_fields_required_unmapped()) == [required]
    assert custom_field_entry_keys() == {mapped_required.atlas_id: "cost_centre"}
    assert optional.pk  # listed although never mapped
    assert "Rating" in rows


def test_roles_are_created_idempotently_with_the_right_permissions():
    first = roles_ensure()
    second = roles_ensure()
    assert first == second
    lead, clerk = finance_lead(), accountant()
    assert lead.has_perm("ledger_sync.approve_matchproposal")
    assert lead.has_perm("ledger_sync.approve_masterdatacorrection")
    assert lead.has_perm("ledger_sync.change_customfieldmapping")
    assert lead.has_perm("ledger_sync.change_postingsettings")
    assert not clerk.has_perm("ledger_sync.approve_matchproposal")
    assert not clerk.has_perm("ledger_sync.change_customfieldmapping")
    assert clerk.has_perm("ledger_sync.view_matchproposal")
    assert clerk.has_perm("ledger_sync.view_counterparty")
    assert {ACCOUNTANT, FINANCE_LEAD} <= set(first)
