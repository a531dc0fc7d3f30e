"""Re-checking orders at once after a person fixed what blocked them.

When a match is approved (or an ERP party created for a counterparty), a custom-field mapping
saved, the posting settings changed or the Gotransverse reference data synced, the orders the
fix may release are re-checked now — not at the next scheduled cycle. The service that made the
fix calls `orders_recheck_enqueue` (one line); once its transaction commits, the affected
orders are read and queued in batches to `orders_recheck_task`, which runs
`pipeline.orders_recheck`: the cycle's own
build stage for just those orders and sends what it built (a draft for review, or a posting
under the automatic workflow), exactly as the cycle would.

Affected: for a counterparty, its blocked and ready orders; for a mapping, the settings or the
reference data, every blocked order. A block only a person clears (a remote rejection, a
rejection in review) is left to that person's "rebuild", as the cycle leaves it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.db import transaction
from django.db.models import Q, QuerySet
from django_q.tasks import async_task

from ledger_sync.models import OrderState, OrderSync, SyncRun
from ledger_sync.services.journal_rules import MANUAL_ONLY_REASONS

logger = logging.getLogger(__name__)

RECHECK_TASK = "ledger_sync.tasks.orders_recheck_task"
BATCH_SIZE = 500
S = OrderState


def _rebuildable_blocked() -> Q:
    return Q(state=S.BLOCKED) & ~Q(blocked_reason__in=MANUAL_ONLY_REASONS)


def _affected(counterparty_ids: Iterable[int] | None) -> QuerySet:
    if counterparty_ids is None:
        return OrderSync.objects.filter(_rebuildable_blocked())
    return OrderSync.objects.filter(order__counterparty_id__in=list(counterparty_ids)).filter(
        _rebuildable_blocked() | Q(state=S.READY)
    )


def orders_affected(*, counterparty_ids: Iterable[int] | None = None) -> list[int]:
    """The order syncs a fix may release: a counterparty's blocked and ready orders, or (no
    counterparty given) every blocked order."""
    return list(_affected(counterparty_ids).order_by("pk").values_list("pk", flat=True))


def orders_recheck_enqueue(*, reason: str, counterparty_ids: Iterable[int] | None = None) -> None:
    """Queue the re-check of the orders affected by a fix, once the caller's transaction has
    committed (at once in autocommit); nothing is queued for a fix that was rolled back.

    The affected orders are read after the commit, so they are the ones the fix now concerns.
    A failure to queue is logged and never undoes the fix: the next cycle re-checks them too.
    """
    ids = None if counterparty_ids is None else sorted({int(pk) for pk in counterparty_ids})
    if not _affected(ids).exists():
        return  # nothing to release: no callback, no task
    transaction.on_commit(
        lambda: orders_recheck_queue(reason=reason, counterparty_ids=ids), robust=True
    )


def orders_recheck_queue(*, reason: str, counterparty_ids: list[int] | None = None) -> int:
    """Queue `orders_recheck_task` for the affected orders, BATCH_SIZE per task; the number of
    tasks queued (none when no order is affected)."""
    pks = orders_affected(counterparty_ids=counterparty_ids)
    batches = [pks[start : start + BATCH_SIZE] for start in range(0, len(pks), BATCH_SIZE)]
    for batch in batches:
        async_task(
            RECHECK_TASK,
            batch,
            reason,
            task_name=f"Re-check {len(batch)} order(s) after {reason}"[:100],
        )
    if batches:
        logger.info("orders.recheck_queued", extra={"orders": len(pks), "reason": reason})
    return len(batches)


def orders_recheck_after_reference_sync(*, run: SyncRun) -> None:
    """After a Gotransverse reference-data pass that changed something (an account opened, a
    period reopened …), re-check every blocked order; an unchanged pass queues nothing."""
    if run.status == SyncRun.Status.FAILED:
        return
    if any(run.total(outcome) for outcome in ("created", "updated", "missing")):
        orders_recheck_enqueue(reason="reference data synced")
