"""Claims: which worker holds which record, taken atomically and given back.

Order claims use row locks on PostgreSQL (SKIP LOCKED) and a compare-and-set UPDATE elsewhere;
row claims (callbacks, settlements, reports) are a compare-and-set on `claimed_until`. Shared
machinery: imports no domain service."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from ledger_sync.models import (
    OrderState,
    OrderSync,
)


def worker_id_new() -> str:
    """A worker id unique to this process and call: host, pid and a random suffix."""
    host = socket.gethostname().split(".")[0][:24]
    return f"{host}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def orders_claim(
    *,
    states: Iterable[str],
    limit: int,
    worker_id: str,
    ids: Iterable[int] | None = None,
    after_id: int = 0,
    now: Any = None,
) -> list[OrderSync]:
    """Atomically claim up to `limit` orders in `states` for `worker_id`, in id order.

    An order is claimable when nobody holds it, or its claim is older than
    LEDGER_CLAIM_TIMEOUT_SECONDS (its worker died), and — for FAILED orders — its backoff is
    over. PostgreSQL: SELECT ... FOR UPDATE SKIP LOCKED, so concurrent workers split the work
    without waiting. Elsewhere (SQLite): a compare-and-set UPDATE whose WHERE repeats the
    claimability test; only rows it changed are ours. Either way two workers never hold the
    same order. The claim is a marker, not a held lock: it is committed at once.
    """
    if not worker_id:
        raise ValueError("worker_id is required")
    if limit < 1:
        return []
    now = now or timezone.now()
    claimable = orders_claimable(states=states, now=now, ids=ids, after_id=after_id)
    with transaction.atomic():
        if connection.features.has_select_for_update_skip_locked:
            candidate_ids = list(
                claimable.select_for_update(skip_locked=True, of=("self",))
                .order_by("pk")
                .values_list("pk", flat=True)[:limit]
            )
            if candidate_ids:
                OrderSync.objects.filter(pk__in=candidate_ids).update(
                    claimed_by=worker_id, claimed_at=now
                )
            claimed_ids = candidate_ids
        else:
            candidate_ids = list(claimable.order_by("pk").values_list("pk", flat=True)[:limit])
            claimed_ids = _claim_compare_and_set(
                claimable, candidate_ids=candidate_ids, worker_id=worker_id, now=now
            )
    return list(OrderSync.objects.filter(pk__in=claimed_ids).select_related("order").order_by("pk"))


def orders_claimable(
    *, states: Iterable[str], now: Any, ids: Iterable[int] | None = None, after_id: int = 0
) -> Any:
    """Orders in `states` nobody holds (or whose holder's claim went stale), FAILED ones only
    once their backoff is over."""
    stale_before = now - timedelta(seconds=settings.LEDGER_CLAIM_TIMEOUT_SECONDS)
    claimable = (
        OrderSync.objects.filter(state__in=list(states), pk__gt=after_id)
        .filter(Q(claimed_by="") | Q(claimed_at__isnull=True) | Q(claimed_at__lt=stale_before))
        .filter(
            ~Q(state=OrderState.FAILED)
            | Q(next_attempt_at__isnull=True)
            | Q(next_attempt_at__lte=now)
        )
    )
    if ids is not None:
        claimable = claimable.filter(pk__in=list(ids))
    return claimable


def _claim_compare_and_set(
    claimable: Any, *, candidate_ids: list[int], worker_id: str, now: Any
) -> list[int]:
    """Claim the candidates that are still claimable. The UPDATE repeats the claimability
    test in its WHERE, so a row another worker claimed since we read it is left alone; the
    rows carrying our worker id and timestamp afterwards are the ones we won."""
    if not candidate_ids:
        return []
    won = claimable.filter(pk__in=candidate_ids).update(claimed_by=worker_id, claimed_at=now)
    if not won:
        return []
    return list(
        OrderSync.objects.filter(pk__in=candidate_ids, claimed_by=worker_id, claimed_at=now)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def orders_release(*, order_sync_ids: Iterable[int], worker_id: str) -> int:
    """Give back claims held by `worker_id` (never anyone else's)."""
    return OrderSync.objects.filter(pk__in=list(order_sync_ids), claimed_by=worker_id).update(
        claimed_by="", claimed_at=None
    )


def row_claim(model: type[Any], pk: int, *, states: list[str], now: datetime) -> bool:
    """Compare-and-set claim: only one worker writes a record to ATLAS at a time; a claim whose
    worker died runs out after INBOUND_CLAIM_TIMEOUT_SECONDS. Counts the attempt BEFORE the
    remote call, so a crash after sending is seen as "may have been sent" by the next one."""
    until = now + timedelta(seconds=settings.INBOUND_CLAIM_TIMEOUT_SECONDS)
    return bool(
        model.objects.filter(pk=pk, state__in=states)
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .update(claimed_until=until, attempts=F("attempts") + 1)
    )
