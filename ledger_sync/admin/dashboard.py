"""The back-office home: a dashboard per role, built from a small registry of cards.

A card is one thing a person should act on, with its figure and a button to the exact
filtered list where they act. Finance leads see their decisions first (matches, corrections),
accountants theirs (drafts, blocked orders); problems everyone watches come after. Every count
of every card is taken in one query (selectors.dashboard.dashboard_counts), so the page costs
the same whatever the number of orders.

To add a card, register it here:

    dashboard_card_register(CountCard(key="problems", title="Error queue", role=None,
        lines=(CardLine("Open problems", lambda: Problem.objects.filter(status="open"),
                        "admin:ledger_sync_problem_changelist", "?status__exact=open",
                        "ledger_sync.view_problem"),),
        button="Open the error queue"))

or subclass DashboardCard for a card that is not a count (its `view` may run its own query).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Exists, OuterRef, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.http import urlencode

from ledger_sync.admin.display import counted, when
from ledger_sync.models import ReconciliationRun
from ledger_sync.selectors.dashboard import (
    Pipeline,
    cashflow_per_month,
    dashboard_counts,
    job_runs_latest,
    order_pipeline,
    posted_per_period,
    reconciliation_run_latest,
    schedule_last_runs,
)
from ledger_sync.services.roles import ACCOUNTANT, FINANCE_LEAD

TODO = "todo"
PROBLEMS = "problems"
RUN_NOW_BUTTONS = {
    "atlas_mirror": "Run the ATLAS mirror now",
    "journal_cycle": "Run the journal cycle now",
}


@dataclass(frozen=True)
class CardLine:
    """One figure of a card: what it counts, and the list (admin URL name + query) showing
    exactly those rows."""

    label: str
    queryset: Callable[[], QuerySet]
    url_name: str
    query: str = ""
    permission: str = ""  # needed to see the line (the target list's view permission)

    @property
    def url(self) -> str:
        return reverse(self.url_name) + self.query


@dataclass
class CardView:
    """What the template renders for one card."""

    key: str
    title: str
    figure: int | str  # a count, or a word where there is none ("—", "Failed")
    button: str
    url: str
    lines: list[dict[str, Any]] = field(default_factory=list)
    help: str = ""
    tone: str = "todo"  # todo | problem | calm (nothing to do)


class DashboardCard:
    """A card of the home page. `querysets` names what it counts (folded into the one query of
    the page); `view` turns the counts into what is shown, or None to hide the card."""

    key: str = ""
    title: str = ""
    role: str | None = None  # whose decision the card is (FINANCE_LEAD, ACCOUNTANT) or None
    section: str = PROBLEMS

    def visible_to(self, request: HttpRequest) -> bool:
        return True

    def querysets(self, request: HttpRequest) -> dict[str, QuerySet]:
        return {}

    def view(self, request: HttpRequest, data: DashboardData) -> CardView | None:
        raise NotImplementedError


@dataclass
class DashboardData:
    counts: dict[str, int]
    pipeline: Pipeline


@dataclass(kw_only=True)
class CountCard(DashboardCard):
    """A card whose figure is the sum of its lines' counts; each line links to its list."""

    key: str
    title: str
    lines: tuple[CardLine, ...]
    button: str
    role: str | None = None
    section: str = PROBLEMS
    help: str = ""
    hide_zero_lines: bool = False
    # The card is a decision only people with this permission make; hidden from the others.
    decide_permission: str = ""

    def _lines(self, request: HttpRequest) -> list[CardLine]:
        return [
            line
            for line in self.lines
            if not line.permission or request.user.has_perm(line.permission)
        ]

    def visible_to(self, request: HttpRequest) -> bool:
        if self.decide_permission and not request.user.has_perm(self.decide_permission):
            return False
        return bool(self._lines(request))

    def querysets(self, request: HttpRequest) -> dict[str, QuerySet]:
        return {f"{self.key}.{index}": line.queryset() for index, line in enumerate(self.lines)}

    def view(self, request: HttpRequest, data: DashboardData) -> CardView | None:
        lines = []
        for index, line in enumerate(self.lines):
            if line not in self._lines(request):
                continue
            count = data.counts.get(f"{self.key}.{index}", 0)
            if self.hide_zero_lines and not count:
                continue
            lines.append({"label": line.label, "count": count, "url": line.url})
        figure = sum(line["count"] for line in lines)
        first = next((line for line in lines if line["count"]), lines[0] if lines else None)
        return CardView(
            key=self.key,
            title=self.title,
            figure=figure,
            button=self.button,
            url=first["url"] if first else self._lines(request)[0].url,
            lines=lines if len(self.lines) > 1 else [],
            help=self.help,
            tone=("todo" if self.section == TODO else "problem") if figure else "calm",
        )


class BlockedOrdersCard(DashboardCard):
    """Orders blocked, per reason, each reason linking to its orders (from the pipeline query,
    so it costs no query of its own)."""

    key = "blocked_orders"
    title = "Orders blocked"
    role = ACCOUNTANT
    section = TODO

    def visible_to(self, request: HttpRequest) -> bool:
        return request.user.has_perm("ledger_sync.view_ordersync")

    def view(self, request: HttpRequest, data: DashboardData) -> CardView:
        from ledger_sync.models import BlockedReason, OrderState

        base = reverse("admin:ledger_sync_ordersync_changelist")
        labels = dict(BlockedReason.choices)
        lines = [
            {
                "label": labels.get(reason, reason or "No reason recorded"),
                "count": count,
                "url": base
                + "?"
                + urlencode({"state__exact": OrderState.BLOCKED, "blocked_reason__exact": reason}),
            }
            for reason, count in data.pipeline.blocked_by_reason.items()
        ]
        figure = data.pipeline.by_state.get(OrderState.BLOCKED, 0)
        return CardView(
            key=self.key,
            title=self.title,
            figure=figure,
            button="Fix blocked orders",
            url=lines[0]["url"] if lines else f"{base}?state__exact={OrderState.BLOCKED}",
            lines=lines,
            help="Each order says what blocks it and links to what fixes it.",
            tone="todo" if figure else "calm",
        )


class LastReconciliationCard(DashboardCard):
    """The latest reconciliation run: its result, how many differences, when; the button opens
    that run's differences (or the run itself when it found none or failed). Its own query: a
    run is one row, not a count to fold into the page's counting query."""

    key = "last_reconciliation"
    title = "Last reconciliation"
    role = None
    section = PROBLEMS

    def visible_to(self, request: HttpRequest) -> bool:
        return request.user.has_perm("ledger_sync.view_reconciliationrun")

    def view(self, request: HttpRequest, data: DashboardData) -> CardView:
        run = reconciliation_run_latest()
        if run is None:
            return CardView(
                key=self.key,
                title=self.title,
                figure="—",
                button="Open reconciliation runs",
                url=reverse("admin:ledger_sync_reconciliationrun_changelist"),
                help="No reconciliation has run yet (Reconcile now on that page).",
                tone="calm",
            )
        scope = run.period or "all periods"
        run_url = reverse("admin:ledger_sync_reconciliationrun_change", args=[run.pk])
        if run.status == ReconciliationRun.Status.RUNNING:
            return CardView(
                key=self.key,
                title=self.title,
                figure="…",
                button="See the run",
                url=run_url,
                help=f"Running ({scope}) since {when(run.started_at)}.",
                tone="calm",
            )
        finished = when(run.finished_at or run.started_at)
        if run.status == ReconciliationRun.Status.FAILED:
            first_line = (run.error or "no error recorded").strip().splitlines()[0][:160]
            return CardView(
                key=self.key,
                title=self.title,
                figure="Failed",
                button="See the run",
                url=run_url,
                help=f"Failed ({scope}) at {finished}: {first_line}",
                tone="problem",
            )
        if not run.difference_count:
            return CardView(
                key=self.key,
                title=self.title,
                figure=0,
                button="See the run",
                url=run_url,
                help=f"Everything agrees ({scope}), {finished}.",
                tone="calm",
            )
        return CardView(
            key=self.key,
            title=self.title,
            figure=run.difference_count,
            button="See the differences",
            url=reverse("admin:ledger_sync_reconciliationdifference_changelist")
            + "?"
            + urlencode({"run__id__exact": run.pk}),
            help=f"{counted(run.difference_count, 'difference', 'differences')} found "
            f"({scope}), {finished}.",
            tone="problem",
        )


# --- the registry -------------------------------------------------------------------------------

DASHBOARD_CARDS: list[DashboardCard] = []


def dashboard_card_register(card: DashboardCard) -> DashboardCard:
    """Add a card to the home page (after those already registered; keys are unique)."""
    if any(existing.key == card.key for existing in DASHBOARD_CARDS):
        raise ValueError(f"a dashboard card {card.key!r} is already registered")
    DASHBOARD_CARDS.append(card)
    return card


def _unmapped_counterparties(*, with_candidates: bool) -> QuerySet:
    from ledger_sync.models import Counterparty, MatchProposal

    open_proposals = MatchProposal.objects.filter(
        counterparty=OuterRef("pk"), status=MatchProposal.Status.PROPOSED
    )
    # As the matching page lists them (selectors.parties.counterparties_awaiting_decision).
    has = Exists(open_proposals)
    return Counterparty.objects.filter(erp_mapping__isnull=True).filter(
        has if with_candidates else ~has
    )


def _mirror_error_lines() -> tuple[CardLine, ...]:
    from ledger_sync.models import (
        AccountingPeriod,
        AccountingYear,
        Counterparty,
        CustomFieldDefinition,
        CustomFieldType,
        GLAccount,
        Invoice,
        Ledger,
        Order,
        OrderItem,
        Payment,
        SyncState,
    )

    lines = []
    for model in (
        Counterparty,
        Order,
        OrderItem,
        Invoice,
        Payment,
        CustomFieldDefinition,
        CustomFieldType,
        Ledger,
        AccountingYear,
        AccountingPeriod,
        GLAccount,
    ):
        meta = model._meta
        lines.append(
            CardLine(
                label=str(meta.verbose_name_plural).capitalize(),
                queryset=lambda model=model: model.objects.filter(sync_state=SyncState.INVALID),
                url_name=f"admin:{meta.app_label}_{meta.model_name}_changelist",
                query=f"?sync_state__exact={SyncState.INVALID}",
                permission=f"{meta.app_label}.view_{meta.model_name}",
            )
        )
    return tuple(lines)


def _register_default_cards() -> None:
    from django_q.models import Failure

    from ledger_sync.models import (
        CounterpartyMapping,
        InboundDelivery,
        InvoiceReport,
        InvoiceSettlement,
        Journal,
        LedgerSettlementState,
        MasterDataCorrection,
        OrderState,
        OrderSync,
        PaymentConfirmation,
        Problem,
        WriteBackState,
        WriteBackStep,
    )
    from ledger_sync.models.inbound import CallbackState

    def line(label, queryset, model_name, query="", app="ledger_sync"):
        return CardLine(
            label=label,
            queryset=queryset,
            url_name=f"admin:{app}_{model_name}_changelist",
            query=query,
            permission=f"{app}.view_{model_name}",
        )

    for card in (
        CountCard(
            key="matches_to_approve",
            title="Matches to approve",
            role=FINANCE_LEAD,
            section=TODO,
            button="Approve matches",
            decide_permission="ledger_sync.approve_matchproposal",
            help="ATLAS counterparties with proposed ERP parties, best candidate first.",
            lines=(
                line(
                    "With candidates",
                    lambda: _unmapped_counterparties(with_candidates=True),
                    "counterpartymatching",
                    "?candidates=yes",
                ),
            ),
        ),
        CountCard(
            key="counterparties_without_candidate",
            title="Counterparties without an ERP party",
            role=FINANCE_LEAD,
            section=TODO,
            button="Create ERP parties",
            decide_permission="ledger_sync.add_erpparty",
            help="No candidate found: create the ERP party from the ATLAS record.",
            lines=(
                line(
                    "No candidate",
                    lambda: _unmapped_counterparties(with_candidates=False),
                    "counterpartymatching",
                    "?candidates=no",
                ),
            ),
        ),
        CountCard(
            key="corrections_to_approve",
            title="Corrections to approve",
            role=FINANCE_LEAD,
            section=TODO,
            button="Review corrections",
            decide_permission="ledger_sync.approve_masterdatacorrection",
            help="Master-data corrections requested by accountants, to push to ATLAS.",
            lines=(
                line(
                    "Requested",
                    lambda: MasterDataCorrection.objects.filter(
                        status=MasterDataCorrection.Status.DRAFT
                    ),
                    "masterdatacorrection",
                    f"?status__exact={MasterDataCorrection.Status.DRAFT}",
                ),
            ),
        ),
        CountCard(
            key="drafts_to_review",
            title="Drafts to review",
            role=ACCOUNTANT,
            section=TODO,
            button="Review drafts",
            decide_permission="ledger_sync.approve_journal",
            help="Journals sent to the ledger as drafts, waiting for approval or rejection.",
            lines=(
                line(
                    "Drafts",
                    lambda: Journal.objects.filter(status=Journal.Status.DRAFT),
                    "journal",
                    f"?status__exact={Journal.Status.DRAFT}",
                ),
            ),
        ),
        BlockedOrdersCard(),
        CountCard(
            key="orders_failed",
            title="Orders failing",
            role=ACCOUNTANT,
            button="See failing orders",
            help="A remote system failed; retried with backoff, or retry now from the order.",
            lines=(
                line(
                    "Failed",
                    lambda: OrderSync.objects.filter(state=OrderState.FAILED),
                    "ordersync",
                    f"?state__exact={OrderState.FAILED}",
                ),
            ),
        ),
        CountCard(
            key="write_backs_failed",
            title="Failed write-backs to ATLAS",
            button="See failed write-backs",
            lines=(
                line(
                    "ERP codes and invoices",
                    lambda: WriteBackStep.objects.filter(status=WriteBackStep.Status.FAILED),
                    "writebackstep",
                    f"?status__exact={WriteBackStep.Status.FAILED}",
                ),
                line(
                    "Counterparty ERP codes",
                    lambda: CounterpartyMapping.objects.filter(
                        write_back_state=WriteBackState.FAILED
                    ),
                    "counterpartymapping",
                    f"?write_back_state__exact={WriteBackState.FAILED}",
                ),
                line(
                    "Master-data corrections",
                    lambda: MasterDataCorrection.objects.filter(
                        status=MasterDataCorrection.Status.FAILED
                    ),
                    "masterdatacorrection",
                    f"?status__exact={MasterDataCorrection.Status.FAILED}",
                ),
            ),
        ),
        CountCard(
            key="deliveries_failed",
            title="Failed deliveries and callbacks",
            button="See failed deliveries",
            lines=(
                line(
                    "ATLAS webhooks",
                    lambda: InboundDelivery.objects.filter(state=InboundDelivery.State.FAILED),
                    "inbounddelivery",
                    f"?state__exact={InboundDelivery.State.FAILED}",
                ),
                line(
                    "Payments failing",
                    lambda: PaymentConfirmation.objects.filter(state=CallbackState.FAILED),
                    "paymentconfirmation",
                    f"?state__exact={CallbackState.FAILED}",
                ),
                line(
                    "Payments refused by ATLAS",
                    lambda: PaymentConfirmation.objects.filter(state=CallbackState.REJECTED),
                    "paymentconfirmation",
                    f"?state__exact={CallbackState.REJECTED}",
                ),
                line(
                    "Payment settlements failing in the AR Ledger",
                    lambda: PaymentConfirmation.objects.filter(
                        ledger_state=LedgerSettlementState.FAILED
                    ),
                    "paymentconfirmation",
                    f"?ledger_state__exact={LedgerSettlementState.FAILED}",
                ),
                line(
                    "Payment settlements blocked",
                    lambda: PaymentConfirmation.objects.filter(
                        ledger_state=LedgerSettlementState.BLOCKED
                    ),
                    "paymentconfirmation",
                    f"?ledger_state__exact={LedgerSettlementState.BLOCKED}",
                ),
                line(
                    "Invoices failing",
                    lambda: InvoiceReport.objects.filter(state=CallbackState.FAILED),
                    "invoicereport",
                    f"?state__exact={CallbackState.FAILED}",
                ),
                line(
                    "Invoices refused by ATLAS",
                    lambda: InvoiceReport.objects.filter(state=CallbackState.REJECTED),
                    "invoicereport",
                    f"?state__exact={CallbackState.REJECTED}",
                ),
                line(
                    "Invoices not marked paid",
                    lambda: InvoiceSettlement.objects.filter(state=InvoiceSettlement.State.FAILED),
                    "invoicesettlement",
                    f"?state__exact={InvoiceSettlement.State.FAILED}",
                ),
            ),
        ),
        CountCard(
            key="error_queue",
            title="Error queue",
            button="Open the error queue",
            help="Every open problem in one list: who has it, since when, how often.",
            lines=(
                line(
                    "Open problems",
                    lambda: Problem.objects.filter(status=Problem.Status.OPEN),
                    "problem",
                    f"?status__exact={Problem.Status.OPEN}",
                ),
            ),
        ),
        LastReconciliationCard(),
        CountCard(
            key="tasks_failed",
            title="Failed tasks",
            button="See failed tasks",
            help="Background tasks that failed for good (after their retries).",
            lines=(line("Tasks", lambda: Failure.objects.all(), "failure", app="django_q"),),
        ),
        CountCard(
            key="mirror_errors",
            title="Mirror record errors",
            button="See invalid records",
            help="Records ATLAS or the AR Ledger sent that could not be read.",
            lines=_mirror_error_lines(),
            hide_zero_lines=True,
        ),
    ):
        dashboard_card_register(card)


# --- the page -----------------------------------------------------------------------------------


def _role(user: Any) -> str:
    """Whose decisions come first: a finance lead's (whoever may approve matches, superusers
    too), else an accountant's. From the permissions already loaded: no query."""
    if user.has_perm("ledger_sync.approve_matchproposal"):
        return FINANCE_LEAD
    return ACCOUNTANT


def _ordered(cards: Iterable[DashboardCard], role: str) -> list[DashboardCard]:
    rank: dict[str | None, int] = {FINANCE_LEAD: 1, ACCOUNTANT: 1, None: 2}
    rank[role] = 0
    return sorted(cards, key=lambda card: rank.get(card.role, 2))  # stable: registry order


def dashboard_context(request: HttpRequest) -> dict[str, Any]:
    """Everything the home page shows, in a fixed number of queries."""
    from ledger_sync.admin import charts

    role = _role(request.user)
    cards = [card for card in _ordered(DASHBOARD_CARDS, role) if card.visible_to(request)]
    querysets: dict[str, QuerySet] = {}
    for card in cards:
        querysets.update(card.querysets(request))
    data = DashboardData(counts=dashboard_counts(querysets=querysets), pipeline=order_pipeline())
    views = [(card, card.view(request, data)) for card in cards]
    views = [(card, view) for card, view in views if view is not None]
    user = request.user
    sees_orders = user.has_perm("ledger_sync.view_ordersync")
    sees_journals = user.has_perm("ledger_sync.view_journal")
    return {
        "dashboard_role": role,
        "todo_cards": [view for card, view in views if card.section == TODO],
        "problem_cards": [view for card, view in views if card.section != TODO],
        "funnel": charts.pipeline_funnel(data.pipeline) if sees_orders else None,
        "posted_chart": charts.posted_per_period_chart(posted_per_period())
        if sees_journals
        else None,
        "cashflow_chart": charts.cashflow_chart(cashflow_per_month()) if sees_orders else None,
        "schedules": _schedules(user),
        "run_now": _run_now(user),
    }


def _schedules(user: Any) -> list[dict[str, Any]] | None:
    if not user.has_perm("django_q.view_schedule"):
        return None
    rows = []
    for run in schedule_last_runs():
        if run.last_success is None:
            outcome, url = "never ran", ""
        elif run.last_success:
            outcome = "succeeded"
            url = reverse("admin:django_q_success_change", args=[run.last_task_id])
        else:
            outcome = "failed"
            url = reverse("admin:django_q_failure_change", args=[run.last_task_id])
        rows.append({"run": run, "outcome": outcome, "url": url})
    return rows


def _run_now(user: Any) -> list[dict[str, Any]] | None:
    from ledger_sync.models import JobRun

    if not user.has_perm("ledger_sync.view_jobrun"):
        return None
    latest = job_runs_latest()
    return [
        {
            "kind": kind,
            "label": label,
            "button": RUN_NOW_BUTTONS[kind],
            "latest": latest.get(kind),
            "can_start": user.has_perm("ledger_sync.start_jobrun"),
            "url": reverse("admin:ledger_sync_run_now", args=[kind]),
        }
        for kind, label in JobRun.Kind.choices
    ]


__all__ = [
    "DASHBOARD_CARDS",
    "BlockedOrdersCard",
    "CardLine",
    "CardView",
    "CountCard",
    "DashboardCard",
    "LastReconciliationCard",
    "dashboard_card_register",
    "dashboard_context",
]

_register_default_cards()
