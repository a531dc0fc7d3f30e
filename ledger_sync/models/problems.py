"""The one error queue: every problem a person must look at, whatever its source, in one list.

A `Problem` is one row per (kind, key): a repeat of the same problem folds into its row (last
seen, count and message refreshed; first seen kept) instead of adding rows. State-bearing
sources (a blocked order, a failed write-back, a failed task …) are refreshed into the queue
by services/problems.py and resolve themselves when the source recovers; events with no row
of their own (a refused inbound request) are reported as they happen.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

__all__ = ["Problem"]


class Problem(models.Model):
    class Kind(models.TextChoices):
        BLOCKED_ORDER = "blocked_order", "Blocked order"
        FAILED_POSTING = "failed_posting", "Failed posting"
        FAILED_WRITE_BACK = "failed_write_back", "Failed write-back to ATLAS"
        FAILED_DELIVERY = "failed_delivery", "Failed webhook delivery"
        FAILED_CALLBACK = "failed_callback", "Failed payment or invoice callback"
        REFUSED_REQUEST = "refused_request", "Refused inbound request"
        MIRROR_RECORD_ERROR = "mirror_record_error", "Mirror record error"
        FAILED_TASK = "failed_task", "Failed task"
        RECONCILIATION = "reconciliation", "Reconciliation difference"

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        RESOLVED = "resolved", "Resolved"
        IGNORED = "ignored", "Ignored"

    kind = models.CharField(max_length=32, choices=Kind.choices)
    key = models.CharField(
        max_length=255,
        help_text="What makes two reports the same problem within its kind (e.g. order_sync:42).",
    )
    record_label = models.CharField(
        "record", max_length=255, blank=True, help_text="The record the problem is about."
    )
    message = models.TextField(help_text="What is wrong and what fixes it, in plain words.")
    fix_url = models.CharField(
        "fix link",
        max_length=500,
        blank=True,
        help_text="Admin page of the exact record that fixes it (never a search).",
    )
    details = models.JSONField(
        default=dict, blank=True, help_text="For administrators; never secrets or bodies."
    )
    first_seen_at = models.DateTimeField("first seen")
    last_seen_at = models.DateTimeField("last seen", db_index=True)
    count = models.PositiveIntegerField(default=1, help_text="Times seen, repeats folded.")
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.OPEN, db_index=True
    )
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Empty with a resolved date: resolved automatically when the source recovered.",
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="assigned_problems",
    )
    note = models.TextField(blank=True, help_text="What was done or is planned.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "problem"
        verbose_name_plural = "error queue"
        ordering = ["-last_seen_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "key"], name="problem_unique_kind_key")
        ]
        indexes = [
            models.Index(fields=["status", "-last_seen_at"], name="problem_status_last_seen"),
            models.Index(fields=["kind", "status"], name="problem_kind_status"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.record_label or self.key}"
