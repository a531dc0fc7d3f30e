"""Building and validating journals against the mirrored reference data: every blocking reason,
the message and link a person gets, and unblocking by fixing the cause and rebuilding."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.utils import timezone

from ledger_sync.errors import ApplicationError, InvalidTransition
from ledger_sync.models import (
    BlockedReason,
    CounterpartyMapping,
    CustomFieldMapping,
    Journal,
    OrderState,
    OrderSync,
    OrderTransition,
    PostingSettings,
    SyncState,
)
from ledger_sync.services import journal_plan as journal_plan_service
from ledger_sync.services.journals import (
    order_build_journal,
    order_rebuild,
    orders_build_ready,
)
from ledger_sync.services.order_states import order_block, order_transition
from tests.factories.atlas import (
    CounterpartyCustomFieldValueFactory,
    CounterpartyFactory,
    CustomFieldDefinitionFactory,
    OrderItemFactory,
)
from tests.factories.journals import (
    JournalFactory,
    OrderSyncFactory,
    journal_world,
    mapped_counterparty,
    order_with_items,
)
from tests.factories.parties import CounterpartyMappingFactory
from tests.factories.reference import (
    GLAccountFactory,
    PostingSettingsFactory,
    monthly_periods,
    sandbox_chart,
)

pytestmark = pytest.mark.django_db
S = OrderState
D = Decimal
ACTOR = "system:test"


@pytest.fixture
def world():
    return journal_world()


def ready(order) -> OrderSync:
    return OrderSyncFactory(order=order, state=S.READY)


def build(order_sync: OrderSync):
    journal = order_build_journal(order_sync=order_sync, actor=ACTOR)
    order_sync.refresh_from_db()
    return journal


def assert_blocked(
    order_sync: OrderSync, reason: str, *, fix_url_contains: str = "", had_journal: bool = False
) -> None:
    order_sync.refresh_from_db()
    assert order_sync.state == S.BLOCKED, order_sync.blocked_message
    assert order_sync.blocked_reason == reason, order_sync.blocked_message
    assert order_sync.blocked_message
    assert fix_url_contains in order_sync.blocked_fix_url
    if not had_journal:
        assert not order_sync.journals.exists()


def rebuild(order_sync: OrderSync):
    journal = order_rebuild(order_sync=order_sync, actor=ACTOR)
    order_sync.refresh_from_db()
    return journal


# --- building ------------------------------------------------------------------------------


def test_valid_order_gets_a_built_journal_with_reference_lines_and_totals(world):
    order = order_with_items(
        items=[
            {},
            {
                "cashflow": 1,
                "net_amount": D("-1000.00"),
                "vat_amount": D("-190.00"),
                "gl_account": "5001",
            },
        ]
    )
    order_sync = ready(order)

    journal = build(order_sync)

    assert order_sync.state == S.JOURNAL_BUILT
    assert journal.status == Journal.Status.BUILT
    assert journal.kind == Journal.Kind.POSTING
    assert journal.revision == 1
    assert journal.source_transaction_reference == f"ATLAS-ORDER-{order.atlas_id}-R1"
    assert journal.workflow == "review"
    assert journal.landed_period == "Apr 2026"
    assert (journal.total_debit, journal.total_credit) == (D("85500.00"), D("85500.00"))
    assert (journal.occurred_on.isoformat(), journal.event_date.isoformat()) == (
        "2026-04-01",
        "2026-04-01",
    )
    lines = list(journal.lines.order_by("position"))
    # A mixed order: one control line for its net (85,500.00 - 1,190.00), on receivables.
    assert [(line.position, line.side, line.gl_account, line.amount) for line in lines] == [
        (1, "debit", "1200", D("84310.00")),
        (2, "credit", "4001", D("71848.74")),
        (3, "credit", "2200", D("13651.26")),
        (4, "debit", "5001", D("1000.00")),
        (5, "debit", "1400", D("190.00")),
    ]
    assert {line.billing_account_num for line in lines} == {"BA-100001"}
    assert lines[0].order_item is None
    assert all(line.order_item is not None for line in lines[1:])
    assert lines[0].entry_values["atlas_order_id"] == order.atlas_id
    transition = order_sync.transitions.get()
    assert (transition.from_state, transition.to_state, transition.actor) == (
        S.READY,
        S.JOURNAL_BUILT,
        ACTOR,
    )


def test_mapped_custom_fields_land_in_entry_values(world):
    counterparty = mapped_counterparty()
    definition = CustomFieldDefinitionFactory(name="ERP Cost Centre")
    CounterpartyCustomFieldValueFactory(
        counterparty=counterparty, definition=definition, value="CC-100"
    )
    ignored = CustomFieldDefinitionFactory(name="Internal note")
    CounterpartyCustomFieldValueFactory(counterparty=counterparty, definition=ignored, value="x")
    CustomFieldMapping.objects.create(
        definition=definition, target_key="cost_centre", updated_at=timezone.now()
    )
    CustomFieldMapping.objects.create(definition=ignored, ignored=True, updated_at=timezone.now())
    order_sync = ready(order_with_items(counterparty=counterparty))

    journal = build(order_sync)

    values = journal.lines.first().entry_values
    assert values["cost_centre"] == "CC-100"
    assert "Internal note" not in values and "x" not in values.values()


def test_second_build_of_an_unchanged_order_writes_nothing(world):
    order_sync = ready(order_with_items())
    first = build(order_sync)
    transitions = OrderTransition.objects.count()

    second = build(order_sync)

    assert second.pk == first.pk
    assert Journal.objects.count() == 1
    assert OrderTransition.objects.count() == transitions


def test_changed_order_supersedes_the_built_journal_with_a_new_revision(world):
    order = order_with_items()
    order_sync = ready(order)
    first = build(order_sync)
    item = order.items.get()
    item.net_amount, item.vat_amount = D("100.00"), D("19.00")
    item.save()
    order.total_amount = D("119.00")
    order.save()

    second = build(order_sync)

    first.refresh_from_db()
    assert first.status == Journal.Status.SUPERSEDED
    assert first.source_transaction_reference == f"ATLAS-ORDER-{order.atlas_id}-R1"
    assert second.source_transaction_reference == f"ATLAS-ORDER-{order.atlas_id}-R2"
    assert second.total_debit == D("119.00")
    assert order_sync.revision == 2
    assert order_sync.state == S.JOURNAL_BUILT


def test_a_journal_that_may_have_been_sent_is_never_superseded(world):
    order = order_with_items()
    order_sync = ready(order)
    first = build(order_sync)
    Journal.objects.filter(pk=first.pk).update(request_json='[{"sent": true}]')
    order.items.update(net_amount=D("100.00"), vat_amount=D("0.00"))
    order.total_amount = D("100.00")
    order.save()

    kept = build(order_sync)

    assert kept.pk == first.pk
    assert Journal.objects.count() == 1
    assert order_sync.state == S.JOURNAL_BUILT


def test_a_draft_journal_is_never_rebuilt(world):
    order_sync = ready(order_with_items())
    journal = build(order_sync)
    Journal.objects.filter(pk=journal.pk).update(status=Journal.Status.DRAFT)
    order_transition(order_sync=order_sync, to_state=S.READY, actor=ACTOR)

    # A draft cannot be reversed: the way out named is rejecting it (deleting it), then rebuild.
    with pytest.raises(ApplicationError, match="reject the draft"):
        build(order_sync)

    assert Journal.objects.count() == 1


def test_after_a_rejected_draft_the_rebuild_takes_the_next_revision(world):
    order = order_with_items()
    order_sync = ready(order)
    journal = build(order_sync)
    Journal.objects.filter(pk=journal.pk).update(status=Journal.Status.REJECTED)
    order_transition(order_sync=order_sync, to_state=S.AWAITING_REVIEW, actor=ACTOR)
    order_transition(order_sync=order_sync, to_state=S.READY, actor=ACTOR, note="rejected")

    second = build(order_sync)

    assert second.source_transaction_reference == f"ATLAS-ORDER-{order.atlas_id}-R2"


def test_building_a_mirrored_order_is_refused(world):
    order_sync = OrderSyncFactory(order=order_with_items(), state=S.MIRRORED)

    with pytest.raises(InvalidTransition):
        build(order_sync)


def test_counterparty_external_id_counts_as_mapping(world):
    counterparty = CounterpartyFactory(external_id="BA-777777")
    order_sync = ready(order_with_items(counterparty=counterparty))

    journal = build(order_sync)

    assert {line.billing_account_num for line in journal.lines.all()} == {"BA-777777"}


def test_counterparty_external_id_wins_over_the_mapping_code(world):
    counterparty = mapped_counterparty(erp_code="BA-OLD", external_id="BA-ATLAS")
    order_sync = ready(order_with_items(counterparty=counterparty))

    journal = build(order_sync)

    assert {line.billing_account_num for line in journal.lines.all()} == {"BA-ATLAS"}


def test_flagged_external_id_mapping_is_still_used(world):
    counterparty = CounterpartyFactory(external_id="BA-NOT-IN-ERP")
    CounterpartyMapping.objects.create(
        counterparty=counterparty,
        erp_code="BA-NOT-IN-ERP",
        source=CounterpartyMapping.Source.EXTERNAL_ID,
        flagged=True,
        flag_reason="not in the ERP party register",
    )
    order_sync = ready(order_with_items(counterparty=counterparty))

    journal = build(order_sync)

    assert journal.lines.first().billing_account_num == "BA-NOT-IN-ERP"


def test_roll_forward_policy_records_the_landing_period(world):
    PostingSettings.objects.filter(pk=1).update(closed_period_policy="roll_forward")
    period = world.period_of_month(4)
    period.is_open = False
    period.save()
    order_sync = ready(order_with_items())

    journal = build(order_sync)

    assert journal.landed_period == "May 2026"
    assert journal.occurred_on.isoformat() == "2026-04-01"


def test_workflow_is_taken_from_the_posting_settings():
    journal_world(journal_workflow="auto")
    order_sync = ready(order_with_items())

    assert build(order_sync).workflow == "auto"


# --- every blocking reason and how it clears --------------------------------------------------


def test_unmatched_counterparty_blocks_until_mapped(world):
    counterparty = CounterpartyFactory()
    order_sync = ready(order_with_items(counterparty=counterparty))

    assert build(order_sync) is None
    assert_blocked(
        order_sync,
        BlockedReason.UNMATCHED_COUNTERPARTY,
        fix_url_contains=f"/counterpartymatching/?id__exact={counterparty.pk}",
    )
    assert counterparty.name in order_sync.blocked_message

    CounterpartyMappingFactory(counterparty=counterparty)
    assert rebuild(order_sync) is not None
    assert order_sync.state == S.JOURNAL_BUILT
    assert [t.to_state for t in order_sync.transitions.all()][-2:] == [S.READY, S.JOURNAL_BUILT]


def test_unknown_counterparty_blocks_until_mirrored(world):
    order = order_with_items(counterparty=None, counterparty_atlas_id=4242)
    order_sync = ready(order)

    build(order_sync)
    assert_blocked(order_sync, BlockedReason.UNKNOWN_COUNTERPARTY, fix_url_contains="/order/")
    assert "4242" in order_sync.blocked_message

    order.counterparty = mapped_counterparty(atlas_id=4242, erp_code="BA-4242")
    order.save()
    assert rebuild(order_sync) is not None


def test_unmapped_custom_field_is_left_out_without_blocking(world):
    # Even a required one: the sandbox and a fresh install post before anyone maps fields; the
    # mapping page highlights required fields without a mapping.
    counterparty = mapped_counterparty()
    definition = CustomFieldDefinitionFactory(is_required=True)
    CounterpartyCustomFieldValueFactory(
        counterparty=counterparty, definition=definition, value="whatever"
    )
    order_sync = ready(order_with_items(counterparty=counterparty))

    journal = build(order_sync)

    assert "whatever" not in journal.lines.first().entry_values.values()


def test_missing_gl_account_blocks_until_the_counterparty_has_one(world):
    counterparty = mapped_counterparty(gl_account="")
    order_sync = ready(order_with_items(counterparty=counterparty, items=[{"gl_account": ""}]))

    build(order_sync)
    assert_blocked(
        order_sync,
        BlockedReason.MISSING_GL_ACCOUNT,
        fix_url_contains=f"/counterparty/{counterparty.pk}/change/",
    )

    counterparty.gl_account = "4001"
    counterparty.save()
    assert rebuild(order_sync) is not None


def test_unknown_gl_account_blocks_with_a_link_to_the_account_list(world):
    order_sync = ready(order_with_items(items=[{"gl_account": "9999"}]))

    build(order_sync)
    assert_blocked(
        order_sync, BlockedReason.UNKNOWN_GL_ACCOUNT, fix_url_contains="number__exact=9999"
    )
    assert "9999" in order_sync.blocked_message

    GLAccountFactory(number="9999", type="REVENUE")
    assert rebuild(order_sync) is not None


def test_non_posting_gl_account_blocks_until_the_item_uses_a_posting_account(world):
    order = order_with_items(items=[{"gl_account": "4000"}])
    order_sync = ready(order)

    build(order_sync)
    assert_blocked(order_sync, BlockedReason.NON_POSTING_GL_ACCOUNT, fix_url_contains="4000")
    assert "non-posting" in order_sync.blocked_message

    order.items.update(gl_account="4001")
    assert rebuild(order_sync) is not None


def test_inactive_gl_account_blocks_until_activated(world):
    world.chart["4002"].status = "INACTIVE"
    world.chart["4002"].save()
    order_sync = ready(order_with_items(items=[{"gl_account": "4002"}]))

    build(order_sync)
    assert_blocked(order_sync, BlockedReason.INACTIVE_GL_ACCOUNT, fix_url_contains="4002")

    world.chart["4002"].status = "ACTIVE"
    world.chart["4002"].save()
    assert rebuild(order_sync) is not None


def test_missing_control_account_blocks_with_a_link_to_posting_settings(world):
    PostingSettings.objects.filter(pk=1).update(receivables_account="")
    order_sync = ready(order_with_items())

    build(order_sync)
    assert_blocked(
        order_sync,
        BlockedReason.MISSING_CONTROL_ACCOUNT,
        fix_url_contains="/postingsettings/1/change/",
    )
    assert "receivables_account" in order_sync.blocked_message

    PostingSettings.objects.filter(pk=1).update(receivables_account="1200")
    assert rebuild(order_sync) is not None


def test_unusable_control_account_blocks(world):
    PostingSettings.objects.filter(pk=1).update(output_vat_account="4000")
    order_sync = ready(order_with_items())

    build(order_sync)
    assert_blocked(order_sync, BlockedReason.MISSING_CONTROL_ACCOUNT)
    assert "4000" in order_sync.blocked_message

    PostingSettings.objects.filter(pk=1).update(output_vat_account="2200")
    assert rebuild(order_sync) is not None


def test_control_accounts_not_used_by_the_order_are_not_required(world):
    PostingSettings.objects.filter(pk=1).update(payables_account="", input_vat_account="")
    order_sync = ready(order_with_items())

    assert build(order_sync) is not None


def test_closed_period_blocks_under_the_block_policy_until_reopened(world):
    period = world.period_of_month(4)
    period.is_open = False
    period.save()
    order_sync = ready(order_with_items())

    build(order_sync)
    assert_blocked(
        order_sync,
        BlockedReason.CLOSED_PERIOD,
        fix_url_contains=f"/accountingperiod/{period.pk}/change/",
    )
    assert "Apr 2026" in order_sync.blocked_message and "May 2026" in order_sync.blocked_message

    period.is_open = True
    period.save()
    assert rebuild(order_sync).landed_period == "Apr 2026"


def test_closed_period_unblocks_when_the_policy_becomes_roll_forward(world):
    period = world.period_of_month(4)
    period.is_open = False
    period.save()
    order_sync = ready(order_with_items())
    build(order_sync)
    assert_blocked(order_sync, BlockedReason.CLOSED_PERIOD)

    PostingSettings.objects.filter(pk=1).update(closed_period_policy="roll_forward")

    assert rebuild(order_sync).landed_period == "May 2026"


def test_no_open_period_blocks_until_the_year_exists(world):
    order_sync = ready(order_with_items(registration_date=datetime(2027, 1, 5, tzinfo=UTC)))

    build(order_sync)
    assert_blocked(order_sync, BlockedReason.NO_OPEN_PERIOD, fix_url_contains="accountingperiod")
    assert "2027-01-05" in order_sync.blocked_message

    monthly_periods(ledger=world.ledger, year=2027)
    assert rebuild(order_sync).landed_period == "Jan 2027"


def test_no_open_period_when_every_later_period_is_closed():
    journal_world(closed_months=tuple(range(4, 13)), closed_period_policy="roll_forward")
    order_sync = ready(order_with_items())

    build(order_sync)

    assert_blocked(order_sync, BlockedReason.NO_OPEN_PERIOD)


def test_unmirrored_ledger_blocks_with_no_open_period():
    sandbox_chart()
    PostingSettingsFactory()
    order_sync = ready(order_with_items())

    build(order_sync)

    assert_blocked(order_sync, BlockedReason.NO_OPEN_PERIOD)
    assert "sync_gotransverse" in order_sync.blocked_message


def test_totals_that_disagree_block_with_both_figures_until_corrected(world):
    order = order_with_items(total_amount=D("85400.00"))
    order_sync = ready(order)

    build(order_sync)
    assert_blocked(
        order_sync, BlockedReason.TOTALS_DISAGREE, fix_url_contains=f"/order/{order.pk}/change/"
    )
    assert "85,400.00 EUR" in order_sync.blocked_message
    assert "85,500.00 EUR" in order_sync.blocked_message

    order.total_amount = D("85500.00")
    order.save()
    assert rebuild(order_sync) is not None


def test_unbalanced_lines_block_with_both_figures(world, monkeypatch):
    real_builder = journal_plan_service.build_journal_lines
    monkeypatch.setattr(
        journal_plan_service, "build_journal_lines", lambda **kw: real_builder(**kw)[:-1]
    )
    order_sync = ready(order_with_items())

    build(order_sync)
    assert_blocked(order_sync, BlockedReason.UNBALANCED)
    assert "85,500.00 EUR" in order_sync.blocked_message
    assert "71,848.74 EUR" in order_sync.blocked_message

    monkeypatch.setattr(journal_plan_service, "build_journal_lines", real_builder)
    assert rebuild(order_sync) is not None


def test_no_bookable_items_blocks_until_an_item_is_in_the_order(world):
    order = order_with_items(items=[], total_amount=D("0.00"))
    order_sync = ready(order)

    build(order_sync)
    assert_blocked(order_sync, BlockedReason.NO_BOOKABLE_ITEMS, fix_url_contains="/order/")

    OrderItemFactory(order=order, net_amount=D("10.00"), vat_amount=D("1.90"))
    order.total_amount = D("11.90")
    order.save()
    assert rebuild(order_sync) is not None


def test_all_zero_amounts_block_as_nothing_to_book(world):
    order_sync = ready(order_with_items(items=[{"net_amount": D("0.00"), "vat_amount": D("0.00")}]))

    build(order_sync)

    assert_blocked(order_sync, BlockedReason.NO_BOOKABLE_ITEMS)


def test_unknown_currency_blocks_until_corrected(world):
    order = order_with_items(currency="XXX")
    order_sync = ready(order)

    build(order_sync)
    assert_blocked(order_sync, BlockedReason.CURRENCY_MISMATCH, fix_url_contains="/order/")

    order.currency = "EUR"
    order.save()
    assert rebuild(order_sync) is not None


def test_foreign_currency_blocks_on_a_ledger_that_does_not_convert(world):
    world.ledger.convert_currency = "NONE"
    world.ledger.save()
    order_sync = ready(order_with_items(currency="USD"))

    build(order_sync)

    assert_blocked(order_sync, BlockedReason.CURRENCY_MISMATCH)
    assert "USD" in order_sync.blocked_message and "EUR" in order_sync.blocked_message


def test_invalid_mirrored_order_blocks_until_it_reads_again(world):
    order = order_with_items()
    order.sync_state = SyncState.INVALID
    order.sync_error = "totalAmount: missing"
    order.save()
    order_sync = ready(order)

    build(order_sync)
    assert_blocked(order_sync, BlockedReason.INVALID_RECORD)
    assert "totalAmount: missing" in order_sync.blocked_message

    order.sync_state = SyncState.SYNCED
    order.save()
    assert rebuild(order_sync) is not None


def test_unknown_cashflow_blocks_as_invalid_record(world):
    order_sync = ready(order_with_items(items=[{"cashflow": 7}]))

    build(order_sync)

    assert_blocked(order_sync, BlockedReason.INVALID_RECORD)


def test_remote_rejection_waits_for_a_person_but_rebuild_clears_it(world):
    order_sync = ready(order_with_items())
    order_block(
        order_sync=order_sync,
        reason=BlockedReason.REMOTE_REJECTION,
        message="The AR Ledger refused the transaction: GL account inactive.",
        actor=ACTOR,
    )

    orders_build_ready(actor=ACTOR)
    order_sync.refresh_from_db()
    assert order_sync.blocked_reason == BlockedReason.REMOTE_REJECTION

    assert rebuild(order_sync) is not None
    assert order_sync.state == S.JOURNAL_BUILT


# --- the cycle -------------------------------------------------------------------------------


def test_next_cycle_unblocks_once_the_cause_is_fixed(world):
    order = order_with_items(items=[{"gl_account": "9999"}])
    order_sync = ready(order)
    assert orders_build_ready(actor=ACTOR) == {"blocked": 1}

    order.items.update(gl_account="4001")

    assert orders_build_ready(actor=ACTOR) == {"built": 1}
    order_sync.refresh_from_db()
    assert order_sync.state == S.JOURNAL_BUILT
    assert order_sync.blocked_reason == ""


def test_a_still_blocked_order_is_not_rewritten_each_cycle(world):
    ready(order_with_items(items=[{"gl_account": "9999"}]))
    orders_build_ready(actor=ACTOR)
    transitions = OrderTransition.objects.count()

    assert orders_build_ready(actor=ACTOR) == {"still_blocked": 1}
    assert OrderTransition.objects.count() == transitions


def test_a_block_whose_cause_changes_records_the_new_reason(world):
    order = order_with_items(items=[{"gl_account": "9999"}])
    order_sync = ready(order)
    orders_build_ready(actor=ACTOR)
    order.items.update(gl_account="4001")
    order.total_amount = D("1.00")
    order.save()

    orders_build_ready(actor=ACTOR)

    order_sync.refresh_from_db()
    assert order_sync.blocked_reason == BlockedReason.TOTALS_DISAGREE
    last = order_sync.transitions.last()
    assert (last.from_state, last.to_state) == (S.BLOCKED, S.BLOCKED)


def test_a_built_journal_is_revalidated_before_sending(world):
    order_sync = ready(order_with_items())
    orders_build_ready(actor=ACTOR)
    period = world.period_of_month(4)
    period.is_open = False
    period.save()

    assert orders_build_ready(actor=ACTOR) == {"blocked": 1}
    # The built journal stays (nothing was sent); reopening keeps its reference.
    assert_blocked(order_sync, BlockedReason.CLOSED_PERIOD, had_journal=True)
    period.is_open = True
    period.save()
    assert orders_build_ready(actor=ACTOR) == {"unchanged": 1}
    assert order_sync.journals.get().source_transaction_reference.endswith("-R1")


def test_cycle_counts_and_second_cycle_changes_nothing(world):
    for _ in range(3):
        ready(order_with_items())
    ready(order_with_items(total_amount=D("1.00")))

    assert orders_build_ready(actor=ACTOR, batch_size=2) == {"built": 3, "blocked": 1}
    journals = Journal.objects.count()
    transitions = OrderTransition.objects.count()

    assert orders_build_ready(actor=ACTOR) == {"unchanged": 3, "still_blocked": 1}
    assert (Journal.objects.count(), OrderTransition.objects.count()) == (journals, transitions)


def test_orders_in_other_states_are_left_alone(world):
    posted = OrderSyncFactory(order=order_with_items(), state=S.POSTED)
    JournalFactory(order_sync=posted, status=Journal.Status.POSTED)

    assert orders_build_ready(actor=ACTOR) == {}
    assert Journal.objects.count() == 1


# --- what the poster may have sent ------------------------------------------------------------


def _change_order(order) -> None:
    order.items.update(net_amount=D("100.00"), vat_amount=D("19.00"))
    order.total_amount = D("119.00")
    order.save()


def test_after_the_ledger_refused_a_journal_a_changed_order_gets_a_new_revision(world):
    order = order_with_items()
    order_sync = ready(order)
    first = build(order_sync)
    Journal.objects.filter(pk=first.pk).update(request_json="[{}]", response_json="[{}]")
    order_transition(order_sync=order_sync, to_state=S.POSTING, actor="system:poster")
    order_block(
        order_sync=order_sync,
        reason=BlockedReason.REMOTE_REJECTION,
        message="The AR Ledger rejected it: GL account 4001 inactive.",
        actor="system:poster",
    )
    _change_order(order)

    second = rebuild(order_sync)

    assert second.source_transaction_reference.endswith("-R2")
    first.refresh_from_db()
    assert first.status == Journal.Status.SUPERSEDED


def test_after_an_interrupted_attempt_a_changed_order_keeps_its_journal(world):
    order = order_with_items()
    order_sync = ready(order)
    first = build(order_sync)
    Journal.objects.filter(pk=first.pk).update(request_json="[{}]")
    order_transition(order_sync=order_sync, to_state=S.POSTING, actor="system:poster")
    order_transition(order_sync=order_sync, to_state=S.FAILED, actor="system:poster")
    _change_order(order)

    kept = rebuild(order_sync)

    assert kept.pk == first.pk
    assert Journal.objects.count() == 1
    assert order_sync.state == S.JOURNAL_BUILT


def test_after_a_review_rejection_the_rebuild_uses_the_revision_the_poster_set(world):
    order = order_with_items()
    order_sync = ready(order)
    first = build(order_sync)
    Journal.objects.filter(pk=first.pk).update(status=Journal.Status.REJECTED)
    order_transition(order_sync=order_sync, to_state=S.POSTING, actor="system:poster")
    order_transition(order_sync=order_sync, to_state=S.AWAITING_REVIEW, actor="system:poster")
    order_transition(
        order_sync=order_sync,
        to_state=S.BLOCKED,
        actor="anna",
        blocked_reason=BlockedReason.REJECTED_IN_REVIEW,
        blocked_message="Rejected in review by anna: wrong cost centre",
        revision=2,
    )

    assert orders_build_ready(actor=ACTOR) == {}  # waits for a person
    second = rebuild(order_sync)

    assert second.source_transaction_reference == f"ATLAS-ORDER-{order.atlas_id}-R2"
    assert order_sync.revision == 2


# --- the links work ----------------------------------------------------------------------------


def test_every_fix_link_opens_an_admin_page(world, admin_client):
    period = world.period_of_month(4)
    period.is_open = False
    period.save()
    syncs = [
        ready(order_with_items(counterparty=CounterpartyFactory())),  # unmatched
        ready(order_with_items(items=[{"gl_account": "9999"}])),  # unknown GL account
        ready(order_with_items(total_amount=D("1.00"))),  # totals
        ready(order_with_items()),  # closed period
        ready(order_with_items(counterparty=mapped_counterparty(gl_account=""))),  # no GL
    ]
    orders_build_ready(actor=ACTOR)
    links = {}
    for order_sync in syncs:
        order_sync.refresh_from_db()
        links[order_sync.blocked_reason] = order_sync.blocked_fix_url
    PostingSettings.objects.filter(pk=1).update(receivables_account="")
    orders_build_ready(actor=ACTOR)
    syncs[3].refresh_from_db()
    links[syncs[3].blocked_reason] = syncs[3].blocked_fix_url

    assert len(links) == 6, links
    for reason, url in links.items():
        response = admin_client.get(url)
        assert response.status_code == 200, (reason, url, response.get("Location"))


def test_once_the_poster_confirms_the_ledger_lacks_it_a_changed_order_is_rebuilt(world):
    order = order_with_items()
    order_sync = ready(order)
    first = build(order_sync)
    Journal.objects.filter(pk=first.pk).update(request_json="[{}]")
    order_transition(order_sync=order_sync, to_state=S.POSTING, actor="system:poster")
    order_transition(order_sync=order_sync, to_state=S.FAILED, actor="system:poster")
    _change_order(order)

    second = order_rebuild(order_sync=order_sync, actor=ACTOR, confirmed_not_in_ledger=True)

    assert second.source_transaction_reference.endswith("-R2")
    first.refresh_from_db()
    assert first.status == Journal.Status.SUPERSEDED
