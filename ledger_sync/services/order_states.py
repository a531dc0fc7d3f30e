"""The order state machine (DESIGN.md): which changes are allowed, and recording each one.

Every change goes through `order_transition`, which checks the table below, changes the row
with a compare-and-set update (so two workers cannot both move an order out of the same state)
and records who or what made the change, when and why. `TransitionBatch` does the same for
a batch, its history stored with one insert. The state sets each stage picks up live here too,
so adding a state touches this module (and the model's choices) only.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from ledger_sync.errors import InvalidTransition
from ledger_sync.models import (
    BlockedReason,
    OrderState,
    OrderSync,
    OrderTransition,
)

S = OrderState

# Before anything can have reached the AR Ledger. A person or a retry may stop these (blocked,
# failed); after POSTED, problems belong to the write-back steps, not to the order's state.
WORKING_STATES: frozenset[str] = frozenset(
    {S.MIRRORED, S.WAITING, S.READY, S.JOURNAL_BUILT, S.AWAITING_REVIEW, S.POSTING}
)
# The journal is in the AR Ledger. Moving back to READY from here is only done after a
# reversing journal has been posted (a correction: reversal, then a new revision).
POSTED_STATES: frozenset[str] = frozenset(
    {S.POSTED, S.ERP_CODE_WRITTEN, S.INVOICED, S.PARTIALLY_PAID, S.PAID}
)
# States the selection may re-examine: nothing of ours has been sent for the current revision.
PRE_SEND_STATES: frozenset[str] = frozenset(
    {S.MIRRORED, S.WAITING, S.READY, S.JOURNAL_BUILT, S.BLOCKED}
)

# What each stage picks up.
# The builder (re)builds these; a BLOCKED order is rebuilt once what blocked it is fixed.
BUILDABLE_STATES: frozenset[str] = frozenset({S.READY, S.JOURNAL_BUILT, S.BLOCKED})
# Write-back steps run from these (ERP code, then the invoice).
WRITE_BACK_STATES = (OrderState.POSTED, OrderState.ERP_CODE_WRITTEN, OrderState.INVOICED)
# The states a payment moves an order from: its invoice is in ATLAS and its write-backs are done
# (they only run from POSTED / ERP_CODE_WRITTEN, so an order is never moved on from there).
PAYMENT_STATES_FROM = (OrderState.INVOICED, OrderState.PARTIALLY_PAID)
# States a posting worker takes up: built journals, transient failures whose backoff is over,
# and POSTING orders whose worker died (their claim went stale).
POSTABLE_STATES = (OrderState.JOURNAL_BUILT, OrderState.FAILED, OrderState.POSTING)
# States after which a journal may already be in the ledger: always look before sending.
MAYBE_SENT_STATES = frozenset({OrderState.POSTING, OrderState.FAILED})


_FORWARD_AFTER_POSTING: tuple[str, ...] = (
    S.POSTED,
    S.ERP_CODE_WRITTEN,
    S.INVOICED,
    S.PARTIALLY_PAID,
    S.PAID,
)


def _allowed_transitions() -> dict[str, frozenset[str]]:
    allowed: dict[str, set[str]] = {
        # Selection: examined, waiting for items, ready; or someone else processed it.
        S.MIRRORED: {S.WAITING, S.READY, S.PROCESSED_ELSEWHERE},
        # Items still in status 0/1; or released when the order leaves the trigger status.
        S.WAITING: {S.READY, S.MIRRORED, S.PROCESSED_ELSEWHERE},
        S.READY: {S.JOURNAL_BUILT, S.WAITING, S.MIRRORED, S.PROCESSED_ELSEWHERE},
        # Built, nothing sent: post (auto), create a draft (review), or go back when the order
        # changed in ATLAS before anything was sent.
        S.JOURNAL_BUILT: {
            S.POSTING,
            S.AWAITING_REVIEW,
            S.READY,
            S.WAITING,
            S.MIRRORED,
            S.PROCESSED_ELSEWHERE,
        },
        # Draft in the ledger: approved (posting), or rejected (draft deleted, rebuilt).
        S.AWAITING_REVIEW: {S.POSTING, S.POSTED, S.READY},
        # Claimed; the remote call creates a draft (review) or posts (auto). A claim that is
        # given up without sending returns the order to JOURNAL_BUILT.
        S.POSTING: {S.POSTED, S.AWAITING_REVIEW, S.JOURNAL_BUILT},
        # A person fixed the cause (rebuild) or the next cycle re-evaluates; a block can also
        # change its reason (BLOCKED → BLOCKED, recorded).
        S.BLOCKED: {S.READY, S.WAITING, S.MIRRORED, S.PROCESSED_ELSEWHERE, S.BLOCKED},
        # Retried: rebuilt (READY) or the same journal re-sent (POSTING, which first asks the
        # ledger whether the reference already exists).
        S.FAILED: {S.READY, S.POSTING, S.BLOCKED},
        S.PROCESSED_ELSEWHERE: set(),
    }
    for state in WORKING_STATES:
        allowed[state] |= {S.BLOCKED, S.FAILED}
    # After posting the pipeline only moves forward — or back to READY once reversed.
    for index, state in enumerate(_FORWARD_AFTER_POSTING):
        allowed[state] = set(_FORWARD_AFTER_POSTING[index + 1 :]) | {S.READY}
    return {state: frozenset(targets) for state, targets in allowed.items()}


ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = _allowed_transitions()

# Fields that describe a block; cleared whenever the order leaves BLOCKED.
_BLOCK_FIELDS: dict[str, Any] = {
    "blocked_reason": "",
    "blocked_message": "",
    "blocked_fix_url": "",
    "blocked_problems": [],
}
# Fields an order_transition call may set along with the state.
_SETTABLE_FIELDS: frozenset[str] = frozenset(
    {
        *_BLOCK_FIELDS,
        "waiting_on_items",
        "revision",
        "attempts",
        "next_attempt_at",
        "last_error",
        "claimed_by",
        "claimed_at",
        "erp_code",
    }
)


def transition_allowed(*, from_state: str, to_state: str) -> bool:
    return to_state in ALLOWED_TRANSITIONS.get(from_state, frozenset())


def _label(state: str) -> str:
    return state if state in OrderState.values else repr(state)


def order_transition_apply(
    *,
    order_sync: OrderSync,
    to_state: str,
    actor: str,
    user: Any = None,
    note: str = "",
    at: datetime | None = None,
    **fields: Any,
) -> OrderTransition:
    """Change the state (and `fields`) of `order_sync`; return the transition, NOT yet saved.

    For callers that change many orders and store the history with one bulk insert
    (`order_transitions_record`). Everything else calls `order_transition`.

    The update is a compare-and-set on the state the caller read: if another worker moved the
    order meanwhile, nothing is written and InvalidTransition says so.
    """
    from_state = order_sync.state
    if not transition_allowed(from_state=from_state, to_state=to_state):
        raise InvalidTransition(
            f"Order {order_sync.order_id}: {_label(from_state)} → {_label(to_state)} is not an "
            f"allowed transition (allowed from {_label(from_state)}: "
            f"{', '.join(sorted(ALLOWED_TRANSITIONS.get(from_state, ()))) or 'none'}).",
            details={"order_sync": order_sync.pk, "from": from_state, "to": to_state},
        )
    unknown = set(fields) - _SETTABLE_FIELDS
    if unknown:
        raise ValueError(f"order_transition cannot set {sorted(unknown)}")
    if to_state == S.BLOCKED:
        reason = fields.get("blocked_reason")
        if reason not in BlockedReason.values:
            raise ValueError(f"blocking needs a BlockedReason, got {reason!r}")
        if not fields.get("blocked_message"):
            raise ValueError("blocking needs a blocked_message a person understands")
        if not fields.get("blocked_problems"):
            # One problem: the list repeats it, so pages and exports read one field.
            fields["blocked_problems"] = [
                {
                    "reason": str(reason),
                    "message": fields["blocked_message"],
                    "fix_url": fields.get("blocked_fix_url", ""),
                }
            ]
    changes: dict[str, Any] = {}
    if from_state == S.BLOCKED and to_state != S.BLOCKED:
        changes.update(_BLOCK_FIELDS)
    if to_state != S.WAITING and "waiting_on_items" not in fields and order_sync.waiting_on_items:
        changes["waiting_on_items"] = []
    changes.update(fields)
    now = at or timezone.now()
    updated = OrderSync.objects.filter(pk=order_sync.pk, state=from_state).update(
        state=to_state, updated_at=now, **changes
    )
    if updated != 1:
        current = OrderSync.objects.filter(pk=order_sync.pk).values_list("state", flat=True)
        raise InvalidTransition(
            f"Order {order_sync.order_id} is no longer {_label(from_state)} (now "
            f"{_label(next(iter(current), 'deleted'))}); {_label(from_state)} → "
            f"{_label(to_state)} was not made.",
            details={"order_sync": order_sync.pk, "from": from_state, "to": to_state},
        )
    order_sync.state = to_state
    order_sync.updated_at = now
    for name, value in changes.items():
        setattr(order_sync, name, value)
    return OrderTransition(
        order_sync=order_sync,
        from_state=from_state,
        to_state=to_state,
        actor=actor[:150],
        user=user if getattr(user, "pk", None) else None,
        note=note,
        at=now,
    )


def order_syncs_move_bulk(
    *,
    order_syncs: Sequence[OrderSync],
    path: Sequence[str],
    notes: Sequence[Sequence[str]],
    actor: str,
    user: Any = None,
    at: datetime | None = None,
) -> list[OrderTransition]:
    """Move many orders, all in the same state, along `path` (one or more allowed steps) with
    ONE compare-and-set UPDATE; return one unsaved transition per order and step.

    `notes[i][k]` is the note of order i's step k. For the batch stages (building thousands of
    journals), where one UPDATE per order would dominate. Only the state moves (and a block is
    cleared); a change that sets fields goes through `order_transition_apply`. When any order
    is no longer in the state the caller read, nothing is written and InvalidTransition says so.
    """
    if not order_syncs:
        return []
    from_states = {order_sync.state for order_sync in order_syncs}
    if len(from_states) != 1:
        raise ValueError(f"orders in different states {sorted(from_states)}; move them apart")
    (from_state,) = from_states
    steps = [from_state, *path]
    for before, after in itertools.pairwise(steps):
        if not transition_allowed(from_state=before, to_state=after):
            raise InvalidTransition(
                f"{_label(before)} → {_label(after)} is not an allowed transition.",
                details={"from": before, "to": after},
            )
    if S.BLOCKED in path:
        raise ValueError("blocking sets a reason and a message: use order_transition_apply")
    final = steps[-1]
    changes: dict[str, Any] = dict(_BLOCK_FIELDS) if from_state == S.BLOCKED else {}
    if final != S.WAITING:
        changes["waiting_on_items"] = []
    now = at or timezone.now()
    pks = [order_sync.pk for order_sync in order_syncs]
    with transaction.atomic():
        updated = OrderSync.objects.filter(pk__in=pks, state=from_state).update(
            state=final, updated_at=now, **changes
        )
        if updated != len(pks):
            raise InvalidTransition(
                f"{len(pks) - updated} of {len(pks)} orders are no longer {_label(from_state)}; "
                f"{_label(from_state)} → {_label(final)} was not made for any of them.",
                details={"from": from_state, "to": final, "order_syncs": pks},
            )
    rows: list[OrderTransition] = []
    for order_sync, order_notes in zip(order_syncs, notes, strict=True):
        for (before, after), note in zip(itertools.pairwise(steps), order_notes, strict=True):
            rows.append(
                OrderTransition(
                    order_sync=order_sync,
                    from_state=before,
                    to_state=after,
                    actor=actor[:150],
                    user=user if getattr(user, "pk", None) else None,
                    note=note,
                    at=now,
                )
            )
        order_sync.state = final
        order_sync.updated_at = now
        for name, value in changes.items():
            setattr(order_sync, name, value)
    return rows


def order_transitions_record(transitions: Iterable[OrderTransition]) -> int:
    """Store transitions made with `order_transition_apply` in one insert."""
    rows = list(transitions)
    OrderTransition.objects.bulk_create(rows, batch_size=500)
    return len(rows)


@transaction.atomic
def order_transition(
    *,
    order_sync: OrderSync,
    to_state: str,
    actor: str,
    user: Any = None,
    note: str = "",
    **fields: Any,
) -> OrderTransition:
    """Move `order_sync` to `to_state` and record who or what did it, when and why.

    `fields` (blocked_reason, blocked_message, blocked_fix_url, waiting_on_items, revision,
    attempts, next_attempt_at, last_error, claimed_by, claimed_at, erp_code) are written in the
    same update. Raises InvalidTransition, naming both states, when the table does not allow
    the change or another worker changed the state first.
    """
    row = order_transition_apply(
        order_sync=order_sync, to_state=to_state, actor=actor, user=user, note=note, **fields
    )
    row.save()
    return row


def order_block(
    *,
    order_sync: OrderSync,
    reason: str,
    message: str,
    fix_url: str = "",
    actor: str,
    user: Any = None,
) -> OrderTransition:
    """Block `order_sync`: a person must act. The message says what is wrong and what fixes it;
    `fix_url` is the admin page where it is fixed."""
    return order_transition(
        order_sync=order_sync,
        to_state=S.BLOCKED,
        actor=actor,
        user=user,
        note=message,
        blocked_reason=reason,
        blocked_message=message,
        blocked_fix_url=fix_url,
    )


def order_note_record(
    *,
    order_sync: OrderSync,
    actor: str,
    note: str,
    user: Any = None,
    at: datetime | None = None,
) -> OrderTransition:
    """Record in the order's history something a person or the system did that does not change
    its state (a retry asked for, say): a row from the current state to itself, with who, when
    and why, so the history stays one readable chain. The state is not touched."""
    if not note:
        raise ValueError("a history note needs a note a person understands")
    return OrderTransition.objects.create(
        order_sync=order_sync,
        from_state=order_sync.state,
        to_state=order_sync.state,
        actor=actor[:150],
        user=user if getattr(user, "pk", None) else None,
        note=note,
        at=at or timezone.now(),
    )


def actor_for(user: Any, *, default: str) -> str:
    """The actor recorded on a transition: the user's name when a person acted, else `default`
    (e.g. "system:run_cycle")."""
    if user is not None and getattr(user, "pk", None):
        name = user.get_username() if hasattr(user, "get_username") else str(user)
        return name[:150]
    return default


@dataclass
class OrderProblem:
    order_sync_id: int
    atlas_order_id: int | None
    state: str
    reason: str
    message: str


class TransitionBatch:
    """Guarded transitions of a batch, their history stored with one insert at the end."""

    def __init__(self) -> None:
        self.rows: list[Any] = []

    def add(self, order_sync: OrderSync, to_state: str, **kwargs: Any) -> OrderSync:
        self.rows.append(order_transition_apply(order_sync=order_sync, to_state=to_state, **kwargs))
        return order_sync

    def add_many(self, items: Sequence[Any], to_state: str, *, note: Any, **fields: Any) -> None:
        """Move many orders (items with .order_sync, .actor, .user) to `to_state`: one
        compare-and-set UPDATE per (state, actor, user) group, then one UPDATE per batch for
        the `fields`; `note(item)` is each order's note. Blocking goes through add()."""
        groups: dict[tuple[str, str, Any], list[Any]] = {}
        for item in items:
            key = (item.order_sync.state, item.actor, getattr(item.user, "pk", None))
            groups.setdefault(key, []).append(item)
        for group in groups.values():
            order_syncs = [item.order_sync for item in group]
            self.rows.extend(
                order_syncs_move_bulk(
                    order_syncs=order_syncs,
                    path=[to_state],
                    notes=[[note(item)] for item in group],
                    actor=group[0].actor,
                    user=group[0].user,
                )
            )
            if fields:
                stale = [
                    o.pk for o in order_syncs if any(getattr(o, k) != v for k, v in fields.items())
                ]
                if stale:
                    OrderSync.objects.filter(pk__in=stale).update(**fields)
                for order_sync in order_syncs:
                    for name, value in fields.items():
                        setattr(order_sync, name, value)

    def save(self) -> None:
        order_transitions_record(self.rows)
        self.rows = []


__all__ = [
    "ALLOWED_TRANSITIONS",
    "BUILDABLE_STATES",
    "MAYBE_SENT_STATES",
    "PAYMENT_STATES_FROM",
    "POSTABLE_STATES",
    "POSTED_STATES",
    "PRE_SEND_STATES",
    "WORKING_STATES",
    "WRITE_BACK_STATES",
    "OrderProblem",
    "TransitionBatch",
    "actor_for",
    "order_block",
    "order_note_record",
    "order_syncs_move_bulk",
    "order_transition",
    "order_transition_apply",
    "order_transitions_record",
    "transition_allowed",
]
