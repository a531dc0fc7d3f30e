"""Planning one order's journal with the database: the context loaded once per batch (chart
of accounts, control accounts, mappings, periods), the facts read from the mirror, and a
`JournalPlan` per order — the lines to store, or the block and the admin page that fixes it.
Nothing is written here; services/journals.py applies the plans.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from django.conf import settings
from django.utils import timezone

from ledger_sync.models import (
    BlockedReason,
    ClosedPeriodPolicy,
    Counterparty,
    CustomFieldMapping,
    GLAccount,
    Ledger,
    Order,
    OrderItem,
    OrderSync,
    PostingSettings,
    SyncState,
)
from ledger_sync.selectors.reference import PeriodLanding, gl_account_check, period_landing
from ledger_sync.services.account_roles import account_role_problem
from ledger_sync.services.admin_links import (
    fix_url_counterparty,
    fix_url_counterparty_matching,
    fix_url_gl_account,
    fix_url_order,
    fix_url_periods,
    fix_url_posting_settings,
)
from ledger_sync.services.journal_rules import (
    CONTROL_ROLE_FIELDS,
    CONTROL_ROLES,
    ROLE_WORDS,
    Cashflow,
    ControlAccounts,
    CounterpartyFacts,
    ItemFacts,
    JournalProblem,
    LineDraft,
    LineRole,
    OrderFacts,
    build_journal_lines,
    journal_lines_problems,
)


class BuildContext:
    """What every order of a batch is validated against, loaded once: posting settings, the
    ledger, the custom-field mappings; GL account checks and period landings are cached."""

    def __init__(self) -> None:
        self.posting_settings = PostingSettings.load()
        self.ledger = Ledger.objects.filter(
            gotransverse_id=_int_or_none(settings.GOTRANSVERSE_LEDGER_ID)
        ).first()
        self.custom_field_keys: dict[int, str] = dict(
            CustomFieldMapping.objects.filter(ignored=False)
            .exclude(target_key="")
            .values_list("definition_id", "target_key")
        )
        # Orders whose BUILT journal the poster looked up and did not find in the ledger: safe
        # to supersede although an attempt to send it was interrupted.
        self.confirmed_not_in_ledger: set[int] = set()
        self._gl_checks: dict[str, tuple[GLAccount | None, str | None]] = {}
        self._landings: dict[date, PeriodLanding] = {}

    @property
    def control_accounts(self) -> ControlAccounts:
        s = self.posting_settings
        return ControlAccounts(
            receivables=(s.receivables_account or "").strip(),
            payables=(s.payables_account or "").strip(),
            output_vat=(s.output_vat_account or "").strip(),
            input_vat=(s.input_vat_account or "").strip(),
            default_revenue=(s.default_revenue_account or "").strip(),
            default_expense=(s.default_expense_account or "").strip(),
        )

    def account_fits(self, number: str, role: LineRole) -> bool:
        """Whether `number` is a usable account of the chart with the type/designation of
        `role` (the builder's fallback test for a counterparty's account)."""
        account, problem = self.gl_check(number)
        return (
            account is not None
            and problem is None
            and account_role_problem(role=role, account=account) is None
        )

    @property
    def zero_amount_entries(self) -> bool:
        return bool(self.ledger and self.ledger.create_zero_amount_entries)

    def gl_check(self, number: str) -> tuple[GLAccount | None, str | None]:
        if number not in self._gl_checks:
            self._gl_checks[number] = gl_account_check(number)
        return self._gl_checks[number]

    def landing(self, on: date) -> PeriodLanding:
        assert self.ledger is not None
        if on not in self._landings:
            self._landings[on] = period_landing(ledger=self.ledger, on=on)
        return self._landings[on]


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _as_date(value: datetime | date | None) -> date | None:
    """The calendar date of an ATLAS date. ATLAS dates carry no zone and are stored as UTC,
    so the date is taken in UTC, whatever the server's zone."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC).date() if timezone.is_aware(value) else value.date()
    return value


def order_facts(order: Order) -> OrderFacts:
    return OrderFacts(
        atlas_id=order.atlas_id,
        currency=(order.currency or "").strip().upper(),
        registration_date=_as_date(order.registration_date),
        total_amount=order.total_amount,
        document_reference=order.document_reference or "",
        period_from=_as_date(order.period_from),
        period_to=_as_date(order.period_to),
    )


def item_facts(item: OrderItem) -> ItemFacts:
    return ItemFacts(
        atlas_id=item.atlas_id,
        cashflow=item.cashflow,
        net_amount=item.net_amount,
        vat_amount=item.vat_amount,
        description=item.description or "",
        deal_id=item.deal_id,
        gl_account=item.gl_account or "",
        vat_rate=item.vat_rate,
        period_from=_as_date(item.period_from),
        period_to=_as_date(item.period_to),
        pk=item.pk,
    )


def counterparty_erp_code(counterparty: Counterparty) -> str:
    """The ERP code (the billing_account_num) of `counterparty`, or "" when it is not mapped.

    The same rule as selectors.parties.counterparty_erp_code, over the joined mapping instead of
    a query per order: ATLAS's externalId wins (CONTRACT.md: it is the stable key, and a code
    the ERP register does not know is flagged for a person but still used); otherwise the
    approved mapping's code, written back to ATLAS or not yet.
    """
    external_id = (counterparty.external_id or "").strip()
    if external_id:
        return external_id
    try:
        mapping = counterparty.erp_mapping
    except Counterparty.erp_mapping.RelatedObjectDoesNotExist:
        return ""
    return (mapping.erp_code or "").strip()


def counterparty_entry_values(counterparty: Counterparty, *, keys: Mapping[int, str]) -> dict:
    """The counterparty's custom field values under their mapped entry_values keys."""
    values: dict[str, Any] = {}
    prefetched = getattr(counterparty, "prefetched_custom_field_values", None)
    for value in prefetched if prefetched is not None else counterparty.custom_field_values.all():
        key = keys.get(value.definition_id) if value.definition_id else None
        if key:
            values[key] = value.value
    return values


@dataclass
class JournalPlan:
    """What building an order would store — or why it cannot (problem) or must wait."""

    order_sync: OrderSync
    # Every problem found, most important first (the order validation runs in).
    problems: list[JournalProblem] = field(default_factory=list)
    waiting_on: list[int] = field(default_factory=list)
    lines: list[LineDraft] = field(default_factory=list)
    facts: OrderFacts | None = None
    landed_period: str = ""

    @property
    def problem(self) -> JournalProblem | None:
        """The first problem: the order's blocked_reason (for filtering)."""
        return self.problems[0] if self.problems else None

    def problems_json(self) -> list[dict[str, str]]:
        return [
            {"reason": str(p.reason), "message": p.message, "fix_url": p.fix_url}
            for p in self.problems
        ]

    @property
    def fingerprint(self) -> tuple[Any, ...]:
        assert self.facts is not None
        return (
            self.facts.currency,
            self.facts.registration_date,
            tuple(line.fingerprint() for line in self.lines),
        )


def live_items(order: Order) -> list[OrderItem]:
    prefetched = getattr(order, "prefetched_items", None)
    items = prefetched if prefetched is not None else order.items.all()
    return [item for item in items if item.sync_state != SyncState.MISSING]


def _gl_problem(
    *, number: str, line: LineDraft, ctx: BuildContext, item_id: Any
) -> JournalProblem | None:
    account, problem = ctx.gl_check(number)
    where = f"Item {item_id} ({ROLE_WORDS[line.role]})"
    if problem is None and account is not None:
        role_problem = account_role_problem(role=line.role, account=account)
        if role_problem is None:
            return None
        return JournalProblem(
            BlockedReason.WRONG_ACCOUNT_ROLE,
            f"{where}: {role_problem} Set the item's glAccount in ATLAS to an account of that "
            "role (or request a master-data correction of the counterparty's), then sync.",
            fix_url_gl_account(number),
        )
    if account is None:
        reason = BlockedReason.UNKNOWN_GL_ACCOUNT
    elif not account.is_posting_account:
        reason = BlockedReason.NON_POSTING_GL_ACCOUNT
    else:
        reason = BlockedReason.INACTIVE_GL_ACCOUNT
    return JournalProblem(reason, f"{where}: {problem}", fix_url_gl_account(number))


def _missing_item_account_problem(
    *,
    line: LineDraft,
    item: OrderItem | None,
    counterparty: Counterparty | None,
    reference: str,
    ctx: BuildContext,
) -> JournalProblem:
    """Why an item has no revenue/expense account, naming what was looked at and the fix."""
    role = line.role
    setting = "default_revenue_account" if role is LineRole.REVENUE else "default_expense_account"
    variable = (
        "LEDGER_ACCOUNT_DEFAULT_REVENUE"
        if role is LineRole.REVENUE
        else "LEDGER_ACCOUNT_DEFAULT_EXPENSE"
    )
    fallback = ((counterparty.gl_account if counterparty else "") or "").strip()
    who = (
        f"its counterparty {counterparty.name} (ATLAS {counterparty.atlas_id})"
        if counterparty is not None
        else "its counterparty"
    )
    if fallback:
        account, problem = ctx.gl_check(fallback)
        why = problem or (
            account_role_problem(role=role, account=account) if account is not None else None
        )
        return JournalProblem(
            BlockedReason.WRONG_ACCOUNT_ROLE,
            f"Item {line.item_atlas_id} of order {reference} has no GL account of its own, and "
            f"the account {fallback} of {who} cannot take its {ROLE_WORDS[role]} line"
            f"{': ' + why if why else ''} Set glAccount on the item in ATLAS, or set the "
            f"default {ROLE_WORDS[role]} account ({setting}, initially {variable}) in the "
            "posting settings.",
            fix_url_posting_settings(),
        )
    return JournalProblem(
        BlockedReason.MISSING_GL_ACCOUNT,
        f"Item {line.item_atlas_id} of order {reference} has no GL account, and neither has "
        f"{who}; set glAccount on the item or the counterparty in ATLAS (or request a "
        f"master-data correction), or set the default {ROLE_WORDS[role]} account "
        f"({setting}) in the posting settings, then sync.",
        fix_url_counterparty(counterparty) if counterparty is not None else "",
    )


def journal_plan(*, order_sync: OrderSync, ctx: BuildContext) -> JournalPlan:
    """Everything that decides the journal of one order, without writing anything.

    Validation reports every problem of the order at once (plan.problems), most important
    first: a person fixes them in one go instead of meeting them one per cycle. Only what makes
    the rest meaningless stops it early: items still under review (the order waits), no item
    to book.
    """
    plan = JournalPlan(order_sync=order_sync)
    order = order_sync.order
    reference = order.document_reference or f"ATLAS order {order.atlas_id}"
    problems = plan.problems

    def add(reason: str, message: str, fix_url: str = "") -> None:
        if all(p.message != message for p in problems):
            problems.append(JournalProblem(reason, message, fix_url))

    if order.sync_state == SyncState.INVALID:
        add(
            BlockedReason.INVALID_RECORD,
            f"Order {reference} no longer reads correctly from ATLAS: {order.sync_error}",
            fix_url_order(order),
        )
    items = live_items(order)
    plan.waiting_on = sorted(
        item.atlas_id
        for item in items
        if item.status in (OrderItem.Status.CALCULATED, OrderItem.Status.EDITED)
    )
    if plan.waiting_on:
        plan.problems = []
        return plan
    bookable = [item for item in items if item.status == OrderItem.Status.IN_ORDER]
    for item in bookable:
        if item.sync_state == SyncState.INVALID:
            add(
                BlockedReason.INVALID_RECORD,
                f"Item {item.atlas_id} of order {reference} no longer reads correctly from "
                f"ATLAS: {item.sync_error}",
                fix_url_order(order),
            )
    if not bookable:
        add(
            BlockedReason.NO_BOOKABLE_ITEMS,
            f"Order {reference} has no item In order; there is nothing to book. "
            "Put its items in the order in ATLAS, or move the order out of the trigger status.",
            fix_url_order(order),
        )
        return plan
    for item in bookable:
        if item.cashflow not in (Cashflow.ACTIVE, Cashflow.PASSIVE):
            add(
                BlockedReason.INVALID_RECORD,
                f"Item {item.atlas_id} of order {reference} has cashflow {item.cashflow}; only "
                "0 (Active) and 1 (Passive) can be booked.",
                fix_url_order(order),
            )
    bookable = [i for i in bookable if i.cashflow in (Cashflow.ACTIVE, Cashflow.PASSIVE)]
    counterparty = order.counterparty
    erp_code = counterparty_erp_code(counterparty) if counterparty is not None else ""
    for problem in _counterparty_problems(order, erp_code=erp_code, reference=reference):
        add(problem.reason, problem.message, problem.fix_url)
    facts = order_facts(order)
    plan.facts = facts
    if (
        ctx.ledger is not None
        and (ctx.ledger.convert_currency or "").upper() == "NONE"
        and ctx.ledger.conversion_currency
        and facts.currency != ctx.ledger.conversion_currency
    ):
        add(
            BlockedReason.CURRENCY_MISMATCH,
            f"Order {reference} is in {facts.currency}, but AR Ledger {ctx.ledger} books in "
            f"{ctx.ledger.conversion_currency} and does not convert currencies.",
            fix_url_order(order),
        )
    items_facts = [item_facts(item) for item in bookable]
    lines = _plan_lines(
        order=order, facts=facts, items_facts=items_facts, erp_code=erp_code, ctx=ctx
    )
    plan.lines = lines
    for problem in journal_lines_problems(order=facts, items=items_facts, lines=lines):
        add(problem.reason, problem.message, problem.fix_url or fix_url_order(order))
    if not lines:
        add(
            BlockedReason.NO_BOOKABLE_ITEMS,
            f"Every amount of order {reference} is zero and the AR Ledger does not create "
            "zero-amount entries; there is nothing to book.",
            fix_url_order(order),
        )
    for problem in _account_problems(
        lines=lines, bookable=bookable, counterparty=counterparty, reference=reference, ctx=ctx
    ):
        add(problem.reason, problem.message, problem.fix_url)
    return _plan_period(plan=plan, ctx=ctx, reference=reference)


def _counterparty_problems(
    order: Order, *, erp_code: str, reference: str
) -> Iterator[JournalProblem]:
    """The order's counterparty is not in the mirror, or is not mapped to an ERP code."""
    counterparty = order.counterparty
    if counterparty is None:
        yield JournalProblem(
            BlockedReason.UNKNOWN_COUNTERPARTY,
            f"Order {reference} belongs to ATLAS counterparty {order.counterparty_atlas_id}, "
            "which is not in the mirror; sync ATLAS (sync_atlas) so the counterparty is read.",
            fix_url_order(order),
        )
    elif not erp_code:
        yield JournalProblem(
            BlockedReason.UNMATCHED_COUNTERPARTY,
            f"Counterparty {counterparty.name} (ATLAS {counterparty.atlas_id}) of order "
            f"{reference} is not mapped to an ERP customer/vendor code; approve a match or "
            "create the ERP party on the counterparty matching page.",
            fix_url_counterparty_matching(counterparty),
        )


def _plan_lines(
    *,
    order: Order,
    facts: OrderFacts,
    items_facts: list[ItemFacts],
    erp_code: str,
    ctx: BuildContext,
) -> list[LineDraft]:
    """The pure builder over the order's facts, its counterparty's and the batch context."""
    counterparty = order.counterparty
    counterparty_facts = (
        CounterpartyFacts(
            atlas_id=counterparty.atlas_id,
            name=counterparty.name,
            gl_account=counterparty.gl_account or "",
        )
        if counterparty is not None
        else CounterpartyFacts(atlas_id=order.counterparty_atlas_id or 0)
    )
    return build_journal_lines(
        order=facts,
        items=items_facts,
        counterparty=counterparty_facts,
        mapping_code=erp_code,
        control_accounts=ctx.control_accounts,
        custom_field_values=(
            counterparty_entry_values(counterparty, keys=ctx.custom_field_keys)
            if counterparty is not None
            else {}
        ),
        zero_amount_entries=ctx.zero_amount_entries,
        account_fits=ctx.account_fits,
    )


def _account_problems(
    *,
    lines: Sequence[LineDraft],
    bookable: Sequence[OrderItem],
    counterparty: Counterparty | None,
    reference: str,
    ctx: BuildContext,
) -> Iterator[JournalProblem]:
    """What is wrong with the GL accounts of the lines: control accounts first (one fix in the
    posting settings clears every order), then each item's account."""
    for line in lines:
        if line.role not in CONTROL_ROLES:
            continue
        setting = CONTROL_ROLE_FIELDS[line.role]
        if not line.gl_account:
            yield JournalProblem(
                BlockedReason.MISSING_CONTROL_ACCOUNT,
                f"The {ROLE_WORDS[line.role]} control account is not set in the posting "
                f"settings ({setting}); order {reference} needs it.",
                fix_url_posting_settings(),
            )
            continue
        account, problem = ctx.gl_check(line.gl_account)
        if problem is None and account is not None:
            problem = account_role_problem(role=line.role, account=account)
        if problem:
            yield JournalProblem(
                BlockedReason.MISSING_CONTROL_ACCOUNT,
                f"The {ROLE_WORDS[line.role]} control account of the posting settings "
                f"({setting}) cannot be used: {problem}",
                fix_url_posting_settings(),
            )
    items_by_id = {item.atlas_id: item for item in bookable}
    for line in lines:
        if line.role in CONTROL_ROLES:
            continue
        if not line.gl_account:
            yield _missing_item_account_problem(
                line=line,
                item=items_by_id.get(line.item_atlas_id),
                counterparty=counterparty,
                reference=reference,
                ctx=ctx,
            )
            continue
        problem = _gl_problem(
            number=line.gl_account,
            line=line,
            ctx=ctx,
            item_id=line.item_atlas_id,
        )
        if problem:
            yield JournalProblem(
                problem.reason, f"Order {reference}: {problem.message}", problem.fix_url
            )


def _plan_period(*, plan: JournalPlan, ctx: BuildContext, reference: str) -> JournalPlan:
    assert plan.facts is not None
    on = plan.facts.registration_date
    if ctx.ledger is None:
        plan.problems.append(
            JournalProblem(
                BlockedReason.NO_OPEN_PERIOD,
                f"AR Ledger {settings.GOTRANSVERSE_LEDGER_ID} (GOTRANSVERSE_LEDGER_ID) is not in "
                "the mirror, so no accounting period is known; sync the Gotransverse reference "
                "data (sync_gotransverse).",
                fix_url_periods(ledger=None),
            )
        )
        return plan
    landing = ctx.landing(on)
    if landing.landing is None:
        plan.problems.append(
            JournalProblem(
                BlockedReason.NO_OPEN_PERIOD,
                f"Order {reference}: {landing.problem}",
                fix_url_periods(
                    ledger=ctx.ledger, period_pk=landing.period.pk if landing.period else None
                ),
            )
        )
        return plan
    if landing.rolled_forward:
        if ctx.posting_settings.closed_period_policy != ClosedPeriodPolicy.ROLL_FORWARD:
            assert landing.period is not None
            plan.problems.append(
                JournalProblem(
                    BlockedReason.CLOSED_PERIOD,
                    f"Order {reference} is dated {on:%Y-%m-%d}, in the closed accounting "
                    f"period {landing.period.name}. Reopen the period in Gotransverse (then "
                    "sync), or set the closed-period policy to roll forward in the posting "
                    f"settings so it is posted into {landing.landing.name}.",
                    fix_url_periods(ledger=ctx.ledger, period_pk=landing.period.pk),
                )
            )
            return plan
        plan.landed_period = landing.landing.name
        return plan
    plan.landed_period = landing.landing.name
    return plan


__all__ = [
    "BuildContext",
    "JournalPlan",
    "counterparty_entry_values",
    "counterparty_erp_code",
    "item_facts",
    "journal_plan",
    "order_facts",
]
