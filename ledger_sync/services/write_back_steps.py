"""Write-back steps: one WriteBackStep per order and kind (ERP code, invoice), opened after a
posting, each with its own state and retry; what both write-backs share (the report, a failed
step's backoff, moving orders on)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from integration import wire
from ledger_sync.models import (
    OrderSync,
    WriteBackStep,
)
from ledger_sync.services.background import backoff_delay
from ledger_sync.services.order_states import (
    OrderProblem,
)

logger = logging.getLogger(__name__)


WAITING_FOR_ERP_INVOICE = "erp_invoice_callback"


ACTOR = "system:write_back"


@dataclass
class WriteBackReport:
    erp_codes_written: int = 0
    invoices_created: int = 0
    invoices_found: int = 0
    waiting_for_erp: int = 0
    no_document: int = 0  # orders netting to 0.00: nothing to invoice (services/documents.py)
    failed: list[OrderProblem] = field(default_factory=list)
    atlas_calls: int = 0


def write_back_steps_open(*, order_sync: OrderSync) -> None:
    """Called when a journal is posted: the ERP code step is (re)opened for this revision, the
    invoice step is opened once per order (a re-posted revision keeps its invoice)."""
    WriteBackStep.objects.update_or_create(
        order_sync=order_sync,
        kind=WriteBackStep.Kind.ERP_CODE,
        defaults={
            "status": WriteBackStep.Status.PENDING,
            "attempts": 0,
            "next_attempt_at": None,
            "last_error": "",
        },
    )
    WriteBackStep.objects.get_or_create(
        order_sync=order_sync,
        kind=WriteBackStep.Kind.INVOICE,
        defaults={
            "status": WriteBackStep.Status.PENDING,
            "waiting_for": WAITING_FOR_ERP_INVOICE if settings.INVOICE_NUMBERS_FROM_ERP else "",
        },
    )


def write_back_steps_open_many(*, order_sync_ids: list[int]) -> None:
    """write_back_steps_open for a batch of orders, in a few queries."""
    if not order_sync_ids:
        return
    existing = set(
        WriteBackStep.objects.filter(order_sync_id__in=order_sync_ids).values_list(
            "order_sync_id", "kind"
        )
    )
    WriteBackStep.objects.filter(
        order_sync_id__in=order_sync_ids, kind=WriteBackStep.Kind.ERP_CODE
    ).update(
        status=WriteBackStep.Status.PENDING,
        attempts=0,
        next_attempt_at=None,
        last_error="",
        updated_at=timezone.now(),
    )
    waiting = WAITING_FOR_ERP_INVOICE if settings.INVOICE_NUMBERS_FROM_ERP else ""
    WriteBackStep.objects.bulk_create(
        [
            WriteBackStep(
                order_sync_id=pk, kind=kind, waiting_for=waiting if kind == "invoice" else ""
            )
            for pk in order_sync_ids
            for kind in (WriteBackStep.Kind.ERP_CODE, WriteBackStep.Kind.INVOICE)
            if (pk, kind) not in existing
        ],
        batch_size=500,
    )


def write_back_retry(*, step: WriteBackStep) -> WriteBackStep:
    """A person asks for a failed step to be tried at the next pass (backoff skipped)."""
    WriteBackStep.objects.filter(pk=step.pk, status=WriteBackStep.Status.FAILED).update(
        next_attempt_at=None
    )
    step.refresh_from_db()
    return step


def due_steps(kind: str, *, states: Iterable[str], now: datetime, ids: Iterable[int] | None):
    steps = (
        WriteBackStep.objects.filter(
            kind=kind,
            status__in=(WriteBackStep.Status.PENDING, WriteBackStep.Status.FAILED),
            waiting_for="",
            order_sync__state__in=list(states),
        )
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .select_related("order_sync__order__counterparty")
        .order_by("pk")
    )
    if ids is not None:
        steps = steps.filter(order_sync_id__in=list(ids))
    return list(steps)


STEP_FIELDS = [
    "status",
    "attempts",
    "last_error",
    "next_attempt_at",
    "request_json",
    "response_json",
    "done_at",
    "updated_at",
]


@dataclass
class OrderMove:
    """An order moved by a write-back, in the shape TransitionBatch.add_many takes."""

    order_sync: OrderSync
    note: str
    actor: str = ACTOR
    user: Any = None


def steps_failed(steps, *, error: str, records, report: WriteBackReport) -> None:
    now = timezone.now()
    with transaction.atomic():
        for index, step in enumerate(steps):
            step.status = WriteBackStep.Status.FAILED
            step.attempts += 1
            step.last_error = error
            step.next_attempt_at = now + backoff_delay(step.attempts)
            if index < len(records):
                step.request_json = wire.dumps(records[index], indent=2)
            step.save()
            report.failed.append(
                OrderProblem(
                    order_sync_id=step.order_sync_id,
                    atlas_order_id=step.order_sync.order.atlas_id,
                    state=step.order_sync.state,
                    reason=f"write_back_{step.kind}",
                    message=error,
                )
            )
    logger.warning("write_back.failed", extra={"steps": len(steps), "error": error[:200]})
