"""The migrations match the models, and the data migration leaves the roles and schedules."""

import io

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django_q.models import Schedule

from ledger_sync.services.roles import ACCOUNTANT, FINANCE_LEAD
from ledger_sync.services.schedules import default_schedules


@pytest.mark.django_db
def test_every_model_change_has_its_migration():
    out = io.StringIO()
    try:
        call_command("makemigrations", "--check", "--dry-run", stdout=out)
    except SystemExit as exit_:  # makemigrations --check exits 1 when a migration is missing
        pytest.fail(f"a model change has no migration: {out.getvalue()}\n(exit {exit_.code})")


@pytest.mark.django_db
def test_the_migrations_create_both_roles_with_their_permissions():
    accountant = set(
        Group.objects.get(name=ACCOUNTANT).permissions.values_list("codename", flat=True)
    )
    finance_lead = set(
        Group.objects.get(name=FINANCE_LEAD).permissions.values_list("codename", flat=True)
    )

    assert {"view_order", "view_journal", "approve_journal"} <= accountant
    assert "approve_matchproposal" not in accountant
    assert "change_postingsettings" not in accountant
    assert {"approve_matchproposal", "change_postingsettings", "approve_journal"} <= finance_lead


@pytest.mark.django_db
def test_the_migrations_create_every_schedule_once():
    names = [spec.name for spec in default_schedules()]

    assert sorted(Schedule.objects.values_list("name", flat=True)) == sorted(names)
