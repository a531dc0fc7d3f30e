"""The pipeline, composed in one place from the stages' public services.

- `cycle_run`: one whole cycle — mirror both systems, map, select, build, post, write back.
- `order_pipeline_run`: the same stages for one order, as a webhook asks for it.
- `orders_recheck`: build and post again the orders a fix may have released.

Every stage is safe to re-run, so a cycle that stops half-way is finished by the next one. The
report carries per-stage counts, the remote calls made, and every order that is blocked or
failed (or whose write-back failed) with the reason, for `run_cycle` and the scheduled task.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db.models import Count

from ledger_sync.errors import ApplicationError
from ledger_sync.models import (
    Counterparty,
    Order,
    OrderItem,
    OrderState,
    OrderSync,
    SyncRun,
    SyncState,
    WriteBackStep,
)
from ledger_sync.services.atlas_mirror import (
    AtlasMirrorAlreadyRunning,
    atlas_mirror_records,
    atlas_mirror_run,
)
from ledger_sync.services.counterparty_writeback import (
    counterparty_mappings_write_back,
    master_data_corrections_push,
)
from ledger_sync.services.gotransverse_mirror import (
    GotransverseMirrorAlreadyRunning,
    gotransverse_mirror_run,
)
from ledger_sync.services.journals import order_build_journal, orders_build_ready
from ledger_sync.services.matching import counterparty_propose_matches
from ledger_sync.services.order_selection import orders_select_candidates
from ledger_sync.services.order_states import POSTABLE_STATES, WRITE_BACK_STATES
from ledger_sync.services.posting import journals_post
from ledger_sync.services.problems import problems_refresh_safely
from ledger_sync.services.remote import (
    atlas_client_from_settings,
    gotransverse_client_from_settings,
)
from ledger_sync.services.writeback import write_backs_run

logger = logging.getLogger(__name__)

# The stages of one cycle, in the order they run (the keys of CycleReport.stages, "orders" aside).
STAGES = (
    "atlas_mirror",
    "gotransverse_mirror",
    "matching",
    "counterparty_write_back",
    "selection",
    "build",
    "post",
    "write_back",
)


@dataclass
class CycleProblem:
    atlas_order_id: int | None
    document_reference: str
    state: str
    reason: str
    message: str
    # The order's other problems (OrderSync.blocked_problems after the first): (reason, message).
    more: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class CycleReport:
    trigger: str
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    remote_calls: dict[str, int] = field(default_factory=dict)
    problems: list[CycleProblem] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # a stage that could not run at all
    seconds: float = 0.0

    @property
    def blocked(self) -> list[CycleProblem]:
        return [p for p in self.problems if p.state == OrderState.BLOCKED]

    @property
    def failed(self) -> list[CycleProblem]:
        return [p for p in self.problems if p.state != OrderState.BLOCKED]

    @property
    def ok(self) -> bool:
        return not self.problems and not self.errors


def cycle_run(
    *,
    trigger: str,
    actor: str,
    user: Any = None,
    atlas_client: Any = None,
    gotransverse_client: Any = None,
    stage_done: Callable[[str], None] | None = None,
    mirror_progress: Callable[[str, int, int], None] | None = None,
) -> CycleReport:
    """Run every stage once, in order; returns what each did and what needs a person.

    stage_done(stage) is called as each of STAGES ends and mirror_progress(entity, done, total)
    during the ATLAS mirror, so that a page can show how far a run has come."""
    started = time.monotonic()
    report = CycleReport(trigger=trigger)
    atlas = atlas_client or atlas_client_from_settings()
    ledger = gotransverse_client or gotransverse_client_from_settings()

    mark = _Stopwatch(report, stage_done)
    _mirror_stages(
        report,
        mark,
        atlas=atlas,
        ledger=ledger,
        trigger=trigger,
        user=user,
        mirror_progress=mirror_progress,
    )

    matching = counterparty_propose_matches()
    report.stages["matching"] = {
        k: v for k, v in vars(matching).items() if isinstance(v, int) and not k.startswith("_")
    }
    mark("matching")
    _counterparty_write_back_stage(report, atlas=atlas)
    mark("counterparty_write_back")
    report.stages["selection"] = orders_select_candidates(actor=actor).as_dict()
    mark("selection")
    report.stages["build"] = orders_build_ready(actor=actor)
    mark("build")

    posted = journals_post(client=ledger, actor=actor)
    report.stages["post"] = {
        "claimed": posted.claimed,
        "sent": posted.sent,
        "posted": posted.posted,
        "drafts_created": posted.drafted,
        "found_in_ledger": posted.found_in_ledger,
        "blocked": len(posted.blocked),
        "failed": len(posted.failed),
    }
    mark("post")
    written = write_backs_run(client=atlas)
    report.stages["write_back"] = {
        "erp_codes_written": written.erp_codes_written,
        "invoices_created": written.invoices_created,
        "invoices_found": written.invoices_found,
        "waiting_for_erp": written.waiting_for_erp,
        "no_document": written.no_document,
        "failed": len(written.failed),
    }
    mark("write_back")
    report.stages["orders"] = orders_by_state()
    report.remote_calls = {"atlas": atlas.stats.requests, "gotransverse": ledger.stats.requests}
    report.problems = cycle_problems()
    problems_refresh_safely()
    report.seconds = time.monotonic() - started
    logger.info(
        "cycle.finished",
        extra={
            "trigger": trigger,
            "problems": len(report.problems),
            "remote_calls": report.remote_calls,
            "seconds": round(report.seconds, 2),
        },
    )
    return report


def _mirror_stages(
    report: CycleReport,
    mark: Callable[[str], None],
    *,
    atlas: Any,
    ledger: Any,
    trigger: str,
    user: Any,
    mirror_progress: Callable[[str, int, int], None] | None,
) -> None:
    """Both mirrors, each skipped (and said so) when a pass of its own is already running."""
    try:
        run = atlas_mirror_run(client=atlas, trigger=trigger, user=user, progress=mirror_progress)
        report.stages["atlas_mirror"] = _run_counts(run)
        _run_errors(report, run, "ATLAS mirror")
    except AtlasMirrorAlreadyRunning as skipped:
        report.stages["atlas_mirror"] = {"skipped": skipped.message}
    mark("atlas_mirror")

    try:
        run = gotransverse_mirror_run(
            client=ledger, ledger_id=settings.GOTRANSVERSE_LEDGER_ID, trigger=trigger, user=user
        )
        report.stages["gotransverse_mirror"] = _run_counts(run)
        _run_errors(report, run, "Gotransverse mirror")
    except GotransverseMirrorAlreadyRunning as skipped:
        # The running pass mirrors the same reference data; the cycle builds on what is stored.
        report.stages["gotransverse_mirror"] = {"skipped": skipped.message}
    mark("gotransverse_mirror")


def _counterparty_write_back_stage(report: CycleReport, *, atlas: Any) -> None:
    """Approved codes and corrections whose write-back was lost or failed go out again here, so
    nothing a finance lead approved waits for someone to press "retry"."""
    codes = counterparty_mappings_write_back(client=atlas)
    corrections = master_data_corrections_push(client=atlas)
    report.stages["counterparty_write_back"] = {
        "codes_written": codes.written,
        "codes_failed": codes.failed,
        "corrections_pushed": corrections.written,
        "corrections_failed": corrections.failed,
    }
    report.errors.extend(f"Counterparty write-back: {e}" for e in codes.errors + corrections.errors)


class _Stopwatch:
    def __init__(self, report: CycleReport, stage_done: Callable[[str], None] | None):
        self.report = report
        self.last = time.monotonic()
        self.stage_done = stage_done

    def __call__(self, stage: str) -> None:
        now = time.monotonic()
        self.report.stage_seconds[stage] = round(now - self.last, 3)
        self.last = now
        if self.stage_done is not None:
            self.stage_done(stage)


def orders_by_state() -> dict[str, int]:

    return dict(OrderSync.objects.values_list("state").annotate(n=Count("pk")).order_by("state"))


def cycle_problems() -> list[CycleProblem]:
    """Every order a person must look at: blocked, failed, or with a failed write-back."""
    problems = [
        CycleProblem(
            atlas_order_id=row["order__atlas_id"],
            document_reference=row["order__document_reference"] or "",
            state=row["state"],
            reason=row["blocked_reason"] or "transient",
            message=row["blocked_message"] or row["last_error"],
            more=[
                (str(p.get("reason", "")), str(p.get("message", "")))
                for p in (row["blocked_problems"] or [])[1:]
                if isinstance(p, dict)
            ],
        )
        for row in OrderSync.objects.filter(state__in=[OrderState.BLOCKED, OrderState.FAILED])
        .order_by("order__atlas_id")
        .values(
            "order__atlas_id",
            "order__document_reference",
            "state",
            "blocked_reason",
            "blocked_message",
            "blocked_problems",
            "last_error",
        )
    ]
    problems.extend(
        CycleProblem(
            atlas_order_id=row["order_sync__order__atlas_id"],
            document_reference=row["order_sync__order__document_reference"] or "",
            state=f"write_back_{row['kind']}_failed",
            reason=f"write_back_{row['kind']}",
            message=row["last_error"],
        )
        for row in WriteBackStep.objects.filter(status=WriteBackStep.Status.FAILED)
        .order_by("order_sync__order__atlas_id")
        .values(
            "order_sync__order__atlas_id",
            "order_sync__order__document_reference",
            "kind",
            "last_error",
        )
    )
    return problems


def _run_errors(report: CycleReport, run: SyncRun, name: str) -> None:
    if run.status == SyncRun.Status.FAILED:
        report.errors.append(f"{name} failed: {run.error_message} (sync run {run.pk})")
    elif run.status == SyncRun.Status.COMPLETED_WITH_ERRORS:
        for error in run.errors.all()[:20]:
            report.errors.append(f"{name}: {error.message}")
        more = run.errors.count() - 20
        if more > 0:
            report.errors.append(f"{name}: {more} more record(s) failed (sync run {run.pk})")


def _run_counts(run: SyncRun) -> dict[str, Any]:
    totals = {outcome: run.total(outcome) for outcome in ("created", "updated", "unchanged")}
    totals["failed"] = run.total("failed")
    totals["status"] = run.status
    totals["api_calls"] = run.api_calls
    return totals


class InboundProcessingError(ApplicationError):
    """Processing could not finish; `retryable` says whether trying again later may help."""

    def __init__(self, message: str, *, retryable: bool, details: dict[str, Any] | None = None):
        super().__init__(message, details=details)
        self.retryable = retryable


@dataclass
class OrderPipelineOutcome:
    atlas_order_id: int
    state: str = ""
    steps: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"Order {self.atlas_order_id}: "
            + "; ".join(self.steps)
            + (f" → {self.state}" if self.state else "")
        )


def order_pipeline_run(
    *,
    atlas_order_id: int,
    actor: str,
    atlas_client: Any = None,
    ledger_client: Any = None,
) -> OrderPipelineOutcome:
    """The journal pipeline for one order, as the cycle would run it, composed of the
    pipeline's public services: re-fetch from ATLAS (order, items, counterparty) → map the
    counterparty → select → build → post → write back. Each stage is idempotent, so a second
    run (a duplicate or a replay) changes nothing that the first one did.

    Raises InboundProcessingError (retryable) when ATLAS could not be read.
    """
    atlas = atlas_client or atlas_client_from_settings()
    outcome = OrderPipelineOutcome(atlas_order_id=atlas_order_id)

    # 1. Re-fetch the order, its items and (when the mirror lacks it) its counterparty.
    order = _order_refetch(atlas=atlas, atlas_order_id=atlas_order_id, outcome=outcome)
    counterparty_propose_matches(
        counterparties=Counterparty.objects.filter(atlas_id=order.counterparty_atlas_id)
    )

    # 2. Selection of this order only: a webhook about one order must not move another one
    # (the cycle selects the rest on its own schedule, under its own actor).
    orders_select_candidates(actor=actor, order_ids=[atlas_order_id])
    order_sync = OrderSync.objects.filter(order__atlas_id=atlas_order_id).first()
    if order_sync is None:
        outcome.steps.append(
            "not a candidate (not in a trigger status, or it has an ERP document code already)"
        )
        return outcome
    outcome.steps.append(f"selected as {order_sync.state}")

    # 3. Build.
    if order_sync.state in (OrderState.READY, OrderState.JOURNAL_BUILT):
        journal = order_build_journal(order_sync=order_sync, actor=actor)
        order_sync.refresh_from_db()
        outcome.steps.append(
            f"journal {journal.source_transaction_reference} built"
            if journal is not None
            else f"not built ({order_sync.state})"
        )

    # 4. Post (the poster claims what is postable; this order among them).
    if order_sync.state in POSTABLE_STATES:
        ledger = ledger_client or gotransverse_client_from_settings()
        # Only this order: a webhook must not post (or create drafts for) other orders that
        # happen to be postable; the cycle does those on its own schedule.
        report = journals_post(client=ledger, actor=actor, order_sync_ids=[order_sync.pk])
        order_sync.refresh_from_db()
        outcome.steps.append(f"posting: {report.posted} posted, {report.drafted} drafted")

    # 5. Write back the ERP code and the invoice.
    if order_sync.state in WRITE_BACK_STATES:
        written = write_backs_run(client=atlas, order_sync_ids=[order_sync.pk])
        order_sync.refresh_from_db()
        outcome.steps.append(
            "write-back: "
            + ("ERP document code written" if written.erp_codes_written else "no ERP code written")
            + (
                ", invoice recorded"
                if written.invoices_created + written.invoices_found
                else ", no invoice yet"
            )
        )
    outcome.state = order_sync.state
    if order_sync.state == OrderState.BLOCKED:
        outcome.steps.append(f"blocked: {order_sync.blocked_message}")
    return outcome


def _order_refetch(*, atlas: Any, atlas_order_id: int, outcome: OrderPipelineOutcome) -> Order:
    """The order and, in the same run, its items (one OrderItem/GetByOrderIds call; an item
    ATLAS no longer lists is marked missing), and its counterparty when the mirror lacks it (the
    scheduled mirror keeps known counterparties fresh; one call saved per webhook). Two ATLAS
    calls for a known counterparty, four for a new one."""
    _mirrored(
        atlas_mirror_records,
        client=atlas,
        entity="Order",
        atlas_ids=[atlas_order_id],
        with_items=True,
    )
    order = Order.objects.filter(atlas_id=atlas_order_id).first()
    if order is None:
        raise InboundProcessingError(
            f"ATLAS did not return order {atlas_order_id}.",
            retryable=False,
            details={"atlas_order_id": atlas_order_id},
        )
    if order.counterparty_id is None:
        _mirrored(
            atlas_mirror_records,
            client=atlas,
            entity="Counterparty",
            atlas_ids=[order.counterparty_atlas_id],
        )
        # The order's link to its counterparty is set when the order is mirrored again.
        _mirrored(atlas_mirror_records, client=atlas, entity="Order", atlas_ids=[atlas_order_id])
    item_ids = set(
        OrderItem.objects.filter(order_atlas_id=atlas_order_id)
        .exclude(sync_state=SyncState.MISSING)
        .values_list("atlas_id", flat=True)
    )
    outcome.steps.append(f"re-fetched with {len(item_ids)} item(s)")
    return order


def _mirrored(mirror: Callable[..., SyncRun], **kwargs: Any) -> SyncRun:
    run = mirror(trigger=SyncRun.Trigger.WEBHOOK, **kwargs)
    if run.status == SyncRun.Status.FAILED:
        raise InboundProcessingError(
            f"Re-fetching {kwargs['entity']} from ATLAS failed: {run.error_message} "
            f"(sync run {run.pk}).",
            retryable=True,
            details={"sync_run": run.pk},
        )
    return run


@dataclass
class RecheckResult:
    examined: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    still_blocked: int = 0
    sent: int = 0
    posted: int = 0
    drafts_created: int = 0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def orders_recheck(
    *, order_sync_ids: Iterable[int], reason: str = "", client: object = None
) -> RecheckResult:
    """Re-check these orders now: the cycle's build stage for them alone (blocked orders whose
    cause is gone are released, the others stay blocked with the current reason), then send
    the journals built (posting claims each order, so a cycle running meanwhile never sends
    one twice). Idempotent: an order no longer blocked or ready is left alone."""
    actor = "system:recheck" + (f" ({reason})" if reason else "")
    pks = sorted({int(pk) for pk in order_sync_ids})
    result = RecheckResult(examined=len(pks))
    result.outcomes = orders_build_ready(actor=actor[:150], order_sync_ids=pks)
    built = list(
        OrderSync.objects.filter(pk__in=pks, state=OrderState.JOURNAL_BUILT).values_list(
            "pk", flat=True
        )
    )
    result.still_blocked = OrderSync.objects.filter(pk__in=pks, state=OrderState.BLOCKED).count()
    if built:
        report = journals_post(client=client, actor=actor[:150], order_sync_ids=built)
        result.sent, result.posted, result.drafts_created = (
            report.sent,
            report.posted,
            report.drafted,
        )
    logger.info("orders.rechecked", extra={"reason": reason, **result.as_dict()})
    return result
