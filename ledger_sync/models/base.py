"""What every mirrored record has, whichever remote system it comes from."""

from __future__ import annotations

from typing import Any

from django.db import models

from integration import wire


class SyncState(models.TextChoices):
    SYNCED = "synced", "In sync"
    INVALID = "invalid", "Invalid in the remote system"
    MISSING = "missing", "No longer in the remote system"


class MirroredRecord(models.Model):
    """Local copy of one remote record: local pk, the remote id, raw JSON, content hash, and
    local timestamps kept apart from whatever the remote system says about the record."""

    raw_json = models.TextField(help_text="The record exactly as the remote system last sent it.")
    content_hash = models.CharField(max_length=64, help_text="SHA-256 of the canonical raw JSON.")
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField(db_index=True)
    last_changed_at = models.DateTimeField()
    sync_state = models.CharField(
        max_length=16, choices=SyncState.choices, default=SyncState.SYNCED, db_index=True
    )
    sync_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True

    @property
    def raw(self) -> Any:
        return wire.loads(self.raw_json) if self.raw_json else None

    @property
    def raw_pretty(self) -> str:
        return wire.dumps(self.raw, indent=2) if self.raw_json else ""


class RecordChange(models.Model):
    """One observed change of a mirrored record: which fields went from what to what."""

    system = models.CharField(max_length=16)
    entity = models.CharField(max_length=64)
    remote_id = models.CharField(max_length=64)
    sync_run = models.ForeignKey(
        "ledger_sync.SyncRun", null=True, blank=True, on_delete=models.SET_NULL
    )
    changed_at = models.DateTimeField()
    changes = models.JSONField(help_text='{"field": ["before", "after"], ...}')
    source = models.CharField(
        max_length=32,
        default="mirror",
        help_text="mirror: seen in the remote system; write_back: sent by ledger_sync.",
    )

    class Meta:
        indexes = [models.Index(fields=["system", "entity", "remote_id", "-changed_at"])]
        ordering = ["-changed_at", "-id"]

    def __str__(self) -> str:
        return f"{self.entity} {self.remote_id} changed {self.changed_at:%Y-%m-%d %H:%M}"
