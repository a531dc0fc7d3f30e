"""The error queue's services: repeats fold into one row, the refresh follows each source and
resolves what recovered, and what a person does (assign, resolve, ignore, reopen)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied
from django.utils import timezone

from ledger_sync.errors import ApplicationError
from ledger_sync.models import (
    BlockedReason,
    InboundDelivery,
    OrderState,
    PaymentConfirmation,
    Problem,
    SyncRun,
    SyncRunError,
    WriteBackStep,
)
from ledger_sync.models.inbound import CallbackState
from ledger_sync.services.problem_sources import Observation
from ledger_sync.services.problems import (
    problem_report,
    problem_report_safely,
    problems_fold,
    problems_ignore,
    problems_refresh,
    problems_reopen,
    problems_resolve,
    problems_resolve_absent,
)
from tests.factories.atlas import OrderFactory
from tests.factories.journals import OrderSyncFactory
from tests.factories.parties import accountant

pytestmark = pytest.mark.django_db
K = Problem.Kind
S = Problem.Status


def report(key: str = "POST api/payments/ | bank | 422", message: str = "refused", **kwargs):
    return problem_report(kind=K.REFUSED_REQUEST, key=key, message=message, **kwargs)


# --- problem_report -------------------------------------------------------------------------


def test_a_repeat_folds_into_one_row_keeping_first_seen():
    first = timezone.now() - timedelta(hours=2)
    report(message="amount: must be positive", now=first)
    later = first + timedelta(hours=1)
    row = report(message="amount: must be a number", now=later)

    assert Problem.objects.count() == 1
    assert row.count == 2
    assert row.first_seen_at == first
    assert row.last_seen_at == later
    assert row.message == "amount: must be a number"


def test_a_resolved_problem_reopens_when_it_happens_again(django_user_model):
    user = accountant()
    row = report()
    problems_resolve(problems=[row], user=user)

    row = report()

    assert row.status == S.OPEN
    assert row.resolved_by is None and row.resolved_at is None
    assert row.count == 2


def test_an_ignored_problem_stays_ignored_but_is_still_counted():
    user = accountant()
    row = report()
    problems_ignore(problems=[row], user=user)

    row = report()

    assert row.status == S.IGNORED
    assert row.count == 2


def test_other_keys_and_kinds_are_other_rows():
    report(key="a")
    report(key="b")
    problem_report(kind=K.FAILED_TASK, key="a", message="x")

    assert Problem.objects.count() == 3


def test_an_unknown_kind_is_refused_naming_the_kinds():
    with pytest.raises(ApplicationError, match="Unknown problem kind 'oops'; use one of"):
        problem_report(kind="oops", key="k", message="m")


def test_reporting_safely_never_raises(monkeypatch):
    assert problem_report_safely(kind="oops", key="k", message="m") is None
    assert Problem.objects.count() == 0


# --- fold and resolve-absent -------------------------------------------------------------------


def obs(key: str, *, at, count=None, message="still failing") -> Observation:
    return Observation(key=key, message=message, seen_at=at, count=count)


def test_the_count_grows_only_with_a_new_occurrence_at_the_source():
    at = timezone.now()
    problems_fold(kind=K.FAILED_POSTING, observations=[obs("o:1", at=at)])
    problems_fold(kind=K.FAILED_POSTING, observations=[obs("o:1", at=at)])
    assert Problem.objects.get().count == 1

    problems_fold(kind=K.FAILED_POSTING, observations=[obs("o:1", at=at + timedelta(minutes=5))])

    row = Problem.objects.get()
    assert row.count == 2
    assert row.first_seen_at == at
    assert row.last_seen_at == at + timedelta(minutes=5)


def test_the_sources_own_attempt_count_is_a_floor():
    at = timezone.now()
    problems_fold(kind=K.FAILED_POSTING, observations=[obs("o:1", at=at, count=4)])

    assert Problem.objects.get().count == 4


def test_an_unchanged_refresh_writes_nothing(django_assert_num_queries):
    at = timezone.now()
    observations = [obs(f"o:{n}", at=at) for n in range(50)]
    problems_fold(kind=K.FAILED_POSTING, observations=observations)
    before = dict(Problem.objects.values_list("key", "updated_at"))

    # one read of the existing rows, one of the open keys (resolve-absent), savepoint pair
    with django_assert_num_queries(4):
        problems_fold(kind=K.FAILED_POSTING, observations=observations)

    assert dict(Problem.objects.values_list("key", "updated_at")) == before


def test_a_recovered_source_resolves_its_problem_automatically():
    at = timezone.now()
    problems_fold(kind=K.FAILED_POSTING, observations=[obs("o:1", at=at), obs("o:2", at=at)])

    result = problems_fold(kind=K.FAILED_POSTING, observations=[obs("o:2", at=at)])

    assert result.resolved == 1
    gone = Problem.objects.get(key="o:1")
    assert gone.status == S.RESOLVED
    assert gone.resolved_by is None and gone.resolved_at is not None
    assert Problem.objects.get(key="o:2").status == S.OPEN


def test_resolve_absent_leaves_other_kinds_and_ignored_rows_alone():
    user = accountant()
    at = timezone.now()
    problems_fold(kind=K.FAILED_POSTING, observations=[obs("o:1", at=at), obs("o:2", at=at)])
    report(key="o:1")
    problems_ignore(problems=Problem.objects.filter(key="o:2"), user=user)

    assert problems_resolve_absent(kind=K.FAILED_POSTING, present_keys=[]) == 1

    assert Problem.objects.get(kind=K.REFUSED_REQUEST).status == S.OPEN
    assert Problem.objects.get(kind=K.FAILED_POSTING, key="o:2").status == S.IGNORED


def test_a_problem_resolved_by_hand_reopens_while_its_source_still_shows_it():
    user = accountant()
    at = timezone.now()
    problems_fold(kind=K.FAILED_POSTING, observations=[obs("o:1", at=at)])
    problems_resolve(problems=Problem.objects.all(), user=user)

    result = problems_fold(kind=K.FAILED_POSTING, observations=[obs("o:1", at=at)])

    assert result.reopened == 1
    assert Problem.objects.get().status == S.OPEN


# --- the sources ---------------------------------------------------------------------------


def blocked_order(**kwargs):
    return OrderSyncFactory(
        order=OrderFactory(document_reference="SO-2026-04-0042"),
        state=OrderState.BLOCKED,
        blocked_reason=BlockedReason.UNKNOWN_GL_ACCOUNT,
        blocked_message="GL account 4999 is not in the chart of accounts; add it or fix item 1.",
        blocked_fix_url="/admin/ledger_sync/glaccount/?number__exact=4999",
        **kwargs,
    )


def test_a_blocked_order_is_in_the_queue_with_its_message_and_fix_link_until_unblocked():
    order_sync = blocked_order()

    problems_refresh(kinds=[K.BLOCKED_ORDER])

    problem = Problem.objects.get(kind=K.BLOCKED_ORDER)
    assert problem.key == f"order_sync:{order_sync.pk}"
    assert problem.record_label == f"Order {order_sync.order.atlas_id} SO-2026-04-0042"
    assert "GL account 4999 is not in the chart" in problem.message
    assert problem.fix_url == "/admin/ledger_sync/glaccount/?number__exact=4999"
    assert problem.details["reason"] == BlockedReason.UNKNOWN_GL_ACCOUNT

    order_sync.state = OrderState.READY
    order_sync.save()
    problems_refresh(kinds=[K.BLOCKED_ORDER])

    assert Problem.objects.get().status == S.RESOLVED


def test_a_failed_write_back_counts_its_attempts_and_links_to_its_step():
    order_sync = OrderSyncFactory(state=OrderState.POSTED)
    step = WriteBackStep.objects.create(
        order_sync=order_sync,
        kind=WriteBackStep.Kind.ERP_CODE,
        status=WriteBackStep.Status.FAILED,
        attempts=3,
        last_error="ATLAS answered 500.",
    )

    problems_refresh(kinds=[K.FAILED_WRITE_BACK])

    problem = Problem.objects.get()
    assert problem.count == 3
    assert problem.fix_url == f"/admin/ledger_sync/writebackstep/{step.pk}/change/"
    assert problem.message.startswith("ATLAS answered 500.")


def test_failed_deliveries_and_refused_callbacks_are_listed():
    now = timezone.now()
    delivery = InboundDelivery.objects.create(
        dedup_key="event:1",
        raw_body="{}",
        received_at=now,
        state=InboundDelivery.State.FAILED,
        attempts=2,
        last_error="ATLAS unreachable",
        next_attempt_at=now + timedelta(minutes=2),
    )
    payment = PaymentConfirmation.objects.create(
        external_id="PAY-1",
        request_fingerprint="f",
        request_json="{}",
        invoice_reference="INV-1",
        amount="1234.50",
        currency="EUR",
        payment_date=now.date(),
        received_at=now,
        state=CallbackState.REJECTED,
        attempts=1,
        last_error="ATLAS refused the payment: unknown invoice 88.",
    )

    problems_refresh(kinds=[K.FAILED_DELIVERY, K.FAILED_CALLBACK])

    by_kind = {p.kind: p for p in Problem.objects.all()}
    assert by_kind[K.FAILED_DELIVERY].key == f"inbound_delivery:{delivery.pk}"
    assert "Retried automatically" in by_kind[K.FAILED_DELIVERY].message
    callback = by_kind[K.FAILED_CALLBACK]
    assert callback.record_label == "Payment PAY-1 (1,234.50 EUR)"
    assert "not retried; a person must look" in callback.message
    assert callback.fix_url == f"/admin/ledger_sync/paymentconfirmation/{payment.pk}/change/"


def _full_run(*, system=SyncRun.System.ATLAS, status=SyncRun.Status.COMPLETED_WITH_ERRORS):
    from ledger_sync.services.problem_sources import _full_pass_keys

    return SyncRun.objects.create(
        system=system,
        trigger=SyncRun.Trigger.SCHEDULE,
        status=status,
        started_at=timezone.now(),
        finished_at=timezone.now(),
        error_message="ATLAS unreachable" if status == SyncRun.Status.FAILED else "",
        counts={entity: {"created": 0} for entity in _full_pass_keys()[system]},
    )


def test_mirror_record_errors_of_the_last_full_pass_fold_across_passes():
    for _ in range(2):
        run = _full_run()
        SyncRunError.objects.create(
            sync_run=run, entity="Order", remote_id="210", field="totalAmount", message="bad"
        )
        problems_refresh(kinds=[K.MIRROR_RECORD_ERROR])
    # A resync of one record in between does not count as a pass that saw no error.
    SyncRun.objects.create(
        system=SyncRun.System.ATLAS,
        trigger=SyncRun.Trigger.ADMIN,
        status=SyncRun.Status.SUCCEEDED,
        started_at=timezone.now(),
        counts={"Order": {"created": 0}},
    )
    problems_refresh(kinds=[K.MIRROR_RECORD_ERROR])

    problem = Problem.objects.get()
    assert problem.key == "atlas:Order:210:totalAmount"
    assert problem.count == 2
    assert problem.status == S.OPEN

    _full_run(status=SyncRun.Status.SUCCEEDED)
    problems_refresh(kinds=[K.MIRROR_RECORD_ERROR])

    assert Problem.objects.get().status == S.RESOLVED


def test_a_mirror_pass_that_failed_as_a_whole_is_a_problem_until_a_pass_succeeds():
    run = _full_run(status=SyncRun.Status.FAILED)
    problems_refresh(kinds=[K.MIRROR_RECORD_ERROR])

    problem = Problem.objects.get()
    assert problem.key == "atlas:pass"
    assert problem.message == "The last ATLAS ETRM pass failed: ATLAS unreachable"
    assert problem.fix_url == f"/admin/ledger_sync/syncrun/{run.pk}/change/"

    _full_run(status=SyncRun.Status.SUCCEEDED)
    problems_refresh(kinds=[K.MIRROR_RECORD_ERROR])

    assert Problem.objects.get().status == S.RESOLVED


def test_a_failed_task_folds_until_the_same_task_succeeds():
    from django_q.models import Task

    def task(n: int, *, success: bool) -> None:
        Task.objects.create(
            id=f"t{n}",
            name=f"Journal cycle {n}",
            func="ledger_sync.tasks.run_cycle_task",
            kwargs={"trigger": "schedule"},
            started=timezone.now() + timedelta(minutes=n),
            stopped=timezone.now() + timedelta(minutes=n),
            success=success,
            result=None if success else "Boom : Traceback (most recent call last): ...",
        )

    task(1, success=False)
    task(2, success=False)
    problems_refresh(kinds=[K.FAILED_TASK])

    problem = Problem.objects.get()
    assert problem.count == 2
    assert problem.message == "Boom"
    assert problem.fix_url == "/admin/django_q/failure/t2/change/"

    task(3, success=True)
    problems_refresh(kinds=[K.FAILED_TASK])

    assert Problem.objects.get().status == S.RESOLVED


def test_a_source_that_fails_leaves_its_kind_as_it_was(monkeypatch):
    from ledger_sync.services import problem_sources

    blocked_order()
    problems_refresh(kinds=[K.BLOCKED_ORDER])

    def broken():
        raise RuntimeError("database hiccup")

    monkeypatch.setattr(
        problem_sources,
        "_SOURCES",
        [problem_sources.ProblemSource(K.BLOCKED_ORDER, "blocked orders", broken)],
    )
    report_ = problems_refresh(kinds=[K.BLOCKED_ORDER])

    assert report_[K.BLOCKED_ORDER] == {"error": 1}
    assert Problem.objects.get().status == S.OPEN


# --- what a person does ----------------------------------------------------------------------


def test_resolve_ignore_reopen_record_who_and_count_only_real_changes():
    user = accountant()
    a, b = report(key="a"), report(key="b")

    assert problems_resolve(problems=[a], user=user) == 1
    assert problems_resolve(problems=[a, b], user=user) == 1
    a.refresh_from_db()
    assert a.resolved_by == user and a.resolved_at is not None

    assert problems_reopen(problems=[a, b], user=user) == 2
    assert set(Problem.objects.values_list("status", flat=True)) == {S.OPEN}
    assert not Problem.objects.filter(resolved_by__isnull=False).exists()


def test_only_the_roles_may_work_the_queue(django_user_model):
    stranger = django_user_model.objects.create_user("stranger", is_staff=True)

    with pytest.raises(PermissionDenied):
        problems_resolve(problems=[report()], user=stranger)


def test_open_counts_per_kind_for_the_dashboard(django_assert_num_queries):
    from ledger_sync.selectors.problems import problems_open_counts

    report(key="a")
    report(key="b")
    problem_report(kind=K.FAILED_TASK, key="t", message="boom")
    problems_ignore(problems=Problem.objects.filter(key="t"), user=accountant())

    with django_assert_num_queries(1):
        assert problems_open_counts() == {K.REFUSED_REQUEST: 2}


def test_a_real_mirror_pass_puts_its_broken_record_in_the_queue(atlas_sandbox):
    from integration.atlas.client import AtlasClient
    from ledger_sync.services.atlas_mirror import atlas_mirror_run

    broken = atlas_sandbox.app.dataset.broken["order_missing_due_date"][0]
    client = AtlasClient(
        base_url=atlas_sandbox.url, username=atlas_sandbox.username, password="sandbox-password"
    )

    run = atlas_mirror_run(client=client, trigger="command")  # refreshes the queue at its end

    assert run.status == SyncRun.Status.COMPLETED_WITH_ERRORS
    problem = Problem.objects.get(
        kind=K.MIRROR_RECORD_ERROR, key__startswith=f"atlas:Order:{broken}:"
    )
    assert problem.record_label == f"ATLAS ETRM Order {broken}"
    assert problem.status == S.OPEN


def test_the_inbound_sweep_refreshes_the_inbound_problems():
    from ledger_sync.services.sweep import inbound_sweep

    now = timezone.now()
    InboundDelivery.objects.create(
        dedup_key="event:sweep",
        raw_body="{}",
        received_at=now,
        state=InboundDelivery.State.FAILED,
        attempts=12,
        last_error="ATLAS refused the order.",
        next_attempt_at=None,  # no retry left: the sweep does not take it
    )

    inbound_sweep(now=now)

    problem = Problem.objects.get(kind=K.FAILED_DELIVERY)
    assert problem.count == 12
    assert "No automatic retry is left" in problem.message
