"""Changing the posting settings: control and default accounts checked against the mirrored
chart and their roles (a receivables account designated receivable, a default expense account of
type EXPENSE, …), and a history of every change (who, when, before, after)."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from ledger_sync.errors import ApplicationError
from ledger_sync.models import (
    ClosedPeriodPolicy,
    GLAccount,
    JournalWorkflow,
    PostingSettings,
    PostingSettingsChange,
    SyncState,
)
from ledger_sync.models.reference import CONTROL_ACCOUNT_FIELDS, DEFAULT_ACCOUNT_FIELDS
from ledger_sync.selectors.reference import gl_account_check
from ledger_sync.services.account_roles import account_role_problem
from ledger_sync.services.rechecks import orders_recheck_enqueue

logger = logging.getLogger(__name__)

CHANGE_PERMISSION = "ledger_sync.change_postingsettings"
CONTROL_ACCOUNT_LABELS: dict[str, str] = {
    "receivables_account": "Receivables account",
    "payables_account": "Payables account",
    "output_vat_account": "Output VAT account",
    "input_vat_account": "Input VAT account",
    "bank_account": "Bank account",
    "default_revenue_account": "Default revenue account",
    "default_expense_account": "Default expense account",
}
# The role (services/account_roles.py) each account setting must have in the chart.
ACCOUNT_FIELD_ROLES: dict[str, str] = {
    "receivables_account": "receivables",
    "payables_account": "payables",
    "output_vat_account": "output_vat",
    "input_vat_account": "input_vat",
    "bank_account": "bank",
    "default_revenue_account": "revenue",
    "default_expense_account": "expense",
}
ACCOUNT_FIELDS: tuple[str, ...] = (*CONTROL_ACCOUNT_FIELDS, *DEFAULT_ACCOUNT_FIELDS)
EDITABLE_FIELDS: tuple[str, ...] = (
    *ACCOUNT_FIELDS,
    "journal_workflow",
    "closed_period_policy",
)


class PostingSettingsInvalid(ApplicationError):
    """One or more posting settings were refused; `errors` maps each field to its message."""

    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        super().__init__(" ".join(errors.values()), details={"errors": errors})


def posting_settings_control_account_problem(*, field: str, number: str) -> str | None:
    """Why `number` cannot be the control account `field`, or None when it can.

    The message starts with the setting's name ("Receivables account 4000 is …") so that it
    reads on its own in the admin, in a log and in a test failure.
    """
    label = CONTROL_ACCOUNT_LABELS[field]
    number_text = "" if number is None else str(number).strip()
    if not number_text:
        if field in DEFAULT_ACCOUNT_FIELDS:
            return None  # optional: an item needing it blocks its order instead
        return f"{label} is empty; enter the number of a posting account of the Gotransverse chart."
    account, problem = gl_account_check(number_text)
    if problem is None and account is not None:
        problem = account_role_problem(role=ACCOUNT_FIELD_ROLES[field], account=account)
    if problem is None:
        return None
    # gl_account_check speaks of "GL account N"; name the setting instead.
    return problem.replace(f"GL account {number_text}", f"{label} {number_text}", 1)


def posting_settings_validate(changes: dict[str, Any]) -> dict[str, Any]:
    """Clean `changes` and check them; raises PostingSettingsInvalid listing every problem.

    Returns the cleaned values (account numbers stripped). Unknown field names are refused so a
    typo cannot silently change nothing.
    """
    errors: dict[str, str] = {}
    cleaned: dict[str, Any] = {}
    for name, value in changes.items():
        if name not in EDITABLE_FIELDS:
            errors[name] = (
                f"{name} is not a posting setting; use one of {', '.join(EDITABLE_FIELDS)}."
            )
            continue
        if name in ACCOUNT_FIELDS:
            number = "" if value is None else str(value).strip()
            problem = posting_settings_control_account_problem(field=name, number=number)
            if problem:
                errors[name] = problem
            cleaned[name] = number
        elif name == "journal_workflow":
            if value not in JournalWorkflow.values:
                errors[name] = f"Journal workflow {value!r} is not known; use 'auto' or 'review'."
            cleaned[name] = value
        elif name == "closed_period_policy":
            if value not in ClosedPeriodPolicy.values:
                errors[name] = (
                    f"Closed-period policy {value!r} is not known; use 'block' or 'roll_forward'."
                )
            cleaned[name] = value
    if errors:
        raise PostingSettingsInvalid(errors)
    return cleaned


@transaction.atomic
def posting_settings_update(*, user: Any, **changes: Any) -> PostingSettings:
    """Apply `changes` to the posting settings after checking every one of them.

    Nothing is saved unless every change is valid. A change that sets the values they already
    have writes nothing and records no history. Only a finance lead (CHANGE_PERMISSION) may
    change them, whoever calls this: the admin is not the only guard.
    """
    if user is None or not user.has_perm(CHANGE_PERMISSION):
        raise PermissionDenied("Only a finance lead may change the posting settings.")
    cleaned = posting_settings_validate(changes)
    PostingSettings.load()
    # Lock the row so that two finance leads saving at once each record a true "before".
    current = PostingSettings.objects.select_for_update().get(pk=PostingSettings.SINGLETON_PK)
    before = current.snapshot()
    diff = {name: [before[name], value] for name, value in cleaned.items() if before[name] != value}
    if not diff:
        return current
    for name, (_, value) in diff.items():
        setattr(current, name, value)
    actor = user
    current.updated_by = actor
    current.save()
    PostingSettingsChange.objects.create(
        changed_by=actor,
        changed_at=timezone.now(),
        before=before,
        after=current.snapshot(),
        changes=diff,
    )
    orders_recheck_enqueue(reason="posting settings changed")
    logger.info(
        "posting settings changed",
        extra={"fields": sorted(diff), "user_id": getattr(actor, "pk", None)},
    )
    return current


def posting_settings_problems(settings_row: PostingSettings | None = None) -> dict[str, str]:
    """What is wrong with the settings in force against today's mirrored chart.

    The chart can change after the settings were saved (an account closed, deleted, made a
    parent); the journal builder and the admin ask this before relying on the settings.
    """
    row = settings_row or PostingSettings.load()
    problems: dict[str, str] = {}
    for name in ACCOUNT_FIELDS:
        problem = posting_settings_control_account_problem(field=name, number=getattr(row, name))
        if problem:
            problems[name] = problem
    return problems


def posting_settings_control_accounts(
    settings_row: PostingSettings | None = None,
) -> dict[str, GLAccount | None]:
    """The mirrored GL account behind each control account setting (None when unknown)."""
    row = settings_row or PostingSettings.load()
    numbers = {name: getattr(row, name) for name in ACCOUNT_FIELDS}
    accounts = {
        a.number: a
        for a in GLAccount.objects.filter(number__in=numbers.values()).exclude(
            sync_state=SyncState.MISSING
        )
    }
    return {name: accounts.get(number) for name, number in numbers.items()}
