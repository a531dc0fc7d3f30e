"""Runs of the two jobs a person can start from the back office ("Run now"): the ATLAS mirror
and the journal cycle. A row is made when the run is asked for (queued), then carries its
progress while the worker runs it and its result afterwards; the scheduled journal cycle
records its runs here too, so that its result is visible without reading task results."""

from __future__ import annotations

from django.conf import settings
from django.db import models

__all__ = ["JobRun"]


class JobRun(models.Model):
    class Kind(models.TextChoices):
        ATLAS_MIRROR = "atlas_mirror", "ATLAS mirror"
        JOURNAL_CYCLE = "journal_cycle", "Journal cycle"

    class Trigger(models.TextChoices):
        SCHEDULE = "schedule", "Schedule"
        ADMIN = "admin", "Run now (back office)"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued, waiting for a worker"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        NEEDS_ATTENTION = "needs_attention", "Finished; some records need a person"
        FAILED = "failed", "Failed"

    ACTIVE = (Status.QUEUED, Status.RUNNING)

    kind = models.CharField(max_length=16, choices=Kind.choices, db_index=True)
    trigger = models.CharField(max_length=16, choices=Trigger.choices)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True
    )
    requested_at = models.DateTimeField(db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    progress = models.JSONField(
        default=dict,
        blank=True,
        help_text='While running: {"stage": "build", "stages_done": [...], "entity": "Order", '
        '"done": 500, "total": 1200}.',
    )
    result = models.JSONField(
        default=dict, blank=True, help_text="The counts per stage (or entity) when finished."
    )
    problems = models.PositiveIntegerField(
        default=0, help_text="Orders blocked or failed, or records that failed, at the end."
    )
    error_message = models.TextField(blank=True, help_text="Why the run failed, when it did.")
    sync_run = models.ForeignKey(
        "ledger_sync.SyncRun",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The ATLAS mirror pass this run made.",
    )

    class Meta:
        ordering = ["-requested_at", "-id"]
        verbose_name = "mirror or cycle run"
        verbose_name_plural = "mirror and cycle runs"
        permissions = [("start_jobrun", "Can start the ATLAS mirror or the journal cycle now")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} run {self.pk} ({self.get_status_display()})"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE
