"""Every pass against a remote system is a SyncRun, with counts and the errors it met."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class SyncRun(models.Model):
    class System(models.TextChoices):
        ATLAS = "atlas", "ATLAS ETRM"
        GOTRANSVERSE = "gotransverse", "Gotransverse AR Ledger"

    class Trigger(models.TextChoices):
        SCHEDULE = "schedule", "Schedule"
        COMMAND = "command", "Command"
        WEBHOOK = "webhook", "Webhook"
        ADMIN = "admin", "Admin"

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        COMPLETED_WITH_ERRORS = "completed_with_errors", "Completed with errors"
        FAILED = "failed", "Failed"

    system = models.CharField(max_length=16, choices=System.choices, db_index=True)
    trigger = models.CharField(max_length=16, choices=Trigger.choices)
    triggered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    status = models.CharField(
        max_length=24, choices=Status.choices, default=Status.RUNNING, db_index=True
    )
    started_at = models.DateTimeField(db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    counts = models.JSONField(
        default=dict,
        help_text='{"Order": {"created": 0, "updated": 0, "unchanged": 0, "failed": 0}, ...}',
    )
    api_calls = models.PositiveIntegerField(default=0)
    rate_limited = models.PositiveIntegerField(
        default=0, help_text="HTTP 429 answers received during the run."
    )
    error_message = models.TextField(blank=True, help_text="Why the whole run failed, when it did.")

    class Meta:
        ordering = ["-started_at", "-id"]

    def __str__(self) -> str:
        return f"{self.get_system_display()} run {self.pk} ({self.get_status_display()})"

    def total(self, outcome: str) -> int:
        return sum(entity.get(outcome, 0) for entity in self.counts.values())


class SyncRunError(models.Model):
    """One record that a run could not take, and why; the rest of the run went on."""

    sync_run = models.ForeignKey(SyncRun, on_delete=models.CASCADE, related_name="errors")
    entity = models.CharField(max_length=64)
    remote_id = models.CharField(max_length=64, blank=True)
    field = models.CharField(max_length=128, blank=True)
    message = models.TextField()
    raw_json = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.entity} {self.remote_id}: {self.message}"
