"""The two back-office roles, as Django groups with their permissions.

- Accountant: sees everything in ledger_sync (and the task queue's lists: failed and
  successful tasks, schedules), approves no match, correction or mapping, and
  may request master-data corrections (a finance lead approves them). Journal approval is
  granted by the journals area (approve_journal).
- Finance lead: everything an accountant has, plus approving match proposals and master-data
  corrections, creating ERP parties for unmatched counterparties, importing the ERP party
  register, mapping custom fields and changing the posting settings.

`roles_ensure()` is idempotent: a data migration calls it, and so can a deploy step; running it
again adds what is missing and never removes a permission someone granted by hand.
"""

from __future__ import annotations

import logging

from django.apps import apps as global_apps
from django.contrib.auth.management import create_permissions
from django.contrib.auth.models import Group, Permission
from django.db import transaction

logger = logging.getLogger(__name__)

ACCOUNTANT = "Accountant"
FINANCE_LEAD = "Finance lead"
APP_LABEL = "ledger_sync"

# Permissions on top of "view" for every ledger_sync model.
# change_problem: both roles work the error queue (assign, note, resolve, ignore).
# start_jobrun: "Run now" of the ATLAS mirror and the journal cycle (the dashboard).
ACCOUNTANT_EXTRA = (
    "add_masterdatacorrection",
    "approve_journal",
    "change_problem",
    "start_jobrun",
)
TASK_QUEUE_VIEW = ("view_failure", "view_success", "view_schedule", "view_ormq")
FINANCE_LEAD_EXTRA = (
    "add_masterdatacorrection",
    "change_masterdatacorrection",
    "approve_masterdatacorrection",
    "approve_matchproposal",
    "change_matchproposal",
    "add_erpparty",
    "change_erpparty",
    "add_counterpartymapping",
    "change_counterpartymapping",
    "add_customfieldmapping",
    "change_customfieldmapping",
    "delete_customfieldmapping",
    "change_postingsettings",
    "approve_journal",
    "change_problem",
    "start_jobrun",
)


@transaction.atomic
def roles_ensure() -> dict[str, int]:
    """Create or complete the groups; returns how many permissions each group has.

    From a data migration: `RunPython(lambda apps, schema_editor: roles_ensure())`, placed
    after the migration that creates the models. Django creates permissions only after all
    migrations ran (post_migrate), so they are created here first when missing; this uses the
    real app registry on purpose: a migration's historical app config has no models module
    and Django would silently create nothing.
    """
    create_permissions(global_apps.get_app_config(APP_LABEL), verbosity=0)
    create_permissions(global_apps.get_app_config("django_q"), verbosity=0)

    app_permissions = Permission.objects.filter(content_type__app_label=APP_LABEL)
    view = list(app_permissions.filter(codename__startswith="view_")) + list(
        # The task queue's lists (failed and successful tasks, schedules), for the dashboard.
        Permission.objects.filter(content_type__app_label="django_q", codename__in=TASK_QUEUE_VIEW)
    )
    wanted = {
        ACCOUNTANT: view + _named(app_permissions, ACCOUNTANT_EXTRA),
        FINANCE_LEAD: view + _named(app_permissions, FINANCE_LEAD_EXTRA),
    }
    counts = {}
    for name, permissions in wanted.items():
        group, _created = Group.objects.get_or_create(name=name)
        group.permissions.add(*permissions)
        counts[name] = group.permissions.count()
    return counts


def _named(queryset, codenames: tuple[str, ...]) -> list:
    found = list(queryset.filter(codename__in=codenames))
    missing = sorted(set(codenames) - {p.codename for p in found})
    if missing:
        # A model of another area not built yet (e.g. posting settings): the next run adds it.
        logger.warning("roles: permissions not found yet", extra={"missing": missing})
    return found
