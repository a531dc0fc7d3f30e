"""Gotransverse reference data (ledger, calendar, periods, GL accounts) and posting settings.

The ledger, its accounting years and periods, and the GL accounts are mirrored read-only from
the AR Ledger (services/gotransverse_mirror.py): the AR Ledger is their system of record and
nothing here is edited by hand. PostingSettings is ours: the control accounts and the workflow a
finance lead chooses, validated against the mirrored chart (services/posting_settings.py).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q

from .base import MirroredRecord, SyncState

__all__ = [
    "AccountingPeriod",
    "AccountingYear",
    "ClosedPeriodPolicy",
    "GLAccount",
    "JournalWorkflow",
    "Ledger",
    "PostingSettings",
    "PostingSettingsChange",
]


class Ledger(MirroredRecord):
    """One AR Ledger (`GET /ledgers/{id}`), without its embedded calendar (mirrored apart)."""

    gotransverse_id = models.BigIntegerField(unique=True)
    name = models.CharField(max_length=255)
    description = models.TextField(blank=True)
    status = models.CharField(max_length=32, blank=True, help_text="ACTIVE or INACTIVE.")
    convert_currency = models.CharField(
        max_length=32, blank=True, help_text="NONE, GL or ACCOUNT_CATEGORY."
    )
    conversion_currency = models.CharField(
        max_length=3, blank=True, help_text="ISO 4217 code the ledger books in."
    )
    conversion_rate_set_id = models.CharField(max_length=64, blank=True)
    currency_exchange_version = models.CharField(max_length=64, blank=True)
    chart_of_account_id = models.BigIntegerField(null=True, blank=True)
    rule_set_id = models.BigIntegerField(null=True, blank=True)
    timezone_name = models.CharField(max_length=64, blank=True)
    create_zero_amount_entries = models.BooleanField(default=False)
    is_valid = models.BooleanField(null=True, blank=True, help_text="The ledger's `valid` flag.")

    class Meta:
        ordering = ["gotransverse_id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.gotransverse_id})"

    @property
    def currency(self) -> str:
        return self.conversion_currency


class AccountingYear(MirroredRecord):
    ledger = models.ForeignKey(Ledger, on_delete=models.PROTECT, related_name="years")
    gotransverse_id = models.BigIntegerField()
    name = models.CharField(max_length=255)
    description = models.TextField(blank=True)
    year = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="Calendar year the accounting year starts in."
    )
    start_date = models.DateField()
    end_date = models.DateField()
    is_open = models.BooleanField(null=True, blank=True)
    is_complete = models.BooleanField(null=True, blank=True)

    class Meta:
        ordering = ["ledger_id", "start_date"]
        constraints = [
            models.UniqueConstraint(
                fields=["ledger", "gotransverse_id"], name="accounting_year_unique_per_ledger"
            )
        ]

    def __str__(self) -> str:
        return self.name


class AccountingPeriod(MirroredRecord):
    year = models.ForeignKey(AccountingYear, on_delete=models.PROTECT, related_name="periods")
    # Denormalised from the year so that "the period of ledger L on date D" is one indexed query.
    ledger = models.ForeignKey(Ledger, on_delete=models.PROTECT, related_name="periods")
    gotransverse_id = models.BigIntegerField()
    name = models.CharField(max_length=255)
    description = models.TextField(blank=True)
    quarter = models.CharField(max_length=32, blank=True)
    start_date = models.DateField()
    end_date = models.DateField()
    is_open = models.BooleanField(db_index=True)
    status = models.CharField(
        max_length=32, help_text="What the AR Ledger says: OPEN or CLOSED (from its `open` flag)."
    )

    class Meta:
        ordering = ["ledger_id", "start_date"]
        constraints = [
            models.UniqueConstraint(
                fields=["ledger", "gotransverse_id"], name="accounting_period_unique_per_ledger"
            )
        ]
        indexes = [models.Index(fields=["ledger", "start_date", "end_date"])]

    def __str__(self) -> str:
        state = "open" if self.is_open else "closed"
        return f"{self.name} ({self.start_date:%Y-%m-%d} to {self.end_date:%Y-%m-%d}, {state})"


class GLAccount(MirroredRecord):
    gotransverse_id = models.BigIntegerField(unique=True)
    number = models.CharField(max_length=64, db_index=True)
    name = models.CharField(max_length=255)
    description = models.TextField(blank=True)
    type = models.CharField(max_length=32, blank=True, help_text="ASSET, LIABILITY, REVENUE, …")
    designation = models.CharField(max_length=64, blank=True)
    designation_category = models.CharField(max_length=64, blank=True)
    is_posting_account = models.BooleanField()
    status = models.CharField(max_length=32, blank=True)
    chart_of_account_ids = models.JSONField(default=list, blank=True)

    ACTIVE_STATUS = "ACTIVE"

    class Meta:
        verbose_name = "GL account"
        ordering = ["number"]
        constraints = [
            # A number names one live account. An account deleted in Gotransverse stays here as
            # MISSING (journals may point at it), and its number may be given to a new account.
            models.UniqueConstraint(
                fields=["number"],
                condition=~Q(sync_state=SyncState.MISSING),
                name="gl_account_number_unique_while_live",
            )
        ]

    def __str__(self) -> str:
        return f"{self.number} {self.name}"

    @property
    def is_active(self) -> bool:
        return self.status.upper() == self.ACTIVE_STATUS


class JournalWorkflow(models.TextChoices):
    AUTO = "auto", "Automatic: post journals as soon as they are built"
    REVIEW = "review", "Review: a person approves each journal before it is posted"


class ClosedPeriodPolicy(models.TextChoices):
    BLOCK = "block", "Block: a journal dated in a closed period waits for a person"
    ROLL_FORWARD = "roll_forward", "Roll forward: post it into the next open period"


CONTROL_ACCOUNT_FIELDS: tuple[str, ...] = (
    "receivables_account",
    "payables_account",
    "output_vat_account",
    "input_vat_account",
    "bank_account",
)

# Optional: used for an item whose own GL account is missing and whose counterparty's account
# is not of the item's role (a Passive item of a customer with a revenue account); empty = block.
DEFAULT_ACCOUNT_FIELDS: tuple[str, ...] = ("default_revenue_account", "default_expense_account")

_POLICY_FIELDS: tuple[str, ...] = ("journal_workflow", "closed_period_policy")


class PostingSettings(models.Model):
    """The one row of posting settings. Created from the environment on first use, then owned
    by finance leads (admin) through services.posting_settings.posting_settings_update."""

    SINGLETON_PK = 1

    receivables_account = models.CharField(max_length=64, help_text="GL account number.")
    payables_account = models.CharField(max_length=64, help_text="GL account number.")
    output_vat_account = models.CharField(max_length=64, help_text="GL account number.")
    input_vat_account = models.CharField(max_length=64, help_text="GL account number.")
    bank_account = models.CharField(max_length=64, help_text="GL account number.")
    default_revenue_account = models.CharField(
        max_length=64,
        blank=True,
        help_text="Revenue GL account for an Active item when neither the item nor its "
        "counterparty gives a revenue account; empty: such an item blocks its order.",
    )
    default_expense_account = models.CharField(
        max_length=64,
        blank=True,
        help_text="Expense GL account for a Passive item when neither the item nor its "
        "counterparty gives an expense account; empty: such an item blocks its order.",
    )
    journal_workflow = models.CharField(max_length=16, choices=JournalWorkflow.choices)
    closed_period_policy = models.CharField(max_length=16, choices=ClosedPeriodPolicy.choices)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "posting settings"
        verbose_name_plural = "posting settings"
        constraints = [
            models.CheckConstraint(condition=Q(pk=1), name="posting_settings_is_singleton"),
        ]

    def __str__(self) -> str:
        return "Posting settings"

    @classmethod
    def environment_defaults(cls) -> dict[str, str]:
        return {
            "receivables_account": settings.LEDGER_ACCOUNT_RECEIVABLES,
            "payables_account": settings.LEDGER_ACCOUNT_PAYABLES,
            "output_vat_account": settings.LEDGER_ACCOUNT_OUTPUT_VAT,
            "input_vat_account": settings.LEDGER_ACCOUNT_INPUT_VAT,
            "bank_account": settings.LEDGER_ACCOUNT_BANK,
            "default_revenue_account": settings.LEDGER_ACCOUNT_DEFAULT_REVENUE,
            "default_expense_account": settings.LEDGER_ACCOUNT_DEFAULT_EXPENSE,
            "journal_workflow": settings.JOURNAL_WORKFLOW,
            "closed_period_policy": settings.CLOSED_PERIOD_POLICY,
        }

    @classmethod
    def load(cls) -> PostingSettings:
        """The settings row; created from the environment defaults the first time.

        get_or_create re-reads on the IntegrityError of a concurrent first use, so two workers
        starting together end up with the same single row.
        """
        row, _ = cls.objects.get_or_create(pk=cls.SINGLETON_PK, defaults=cls.environment_defaults())
        return row

    def snapshot(self) -> dict[str, Any]:
        return {
            name: getattr(self, name)
            for name in (*CONTROL_ACCOUNT_FIELDS, *DEFAULT_ACCOUNT_FIELDS, *_POLICY_FIELDS)
        }


class PostingSettingsChange(models.Model):
    """Who changed the posting settings, when, and every value before and after."""

    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    changed_at = models.DateTimeField(db_index=True)
    before = models.JSONField()
    after = models.JSONField()
    changes = models.JSONField(help_text='{"field": ["before", "after"], ...}')

    class Meta:
        ordering = ["-changed_at", "-id"]

    def __str__(self) -> str:
        return f"Posting settings changed {self.changed_at:%Y-%m-%d %H:%M}"
