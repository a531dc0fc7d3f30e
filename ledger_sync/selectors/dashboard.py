"""Reads of the back-office home (the dashboard): the counts behind its cards, the order
pipeline, amounts posted per accounting period, cashflow per month and the last run of each
schedule. Each function is one SQL query, whatever the number of orders: the home page stays
within a fixed query budget (tests/ledger_sync/admin/test_dashboard_queries.py)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from django.db.models import (
    Case,
    CharField,
    Count,
    DecimalField,
    F,
    Min,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce, TruncMonth

from ledger_sync.models import (
    JobRun,
    Journal,
    OrderItem,
    OrderState,
    OrderSync,
    ReconciliationRun,
)
from ledger_sync.services.order_states import POSTED_STATES

ZERO = Decimal("0.00")
# The funnel, in pipeline order; states an order leaves the pipeline by come last.
PIPELINE = (
    OrderState.MIRRORED,
    OrderState.WAITING,
    OrderState.READY,
    OrderState.JOURNAL_BUILT,
    OrderState.AWAITING_REVIEW,
    OrderState.POSTING,
    OrderState.POSTED,
    OrderState.ERP_CODE_WRITTEN,
    OrderState.INVOICED,
    OrderState.PARTIALLY_PAID,
    OrderState.PAID,
    OrderState.BLOCKED,
    OrderState.FAILED,
    OrderState.PROCESSED_ELSEWHERE,
)


def dashboard_counts(*, querysets: Mapping[str, QuerySet]) -> dict[str, int]:
    """How many rows each queryset has, keyed as given, in ONE query (a UNION ALL of counts),
    so that a dashboard with twenty cards costs one round trip."""
    if not querysets:
        return {}
    parts = [
        queryset.order_by()
        .annotate(dashboard_key=Value(key, output_field=CharField()))
        .values("dashboard_key")
        .annotate(n=Count("pk"))
        .values_list("dashboard_key", "n")
        for key, queryset in querysets.items()
    ]
    first, *rest = parts
    counts = dict.fromkeys(querysets, 0)
    counts.update(dict(first.union(*rest, all=True) if rest else first))
    return counts


@dataclass(frozen=True)
class Pipeline:
    by_state: dict[str, int]  # every state of PIPELINE, 0 when none
    blocked_by_reason: dict[str, int]  # reasons with at least one blocked order, most first

    @property
    def total(self) -> int:
        return sum(self.by_state.values())


def order_pipeline() -> Pipeline:
    """Orders per state, and the blocked ones per reason (one GROUP BY)."""
    rows = (
        OrderSync.objects.order_by()
        .values_list("state", "blocked_reason")
        .annotate(n=Count("pk"))
        .values_list("state", "blocked_reason", "n")
    )
    by_state = dict.fromkeys(PIPELINE, 0)
    blocked: dict[str, int] = {}
    for state, reason, n in rows:
        by_state[state] = by_state.get(state, 0) + n
        if state == OrderState.BLOCKED:
            blocked[reason or ""] = blocked.get(reason or "", 0) + n
    return Pipeline(
        by_state=by_state,
        blocked_by_reason=dict(sorted(blocked.items(), key=lambda item: (-item[1], item[0]))),
    )


@dataclass(frozen=True)
class PeriodAmount:
    period: str
    currency: str
    amount: Decimal


def posted_per_period(*, periods: int = 12) -> list[PeriodAmount]:
    """Net amount posted to the AR Ledger per accounting period and currency: posted journals
    (also those reversed later) less their reversals; the last `periods` periods, oldest first.
    Settlement transactions of payments are not postings of orders and are left out."""
    signed = Case(
        When(kind=Journal.Kind.REVERSAL, then=-F("total_debit")),
        default=F("total_debit"),
        output_field=DecimalField(max_digits=18, decimal_places=2),
    )
    rows = list(
        Journal.objects.filter(
            kind__in=[Journal.Kind.POSTING, Journal.Kind.REVERSAL],
            status__in=[Journal.Status.POSTED, Journal.Status.REVERSED],
        )
        .order_by()
        .values("landed_period", "currency")
        .annotate(amount=Sum(signed), first_day=Min("occurred_on"))
        .values_list("landed_period", "currency", "amount", "first_day")
    )
    rows.sort(key=lambda row: (row[3] or date.min, row[0]))
    wanted = []
    for name, _currency, _amount, _first in rows:
        if name not in wanted:
            wanted.append(name)
    kept = set(wanted[-periods:])
    return [
        PeriodAmount(period=name or "(period not known)", currency=currency, amount=amount or ZERO)
        for name, currency, amount, _first in rows
        if name in kept
    ]


@dataclass(frozen=True)
class CashflowMonth:
    month: date
    currency: str
    receivable: Decimal  # what counterparties owe us (Active items), gross
    payable: Decimal  # what we owe them (Passive items), gross, as a positive figure


def cashflow_per_month(*, months: int = 12) -> list[CashflowMonth]:
    """Receivable against payable per month the orders fall due, from the booked items (status
    In order) of every order posted to the ledger; the last `months` months, oldest first."""
    gross = F("net_amount") + F("vat_amount")
    money = DecimalField(max_digits=18, decimal_places=2)
    rows = (
        OrderItem.objects.filter(
            status=OrderItem.Status.IN_ORDER, order__sync__state__in=POSTED_STATES
        )
        .order_by()
        .annotate(month=TruncMonth("order__due_date"))
        .values("month", "order__currency")
        .annotate(
            receivable=Coalesce(
                Sum(Case(When(cashflow=OrderItem.Cashflow.ACTIVE, then=gross), output_field=money)),
                Value(ZERO),
                output_field=money,
            ),
            payable=Coalesce(
                Sum(
                    Case(When(cashflow=OrderItem.Cashflow.PASSIVE, then=gross), output_field=money)
                ),
                Value(ZERO),
                output_field=money,
            ),
        )
        .values_list("month", "order__currency", "receivable", "payable")
    )
    result = [
        CashflowMonth(
            month=month.date() if isinstance(month, datetime) else month,
            currency=currency,
            receivable=receivable,
            payable=-payable,  # Passive items carry ATLAS's negative sign
        )
        for month, currency, receivable, payable in rows
    ]
    result.sort(key=lambda row: (row.month, row.currency))
    last = sorted({row.month for row in result})[-months:]
    return [row for row in result if row.month in set(last)]


@dataclass(frozen=True)
class ScheduleRun:
    schedule_id: int
    name: str
    func: str
    minutes: int | None
    next_run: datetime | None
    last_started: datetime | None
    last_stopped: datetime | None
    last_success: bool | None  # None: never ran (or its task record was pruned)
    last_task_id: str


def schedule_last_runs() -> list[ScheduleRun]:
    """Every django-q2 schedule with the outcome of its last task (one query)."""
    from django_q.models import Schedule, Task

    last_task = Task.objects.filter(id=OuterRef("task"))
    rows = (
        Schedule.objects.order_by("name")
        .annotate(
            last_started=Subquery(last_task.values("started")[:1]),
            last_stopped=Subquery(last_task.values("stopped")[:1]),
            last_success=Subquery(last_task.values("success")[:1]),
        )
        .values_list(
            "pk",
            "name",
            "func",
            "minutes",
            "next_run",
            "last_started",
            "last_stopped",
            "last_success",
            "task",
        )
    )
    return [
        ScheduleRun(
            schedule_id=pk,
            name=name or func,
            func=func,
            minutes=minutes,
            next_run=next_run,
            last_started=started,
            last_stopped=stopped,
            last_success=None if success is None else bool(success),
            last_task_id=task or "",
        )
        for pk, name, func, minutes, next_run, started, stopped, success, task in rows
    ]


def job_runs_latest() -> dict[str, JobRun]:
    """The latest run of each job (ATLAS mirror, journal cycle), with who asked; one query."""
    newest = Q()
    for kind in JobRun.Kind.values:
        newest |= Q(pk__in=JobRun.objects.filter(kind=kind).order_by("-requested_at", "-id")[:1])
    runs = JobRun.objects.filter(newest).select_related("requested_by", "sync_run")
    return {run.kind: run for run in runs}


def reconciliation_run_latest() -> ReconciliationRun | None:
    """The latest reconciliation run (running, done or failed), or None; one query."""
    return (
        ReconciliationRun.objects.order_by("-started_at", "-id")
        .only("status", "period", "error", "started_at", "finished_at", "difference_count")
        .first()
    )
