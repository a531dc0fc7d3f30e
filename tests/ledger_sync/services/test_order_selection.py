"""Which mirrored orders become candidates, which wait, which were processed elsewhere."""

from __future__ import annotations

from decimal import Decimal

import pytest

from ledger_sync.errors import InvalidTransition
from ledger_sync.models import (
    Journal,
    OrderItem,
    OrderState,
    OrderSync,
    OrderTransition,
    SyncState,
)
from ledger_sync.services.journals import order_build_journal
from ledger_sync.services.order_selection import SelectionResult, orders_select_candidates
from ledger_sync.services.order_states import order_transition
from tests.factories.atlas import OrderFactory
from tests.factories.journals import JournalFactory, OrderSyncFactory, order_with_items

pytestmark = pytest.mark.django_db
S = OrderState
APPROVED = "Approved order by ETRM"
IN_ORDER, EDITED, CALCULATED = (
    OrderItem.Status.IN_ORDER,
    OrderItem.Status.EDITED,
    OrderItem.Status.CALCULATED,
)


def sync_of(order) -> OrderSync:
    return OrderSync.objects.get(order=order)


def test_order_in_trigger_status_with_every_item_in_order_is_ready():
    order = order_with_items(items=[{"status": IN_ORDER}, {"status": IN_ORDER}])

    result = orders_select_candidates()

    assert (result.created, result.ready) == (1, 1)
    order_sync = sync_of(order)
    assert order_sync.state == S.READY
    transition = order_sync.transitions.get()
    assert (transition.from_state, transition.to_state) == (S.MIRRORED, S.READY)
    assert transition.actor == "system:select_candidates"


def test_order_in_another_status_is_not_a_candidate():
    order_with_items(status="Draft order by ETRM")

    result = orders_select_candidates()

    assert result.changed == 0
    assert not OrderSync.objects.exists()


def test_trigger_statuses_are_a_list(settings):
    settings.ATLAS_TRIGGER_STATUS = [APPROVED, "Forwarded to accounting"]
    approved = order_with_items(status=APPROVED)
    forwarded = order_with_items(status="Forwarded to accounting")
    order_with_items(status="Draft order by ETRM")

    orders_select_candidates()

    assert set(OrderSync.objects.values_list("order_id", flat=True)) == {approved.pk, forwarded.pk}


def test_trigger_statuses_can_be_passed_explicitly():
    order = order_with_items(status="Forwarded to accounting")
    order_with_items(status=APPROVED)

    orders_select_candidates(trigger_statuses=["Forwarded to accounting"])

    assert list(OrderSync.objects.values_list("order_id", flat=True)) == [order.pk]


def test_order_with_items_still_in_review_waits_with_their_ids():
    order = order_with_items(
        items=[{"status": IN_ORDER}, {"status": EDITED}, {"status": CALCULATED}]
    )
    holding = sorted(order.items.exclude(status=IN_ORDER).values_list("atlas_id", flat=True))

    result = orders_select_candidates()

    assert (result.created, result.waiting, result.ready) == (1, 1, 0)
    order_sync = sync_of(order)
    assert order_sync.state == S.WAITING
    assert order_sync.waiting_on_items == holding


def test_a_waiting_order_is_never_built_in_part():
    order = order_with_items(items=[{"status": IN_ORDER}, {"status": EDITED}])
    orders_select_candidates()

    with pytest.raises(InvalidTransition):
        order_build_journal(order_sync=sync_of(order), actor="system:test")
    assert not Journal.objects.exists()


def test_waiting_order_becomes_ready_when_its_last_item_is_in_order():
    order = order_with_items(items=[{"status": IN_ORDER}, {"status": EDITED}])
    orders_select_candidates()

    order.items.update(status=IN_ORDER)
    result = orders_select_candidates()

    assert result.ready == 1
    order_sync = sync_of(order)
    assert order_sync.state == S.READY
    assert order_sync.waiting_on_items == []
    assert [t.to_state for t in order_sync.transitions.all()] == [S.WAITING, S.READY]


def test_waiting_list_follows_the_items_without_a_new_transition():
    order = order_with_items(items=[{"status": EDITED}, {"status": CALCULATED}])
    orders_select_candidates()
    first, second = order.items.order_by("atlas_id")
    OrderItem.objects.filter(pk=first.pk).update(status=IN_ORDER)

    orders_select_candidates()

    order_sync = sync_of(order)
    assert order_sync.waiting_on_items == [second.atlas_id]
    assert order_sync.transitions.count() == 1


def test_a_ready_order_whose_item_is_edited_again_goes_back_to_waiting():
    order = order_with_items()
    orders_select_candidates()
    order.items.update(status=EDITED)

    result = orders_select_candidates()

    assert result.waiting == 1
    assert sync_of(order).state == S.WAITING


def test_a_missing_item_does_not_hold_the_order():
    order = order_with_items(items=[{"status": IN_ORDER}, {"status": EDITED}])
    order.items.filter(status=EDITED).update(sync_state=SyncState.MISSING)

    orders_select_candidates()

    assert sync_of(order).state == S.READY


def test_order_arriving_with_erp_code_is_processed_elsewhere_and_never_posted():
    order = order_with_items(erp_code="ERP-4711")

    result = orders_select_candidates()

    assert (result.created, result.processed_elsewhere) == (1, 1)
    order_sync = sync_of(order)
    assert order_sync.state == S.PROCESSED_ELSEWHERE
    assert "ERP-4711" in order_sync.transitions.get().note
    with pytest.raises(InvalidTransition):
        order_transition(order_sync=order_sync, to_state=S.READY, actor="system:test")


def test_erp_code_set_elsewhere_before_we_sent_anything_stops_the_order():
    order = order_with_items()
    orders_select_candidates()
    order_sync = sync_of(order)
    journal = JournalFactory(order_sync=order_sync)
    order_transition(order_sync=order_sync, to_state=S.JOURNAL_BUILT, actor="system:test")
    order.erp_code = "ERP-OTHER"
    order.save()

    result = orders_select_candidates()

    assert result.processed_elsewhere == 1
    order_sync.refresh_from_db()
    assert order_sync.state == S.PROCESSED_ELSEWHERE
    journal.refresh_from_db()
    assert journal.status == Journal.Status.SUPERSEDED


def test_erp_code_on_an_order_whose_journal_may_be_in_the_ledger_is_left_to_the_poster():
    order = order_with_items()
    orders_select_candidates()
    order_sync = sync_of(order)
    JournalFactory(order_sync=order_sync, request_json="[{}]")
    order_transition(order_sync=order_sync, to_state=S.JOURNAL_BUILT, actor="system:test")
    order.erp_code = "ERP-OTHER"
    order.save()

    result = orders_select_candidates()

    assert result.processed_elsewhere == 0
    assert sync_of(order).state == S.JOURNAL_BUILT


def test_order_leaving_the_trigger_status_before_sending_is_released():
    order = order_with_items()
    orders_select_candidates()
    order.status = "Rejected by accounting"
    order.save()

    result = orders_select_candidates()

    assert result.released == 1
    order_sync = sync_of(order)
    assert order_sync.state == S.MIRRORED
    assert "Rejected by accounting" in order_sync.transitions.last().note

    order.status = APPROVED
    order.save()
    assert orders_select_candidates().ready == 1
    assert sync_of(order).state == S.READY


def test_order_gone_from_atlas_is_released():
    order = order_with_items()
    orders_select_candidates()
    order.sync_state = SyncState.MISSING
    order.save()

    assert orders_select_candidates().released == 1
    assert sync_of(order).state == S.MIRRORED


def test_posted_orders_are_not_touched_by_selection():
    order = order_with_items(erp_code="ERP-OURS")
    OrderSyncFactory(order=order, state=S.POSTED, erp_code="ERP-OURS")
    order.status = "Settled"
    order.save()

    result = orders_select_candidates()

    assert result.changed == 0
    assert sync_of(order).state == S.POSTED


def test_second_run_changes_nothing():
    order_with_items()
    order_with_items(items=[{"status": EDITED}])
    order_with_items(erp_code="ERP-1")
    order_with_items(status="Draft order by ETRM")
    first = orders_select_candidates(batch_size=1)
    assert first.created == 3
    transitions = OrderTransition.objects.count()
    syncs = list(OrderSync.objects.order_by("pk").values("state", "updated_at"))

    second = orders_select_candidates()

    assert second.changed == 0
    assert OrderTransition.objects.count() == transitions
    assert list(OrderSync.objects.order_by("pk").values("state", "updated_at")) == syncs


def test_empty_erp_code_counts_as_null():
    order = OrderFactory(erp_code="", total_amount=Decimal("0.00"))

    orders_select_candidates()

    assert sync_of(order).state == S.READY


def test_selection_limited_to_order_ids_counts_and_moves_only_those():
    chosen = order_with_items()
    other_ready = order_with_items()
    other_elsewhere = order_with_items(erp_code="ERP-ELSEWHERE")

    result = orders_select_candidates(order_ids=[chosen.atlas_id])

    assert result.as_dict() == {
        "created": 1,
        "ready": 1,
        "waiting": 0,
        "processed_elsewhere": 0,
        "released": 0,
        "unchanged": 0,
    }
    assert sync_of(chosen).state == S.READY
    assert not OrderSync.objects.filter(order__in=[other_ready, other_elsewhere]).exists()
    assert list(OrderTransition.objects.values_list("order_sync__order", flat=True)) == [chosen.pk]


def test_selection_limited_to_order_ids_releases_only_those():
    chosen = order_with_items()
    other = order_with_items()
    orders_select_candidates()
    for order in (chosen, other):
        order.status = "Rejected by accounting"
        order.save()
    transitions_of_other = sync_of(other).transitions.count()

    result = orders_select_candidates(order_ids=[chosen.atlas_id])

    assert (result.released, result.changed) == (1, 1)
    assert sync_of(chosen).state == S.MIRRORED
    assert sync_of(other).state == S.READY
    assert sync_of(other).transitions.count() == transitions_of_other


def test_selection_limited_to_no_order_ids_does_nothing():
    order_with_items()

    assert orders_select_candidates(order_ids=[]).as_dict() == SelectionResult().as_dict()
    assert not OrderSync.objects.exists()


def test_history_notes_name_item_statuses_and_codes_in_plain_words():
    waiting = order_with_items(items=[{"status": IN_ORDER}, {"status": EDITED, "atlas_id": 9002}])
    ready = order_with_items(items=[{"status": IN_ORDER}])
    elsewhere = order_with_items()
    elsewhere.erp_code = "AR-77"
    elsewhere.save(update_fields=["erp_code"])

    orders_select_candidates()

    notes = {
        order.pk: sync_of(order).transitions.get().note for order in (waiting, ready, elsewhere)
    }
    assert notes[waiting.pk] == (
        f"selected (ATLAS status “{APPROVED}”, no ERP document code yet); waiting for ATLAS "
        "items 9002: still Calculated or Edited, not yet In order"
    )
    assert notes[ready.pk] == (
        f"selected (ATLAS status “{APPROVED}”, no ERP document code yet); every item In order"
    )
    assert notes[elsewhere.pk] == (
        "arrived with ERP document code AR-77 set by another system; never posted"
    )
    for note in notes.values():
        assert "erpCode" not in note and "status 0" not in note and "status 2" not in note
