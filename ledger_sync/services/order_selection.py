"""Which mirrored orders are candidates: in a trigger status with erpCode null, items in
status 2. Orders with items still under review (status 0/1) wait; orders that arrived already
processed elsewhere (erpCode set) are recorded as such. It creates and moves OrderSync rows in
batches; a second run changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Prefetch, Q
from django.utils import timezone

from ledger_sync.models import (
    Journal,
    Order,
    OrderItem,
    OrderState,
    OrderSync,
    OrderTransition,
    SyncState,
)
from ledger_sync.services.journal_plan import live_items
from ledger_sync.services.journal_rules import ALL_IN_ORDER, selected_note, waiting_note
from ledger_sync.services.journals import journal_may_have_been_sent
from ledger_sync.services.order_states import (
    PRE_SEND_STATES,
    order_transition_apply,
    order_transitions_record,
)

logger = logging.getLogger(__name__)
S = OrderState


@dataclass
class SelectionResult:
    created: int = 0  # OrderSync rows created (candidates and processed-elsewhere arrivals)
    ready: int = 0  # moved to READY
    waiting: int = 0  # moved to WAITING, or its list of holding items changed
    processed_elsewhere: int = 0
    released: int = 0  # left the trigger status before anything was sent: back to MIRRORED
    unchanged: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)

    def add(self, other: SelectionResult) -> None:
        for name, value in other.as_dict().items():
            setattr(self, name, getattr(self, name) + value)

    @property
    def changed(self) -> int:
        return self.created + self.ready + self.waiting + self.processed_elsewhere + self.released


def trigger_statuses_setting() -> list[str]:
    value = settings.ATLAS_TRIGGER_STATUS
    if isinstance(value, str):
        value = [value]
    return [status.strip() for status in value if status and status.strip()]


_ERP_CODE_EMPTY = Q(erp_code__isnull=True) | Q(erp_code="")


def _waiting_items(order: Order) -> list[int]:
    return sorted(
        item.atlas_id
        for item in live_items(order)
        if item.status in (OrderItem.Status.CALCULATED, OrderItem.Status.EDITED)
    )


def orders_select_candidates(
    *,
    trigger_statuses: Sequence[str] | None = None,
    actor: str = "system:select_candidates",
    batch_size: int = 1000,
    order_ids: Sequence[int] | None = None,
) -> SelectionResult:
    """Examine the mirrored orders and move their OrderSync rows (creating them on first sight).

    - in a trigger status with erpCode null: a candidate — WAITING (with the ids of the items in
      status 0/1) until every item is in status 2, then READY; never booked in part;
    - in a trigger status with erpCode set and never ours: PROCESSED_ELSEWHERE, never posted;
    - an order not sent yet that leaves the trigger status (or ATLAS) goes back to MIRRORED;
      one that gets an erpCode we did not write is PROCESSED_ELSEWHERE.
    A second run with nothing changed in the mirror writes nothing.

    `order_ids` (ATLAS order ids) limits every part of the selection to those orders, so that a
    webhook about one order never moves another one; None examines every mirrored order.
    """
    statuses = list(trigger_statuses) if trigger_statuses is not None else None
    statuses = statuses or trigger_statuses_setting()
    result = SelectionResult()
    orders = Order.objects.all()
    syncs = OrderSync.objects.all()
    if order_ids is not None:
        atlas_ids = sorted({int(atlas_id) for atlas_id in order_ids})
        orders = orders.filter(atlas_id__in=atlas_ids)
        syncs = syncs.filter(order__atlas_id__in=atlas_ids)
    live = orders.exclude(sync_state=SyncState.MISSING).filter(status__in=statuses)

    candidate_pks = list(live.filter(_ERP_CODE_EMPTY).order_by("pk").values_list("pk", flat=True))
    for start in range(0, len(candidate_pks), batch_size):
        _batch_with_retry(
            _select_batch, pks=candidate_pks[start : start + batch_size], actor=actor, into=result
        )

    arrived_done = list(
        live.exclude(_ERP_CODE_EMPTY)
        .filter(sync__isnull=True)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    for start in range(0, len(arrived_done), batch_size):
        _batch_with_retry(
            _processed_elsewhere_create,
            pks=arrived_done[start : start + batch_size],
            actor=actor,
            into=result,
        )

    stale = list(
        syncs.filter(state__in=PRE_SEND_STATES)
        .filter(
            ~_erp_code_empty_on_order()
            | (
                ~Q(state=S.MIRRORED)
                & (~Q(order__status__in=statuses) | Q(order__sync_state=SyncState.MISSING))
            )
        )
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    for start in range(0, len(stale), batch_size):
        _release_batch(pks=stale[start : start + batch_size], actor=actor, result=result)
    return result


def _batch_with_retry(step: Any, *, pks: Sequence[int], actor: str, into: SelectionResult) -> None:
    """Run one selection batch; once more if another selection run created the same OrderSync
    rows meanwhile (the unique order key refuses the second insert, the batch rolls back, and
    the retry finds and locks the rows the other run made)."""
    for attempt in (1, 2):
        partial = SelectionResult()
        try:
            step(pks=pks, actor=actor, result=partial)
        except IntegrityError:
            if attempt == 2:
                raise
            logger.info("order selection raced another run; retrying the batch")
            continue
        into.add(partial)
        return


def _erp_code_empty_on_order() -> Q:
    return Q(order__erp_code__isnull=True) | Q(order__erp_code="")


@transaction.atomic
def _select_batch(*, pks: Sequence[int], actor: str, result: SelectionResult) -> None:
    orders = list(
        Order.objects.filter(pk__in=pks)
        .only("pk", "status")
        .prefetch_related(
            Prefetch(
                "items",
                queryset=OrderItem.objects.only(
                    "pk", "order_id", "atlas_id", "status", "sync_state"
                ),
                to_attr="prefetched_items",
            )
        )
    )
    existing_pks = list(
        OrderSync.objects.select_for_update().filter(order_id__in=pks).values_list("pk", flat=True)
    )
    existing = {sync.order_id: sync for sync in OrderSync.objects.filter(pk__in=existing_pks)}
    now = timezone.now()
    new_syncs: list[OrderSync] = []
    new_notes: list[str] = []
    transitions: list[OrderTransition] = []
    for order in orders:
        waiting = _waiting_items(order)
        sync = existing.get(order.pk)
        if sync is None:
            state = S.WAITING if waiting else S.READY
            new_syncs.append(
                OrderSync(order=order, state=state, waiting_on_items=waiting, updated_at=now)
            )
            new_notes.append(
                selected_note(order) + "; " + (waiting_note(waiting) if waiting else ALL_IN_ORDER)
            )
            result.created += 1
            if waiting:
                result.waiting += 1
            else:
                result.ready += 1
            continue
        if waiting:
            if sync.state == S.WAITING:
                if sync.waiting_on_items != waiting:
                    OrderSync.objects.filter(pk=sync.pk).update(
                        waiting_on_items=waiting, updated_at=now
                    )
                    result.waiting += 1
                else:
                    result.unchanged += 1
            elif sync.state in (S.READY, S.JOURNAL_BUILT, S.BLOCKED) and (
                _current_journal_may_have_been_sent(sync)
            ):
                # Its journal may already be in the AR Ledger (an interrupted send, a draft):
                # parked as WAITING, nobody would look it up or record it. The poster resolves
                # it first; what ATLAS changed meanwhile is a reversal's business.
                result.unchanged += 1
            elif sync.state in (S.MIRRORED, S.READY, S.JOURNAL_BUILT, S.BLOCKED):
                transitions.append(
                    order_transition_apply(
                        order_sync=sync,
                        to_state=S.WAITING,
                        actor=actor,
                        note=waiting_note(waiting),
                        at=now,
                        waiting_on_items=waiting,
                    )
                )
                result.waiting += 1
            else:
                result.unchanged += 1
        elif sync.state in (S.MIRRORED, S.WAITING):
            transitions.append(
                order_transition_apply(
                    order_sync=sync,
                    to_state=S.READY,
                    actor=actor,
                    note=f"{selected_note(order)}; {ALL_IN_ORDER}",
                    at=now,
                )
            )
            result.ready += 1
        else:
            result.unchanged += 1
    if new_syncs:
        OrderSync.objects.bulk_create(new_syncs, batch_size=500)
        transitions.extend(
            OrderTransition(
                order_sync=sync,
                from_state=S.MIRRORED,
                to_state=sync.state,
                actor=actor,
                note=note,
                at=now,
            )
            for sync, note in zip(new_syncs, new_notes, strict=True)
        )
    order_transitions_record(transitions)


def _current_journal_may_have_been_sent(sync: OrderSync) -> bool:
    """Whether the posting journal of the order's current revision may be in the AR Ledger."""
    journal = (
        sync.journals.filter(kind=Journal.Kind.POSTING, revision=sync.revision)
        .exclude(status__in=[Journal.Status.REJECTED, Journal.Status.SUPERSEDED])
        .order_by("-id")
        .first()
    )
    return journal is not None and journal_may_have_been_sent(journal)


@transaction.atomic
def _processed_elsewhere_create(*, pks: Sequence[int], actor: str, result: SelectionResult) -> None:
    rows = list(
        Order.objects.filter(pk__in=pks, sync__isnull=True)
        .exclude(_ERP_CODE_EMPTY)
        .values_list("pk", "erp_code")
    )
    now = timezone.now()
    syncs = [
        OrderSync(order_id=order_pk, state=S.PROCESSED_ELSEWHERE, updated_at=now)
        for order_pk, _ in rows
    ]
    OrderSync.objects.bulk_create(syncs, batch_size=500)
    order_transitions_record(
        OrderTransition(
            order_sync=sync,
            from_state=S.MIRRORED,
            to_state=S.PROCESSED_ELSEWHERE,
            actor=actor,
            note=f"arrived with ERP document code {erp_code} set by another system; never posted",
            at=now,
        )
        for sync, (_, erp_code) in zip(syncs, rows, strict=True)
    )
    result.created += len(syncs)
    result.processed_elsewhere += len(syncs)


@transaction.atomic
def _release_batch(*, pks: Sequence[int], actor: str, result: SelectionResult) -> None:
    locked = list(
        OrderSync.objects.select_for_update().filter(pk__in=pks).values_list("pk", flat=True)
    )
    syncs = (
        OrderSync.objects.filter(pk__in=locked, state__in=PRE_SEND_STATES)
        .select_related("order")
        .prefetch_related("journals")
    )
    now = timezone.now()
    transitions: list[OrderTransition] = []
    superseded: list[int] = []
    for sync in syncs:
        journals = list(sync.journals.all())
        if any(journal_may_have_been_sent(journal) for journal in journals):
            # Something of ours may be in the ledger: the poster resolves it, not selection.
            result.unchanged += 1
            continue
        order = sync.order
        erp_code = (order.erp_code or "").strip()
        if erp_code and erp_code != sync.erp_code:
            superseded += [j.pk for j in journals if j.status == Journal.Status.BUILT]
            transitions.append(
                order_transition_apply(
                    order_sync=sync,
                    to_state=S.PROCESSED_ELSEWHERE,
                    actor=actor,
                    note=f"ERP document code {erp_code} set by another system before we sent "
                    "anything; never posted",
                    at=now,
                )
            )
            result.processed_elsewhere += 1
        elif sync.state != S.MIRRORED and not erp_code:
            why = (
                "no longer in ATLAS"
                if order.sync_state == SyncState.MISSING
                else f"status changed to “{order.status}”, not a trigger status"
            )
            transitions.append(
                order_transition_apply(
                    order_sync=sync,
                    to_state=S.MIRRORED,
                    actor=actor,
                    note=f"released: {why}",
                    at=now,
                    waiting_on_items=[],
                )
            )
            result.released += 1
        else:
            result.unchanged += 1
    if superseded:
        Journal.objects.filter(pk__in=superseded, status=Journal.Status.BUILT).update(
            status=Journal.Status.SUPERSEDED
        )
    order_transitions_record(transitions)


__all__ = [
    "SelectionResult",
    "orders_select_candidates",
    "trigger_statuses_setting",
]
