"""The order state machine: allowed and refused transitions, and the recorded history."""

from __future__ import annotations

import itertools

import pytest
from django.contrib.auth import get_user_model

from ledger_sync.errors import InvalidTransition
from ledger_sync.models import BlockedReason, OrderState, OrderSync, OrderTransition
from ledger_sync.services.order_states import (
    ALLOWED_TRANSITIONS,
    actor_for,
    order_block,
    order_note_record,
    order_syncs_move_bulk,
    order_transition,
    order_transitions_record,
    transition_allowed,
)
from tests.factories.journals import OrderSyncFactory

pytestmark = pytest.mark.django_db
S = OrderState

HAPPY_PATH = [
    S.MIRRORED,
    S.READY,
    S.JOURNAL_BUILT,
    S.AWAITING_REVIEW,
    S.POSTING,
    S.POSTED,
    S.ERP_CODE_WRITTEN,
    S.INVOICED,
    S.PARTIALLY_PAID,
    S.PAID,
]


def test_the_design_chain_is_allowed_step_by_step():
    for from_state, to_state in itertools.pairwise(HAPPY_PATH):
        assert transition_allowed(from_state=from_state, to_state=to_state), (from_state, to_state)


def test_auto_workflow_skips_review():
    assert transition_allowed(from_state=S.JOURNAL_BUILT, to_state=S.POSTING)


@pytest.mark.parametrize(
    "state", [S.MIRRORED, S.WAITING, S.READY, S.JOURNAL_BUILT, S.AWAITING_REVIEW, S.POSTING]
)
def test_blocked_and_failed_are_reachable_from_every_working_state(state):
    assert transition_allowed(from_state=state, to_state=S.BLOCKED)
    assert transition_allowed(from_state=state, to_state=S.FAILED)


def test_blocked_and_failed_go_back_to_ready():
    assert transition_allowed(from_state=S.BLOCKED, to_state=S.READY)
    assert transition_allowed(from_state=S.FAILED, to_state=S.READY)


def test_processed_elsewhere_is_terminal():
    assert ALLOWED_TRANSITIONS[S.PROCESSED_ELSEWHERE] == frozenset()


@pytest.mark.parametrize("state", [S.POSTED, S.ERP_CODE_WRITTEN, S.INVOICED, S.PAID])
def test_a_posted_order_never_goes_back_to_built_or_posting(state):
    for target in (S.JOURNAL_BUILT, S.POSTING, S.AWAITING_REVIEW, S.BLOCKED, S.FAILED):
        assert not transition_allowed(from_state=state, to_state=target)


def test_every_state_has_a_row_in_the_table():
    assert set(ALLOWED_TRANSITIONS) == set(OrderState.values)


def test_transition_changes_state_and_records_who_when_why():
    order_sync = OrderSyncFactory(state=S.READY)
    user = get_user_model().objects.create_user(username="anna")

    row = order_transition(
        order_sync=order_sync,
        to_state=S.JOURNAL_BUILT,
        actor=actor_for(user, default="system:test"),
        user=user,
        note="built",
    )

    order_sync.refresh_from_db()
    assert order_sync.state == S.JOURNAL_BUILT
    stored = OrderTransition.objects.get(pk=row.pk)
    assert (stored.from_state, stored.to_state, stored.actor, stored.user, stored.note) == (
        S.READY,
        S.JOURNAL_BUILT,
        "anna",
        user,
        "built",
    )
    assert stored.at is not None


def test_invalid_transition_raises_naming_both_states_and_writes_nothing():
    order_sync = OrderSyncFactory(state=S.MIRRORED)

    with pytest.raises(InvalidTransition) as error:
        order_transition(order_sync=order_sync, to_state=S.POSTED, actor="system:test")

    assert "mirrored" in error.value.message and "posted" in error.value.message
    order_sync.refresh_from_db()
    assert order_sync.state == S.MIRRORED
    assert not OrderTransition.objects.exists()


def test_stale_state_loses_the_compare_and_set():
    order_sync = OrderSyncFactory(state=S.JOURNAL_BUILT)
    other_worker_copy = OrderSync.objects.get(pk=order_sync.pk)
    order_transition(order_sync=other_worker_copy, to_state=S.POSTING, actor="system:worker-2")

    with pytest.raises(InvalidTransition) as error:
        order_transition(order_sync=order_sync, to_state=S.POSTING, actor="system:worker-1")

    assert "no longer journal_built" in error.value.message
    assert OrderTransition.objects.count() == 1


def test_block_stores_reason_message_and_fix_url_and_leaving_clears_them():
    order_sync = OrderSyncFactory(state=S.READY)

    order_block(
        order_sync=order_sync,
        reason=BlockedReason.UNKNOWN_GL_ACCOUNT,
        message="GL account 9999 is not in the chart.",
        fix_url="/admin/ledger_sync/glaccount/?number__exact=9999",
        actor="system:test",
    )
    order_sync.refresh_from_db()
    assert (order_sync.state, order_sync.blocked_reason) == (S.BLOCKED, "unknown_gl_account")
    assert order_sync.blocked_fix_url.endswith("9999")

    order_transition(order_sync=order_sync, to_state=S.READY, actor="system:test")
    order_sync.refresh_from_db()
    assert (order_sync.blocked_reason, order_sync.blocked_message, order_sync.blocked_fix_url) == (
        "",
        "",
        "",
    )


def test_blocking_without_a_reason_is_refused():
    order_sync = OrderSyncFactory(state=S.READY)

    with pytest.raises(ValueError, match="BlockedReason"):
        order_transition(order_sync=order_sync, to_state=S.BLOCKED, actor="system:test")


def test_history_lists_every_transition_in_order():
    order_sync = OrderSyncFactory(state=S.MIRRORED)
    for state in (S.READY, S.JOURNAL_BUILT, S.POSTING, S.POSTED):
        order_transition(order_sync=order_sync, to_state=state, actor="system:test")

    assert [(t.from_state, t.to_state) for t in order_sync.transitions.all()] == [
        (S.MIRRORED, S.READY),
        (S.READY, S.JOURNAL_BUILT),
        (S.JOURNAL_BUILT, S.POSTING),
        (S.POSTING, S.POSTED),
    ]


def test_fields_can_be_set_with_the_state():
    order_sync = OrderSyncFactory(state=S.JOURNAL_BUILT)

    order_transition(
        order_sync=order_sync, to_state=S.POSTING, actor="system:worker", claimed_by="worker-1"
    )

    order_sync.refresh_from_db()
    assert order_sync.claimed_by == "worker-1"


def test_unknown_fields_are_refused():
    order_sync = OrderSyncFactory(state=S.READY)

    with pytest.raises(ValueError, match="cannot set"):
        order_transition(
            order_sync=order_sync, to_state=S.JOURNAL_BUILT, actor="system:test", order_id=5
        )


def test_bulk_move_takes_every_order_along_the_path_with_history():
    syncs = [OrderSyncFactory(state=S.BLOCKED, blocked_reason="closed_period") for _ in range(3)]

    rows = order_syncs_move_bulk(
        order_syncs=syncs,
        path=[S.READY, S.JOURNAL_BUILT],
        notes=[["fixed", f"built {n}"] for n in range(3)],
        actor="system:test",
    )
    order_transitions_record(rows)

    assert set(OrderSync.objects.values_list("state", "blocked_reason")) == {(S.JOURNAL_BUILT, "")}
    assert [(t.from_state, t.to_state) for t in syncs[0].transitions.all()] == [
        (S.BLOCKED, S.READY),
        (S.READY, S.JOURNAL_BUILT),
    ]
    assert syncs[2].transitions.last().note == "built 2"


def test_bulk_move_writes_nothing_when_one_order_moved_meanwhile():
    syncs = [OrderSyncFactory(state=S.READY) for _ in range(3)]
    OrderSync.objects.filter(pk=syncs[1].pk).update(state=S.WAITING)

    with pytest.raises(InvalidTransition, match="1 of 3"):
        order_syncs_move_bulk(
            order_syncs=syncs, path=[S.JOURNAL_BUILT], notes=[["b"]] * 3, actor="system:test"
        )

    assert OrderSync.objects.filter(state=S.JOURNAL_BUILT).count() == 0


def test_bulk_move_refuses_a_path_the_table_does_not_allow():
    syncs = [OrderSyncFactory(state=S.READY)]

    with pytest.raises(InvalidTransition):
        order_syncs_move_bulk(
            order_syncs=syncs, path=[S.POSTED], notes=[["x"]], actor="system:test"
        )


def test_a_note_is_recorded_in_the_history_without_changing_the_state():
    user = get_user_model().objects.create_user(username="maria")
    order_sync = OrderSyncFactory(state=S.FAILED)
    before = OrderSync.objects.filter(pk=order_sync.pk).values("state", "updated_at").get()

    row = order_note_record(
        order_sync=order_sync, actor=actor_for(user, default="system:x"), user=user, note="asked"
    )

    assert OrderSync.objects.filter(pk=order_sync.pk).values("state", "updated_at").get() == before
    stored = OrderTransition.objects.get(pk=row.pk)
    assert (stored.from_state, stored.to_state, stored.actor, stored.user, stored.note) == (
        S.FAILED,
        S.FAILED,
        "maria",
        user,
        "asked",
    )


def test_a_note_without_text_is_refused():
    with pytest.raises(ValueError, match="note"):
        order_note_record(order_sync=OrderSyncFactory(state=S.FAILED), actor="system:x", note="")
    assert not OrderTransition.objects.exists()
