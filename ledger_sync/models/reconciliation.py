"""Reconciliation: does what ATLAS settled, what ledger_sync posted and what the AR Ledger holds
agree? A ReconciliationRun is one comparison (recorded also when it finds nothing, so that "last
reconciled, 0 differences" can be shown); each ReconciliationDifference is one disagreement with
its figures, the amount, the likely cause and a link to the record that explains it.

`key` names the disagreement, not the run: the same difference found by the next run carries
the same key, so the error queue folds repeats (services/reconciliation.py builds the keys).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

__all__ = ["ReconciliationDifference", "ReconciliationRun"]

MONEY = {"max_digits": 18, "decimal_places": 2}


class ReconciliationRun(models.Model):
    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed (nothing compared; see the error)"

    trigger = models.CharField(max_length=32, help_text="command, schedule, admin, test ...")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    period = models.CharField(
        max_length=7, blank=True, help_text="YYYY-MM reconciled; empty = every period."
    )
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.RUNNING, db_index=True
    )
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    difference_count = models.PositiveIntegerField(default=0)
    orders_checked = models.PositiveIntegerField(default=0)
    accounts_checked = models.PositiveIntegerField(default=0)
    counterparties_checked = models.PositiveIntegerField(default=0)
    ledger_transactions_read = models.PositiveIntegerField(default=0)
    atlas_calls = models.PositiveIntegerField(default=0, help_text="HTTP requests sent to ATLAS.")
    ledger_calls = models.PositiveIntegerField(
        default=0, help_text="HTTP requests sent to the AR Ledger."
    )
    summary = models.JSONField(default=dict, blank=True, help_text="Differences per level/kind.")

    class Meta:
        ordering = ["-started_at", "-id"]
        verbose_name = "reconciliation run"

    def __str__(self) -> str:
        scope = self.period or "all periods"
        return f"Reconciliation {self.pk} ({scope}): {self.difference_count} differences"


class ReconciliationDifference(models.Model):
    class Level(models.IntegerChoices):
        ORDER = 1, "1 · order"
        ACCOUNT = 2, "2 · GL account and period"
        COUNTERPARTY = 3, "3 · counterparty"

    class Kind(models.TextChoices):
        ORDER_CHANGED = "order_changed_after_posting", "ATLAS changed the order after posting"
        MISSING_IN_LEDGER = "missing_in_ledger", "Posted journal missing in the ledger"
        LEDGER_EDITED = "ledger_transaction_edited", "Ledger transaction edited"
        DUPLICATE_REFERENCE = "duplicate_reference", "Several ledger transactions, one reference"
        STRAY_TRANSACTION = "stray_transaction", "Ledger transaction we never posted"
        ACCOUNT_BALANCE = "account_balance", "GL account total differs"
        COUNTERPARTY_BALANCE = "counterparty_balance", "Counterparty balance differs"

    run = models.ForeignKey(ReconciliationRun, on_delete=models.CASCADE, related_name="differences")
    level = models.PositiveSmallIntegerField(choices=Level.choices, db_index=True)
    kind = models.CharField(max_length=32, choices=Kind.choices, db_index=True)
    key = models.CharField(max_length=255, db_index=True, help_text="Same across runs.")
    record_label = models.CharField(max_length=255, help_text="What the row is about.")
    currency = models.CharField(max_length=3, blank=True)
    # The figures compared (empty when a system has none for this record).
    atlas_amount = models.DecimalField(**MONEY, null=True, blank=True)
    ours_amount = models.DecimalField(**MONEY, null=True, blank=True)
    ledger_amount = models.DecimalField(
        **MONEY, null=True, blank=True, help_text="From the ledger's transactions and entries."
    )
    ledger_balance_amount = models.DecimalField(
        **MONEY, null=True, blank=True, help_text="From the ledger's balance endpoint (level 2)."
    )
    amount = models.DecimalField(**MONEY, help_text="The difference.")
    likely_cause = models.TextField()
    fix_url = models.CharField(max_length=500, blank=True)
    period = models.CharField(max_length=255, blank=True, help_text="Accounting period (level 2).")
    gl_account = models.CharField(max_length=32, blank=True)
    billing_account_num = models.CharField(max_length=64, blank=True)
    source_transaction_reference = models.CharField(max_length=64, blank=True)
    ledger_transaction_ids = models.JSONField(default=list, blank=True)
    order = models.ForeignKey(
        "ledger_sync.Order", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    journal = models.ForeignKey(
        "ledger_sync.Journal", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    counterparty = models.ForeignKey(
        "ledger_sync.Counterparty",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["run_id", "level", "kind", "key"]
        verbose_name = "reconciliation difference"
        constraints = [
            models.UniqueConstraint(fields=["run", "key"], name="recon_difference_unique_key")
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.record_label}"
