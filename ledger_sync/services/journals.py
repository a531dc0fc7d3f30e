"""Storing validated journals and moving orders: `order_build_journal` / `orders_build_ready`
apply each order's plan (services/journal_plan.py) — store the Journal and its lines with their
`source_transaction_reference`, or block the order with a reason a person understands and the
admin page that fixes it — and `order_rebuild` makes a new revision on request. Each stage is
safe to re-run. Nothing is sent from here; posting (services/posting.py) only ever sends what was
stored here.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from django.db import connection, transaction
from django.db.models import Prefetch, Q

from integration import wire
from ledger_sync.errors import ApplicationError, InvalidTransition
from ledger_sync.models import (
    Journal,
    JournalLine,
    OrderItem,
    OrderState,
    OrderSync,
    OrderTransition,
)
from ledger_sync.services.journal_plan import BuildContext, JournalPlan, journal_plan
from ledger_sync.services.journal_rules import (
    ENTRY_ITEM_ID,
    MANUAL_ONLY_REASONS,
    lines_totals,
    source_transaction_reference,
    waiting_note,
)
from ledger_sync.services.order_states import (
    BUILDABLE_STATES,
    order_syncs_move_bulk,
    order_transition_apply,
    order_transitions_record,
)

logger = logging.getLogger(__name__)

S = OrderState


def journal_fingerprint(journal: Journal) -> tuple[Any, ...]:
    """The stored journal's content in the form of JournalPlan.fingerprint."""
    prefetched = getattr(journal, "prefetched_lines", None)
    lines = sorted(
        prefetched if prefetched is not None else journal.lines.all(),
        key=lambda line: line.position,
    )
    return (
        journal.currency,
        journal.occurred_on,
        tuple(
            (
                line.side,
                line.gl_account,
                line.amount,
                line.currency,
                line.billing_account_num,
                line.description,
                wire.canonical(line.entry_values),
                (line.entry_values or {}).get(ENTRY_ITEM_ID),
            )
            for line in lines
        ),
    )


def journal_may_have_been_sent(journal: Journal) -> bool:
    """Whether the AR Ledger may hold this journal, so that it must never be superseded.

    DRAFT, POSTED and REVERSED were sent. REJECTED (refused, or its draft deleted) and
    SUPERSEDED are not in the ledger. A BUILT journal is judged by the order's history since
    it was built: its last posting attempt ended with the ledger refusing it (POSTING →
    BLOCKED) — not sent; an attempt that failed, or never ended (a crash between the ledger's
    answer and our record) — possibly sent; no attempt — not sent, unless a request or a
    ledger id was stored for it anyway.
    """
    if journal.status in (Journal.Status.REJECTED, Journal.Status.SUPERSEDED):
        return False
    if journal.status != Journal.Status.BUILT or journal.ledger_transaction_id:
        return True
    last_attempt = (
        OrderTransition.objects.filter(
            order_sync_id=journal.order_sync_id, at__gte=journal.created_at
        )
        .filter(Q(to_state__in=[S.POSTING, S.AWAITING_REVIEW]) | Q(from_state=S.POSTING))
        .order_by("-at", "-id")
        .first()
    )
    if last_attempt is None:
        return bool(journal.request_json)
    refused = last_attempt.from_state == S.POSTING and last_attempt.to_state == S.BLOCKED
    return not refused


def _posting_journals(order_sync: OrderSync) -> list[Journal]:
    prefetched = getattr(order_sync, "prefetched_posting_journals", None)
    if prefetched is not None:
        return list(prefetched)
    return list(order_sync.journals.filter(kind=Journal.Kind.POSTING))


def _current_posting_journal(order_sync: OrderSync, journals: list[Journal]) -> Journal | None:
    for journal in journals:
        if journal.kind == Journal.Kind.POSTING and journal.revision == order_sync.revision:
            return journal
    return None


class Outcome(StrEnum):
    BUILT = "built"  # a new journal (first revision, or after a rejection/reversal)
    REBUILT = "rebuilt"  # a BUILT journal superseded because the order changed
    UNCHANGED = "unchanged"  # the stored BUILT journal is still right
    BLOCKED = "blocked"
    STILL_BLOCKED = "still_blocked"  # same reason and message as before: nothing written
    WAITING = "waiting"
    KEPT_POSSIBLY_SENT = "kept_possibly_sent"
    ALREADY_SENT = "already_sent"
    SKIPPED = "skipped"  # not in a state the builder acts on (another worker moved it)


@dataclass
class _Move:
    """The state changes one order makes in a batch: steps (to_state, note) in order, and the
    fields written with the last step."""

    order_sync: OrderSync
    steps: list[tuple[str, str]] = field(default_factory=list)
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass
class _BatchWrites:
    moves: dict[int, _Move] = field(default_factory=dict)
    journals: list[tuple[Journal, JournalPlan]] = field(default_factory=list)
    superseded: list[int] = field(default_factory=list)
    outcomes: dict[int, tuple[Outcome, Journal | None]] = field(default_factory=dict)


def _load_for_build(pks: Sequence[int]) -> list[OrderSync]:
    # Lock the rows first (PostgreSQL): a worker claiming JOURNAL_BUILT orders for posting
    # skips them, and this batch sees any claim that committed before it.
    locked = list(
        OrderSync.objects.select_for_update().filter(pk__in=pks).values_list("pk", flat=True)
    )
    # Prefetched into plain lists (to_attr): a related manager per order and relation costs
    # more than the rest of the plan at 10,000 orders.
    return list(
        OrderSync.objects.filter(pk__in=locked)
        .select_related("order", "order__counterparty", "order__counterparty__erp_mapping")
        .prefetch_related(
            Prefetch(
                "order__items",
                queryset=OrderItem.objects.only(*_ITEM_FIELDS),
                to_attr="prefetched_items",
            ),
            Prefetch(
                "order__counterparty__custom_field_values",
                to_attr="prefetched_custom_field_values",
            ),
            Prefetch(
                "journals",
                queryset=Journal.objects.filter(kind=Journal.Kind.POSTING).prefetch_related(
                    Prefetch("lines", to_attr="prefetched_lines")
                ),
                to_attr="prefetched_posting_journals",
            ),
        )
        .order_by("pk")
    )


# What building reads of an item (the rest of the mirrored row is not loaded).
_ITEM_FIELDS: tuple[str, ...] = (
    "id",
    "order_id",
    "atlas_id",
    "status",
    "sync_state",
    "sync_error",
    "cashflow",
    "net_amount",
    "vat_amount",
    "vat_rate",
    "description",
    "deal_id",
    "gl_account",
    "period_from",
    "period_to",
)


def _move(
    writes: _BatchWrites,
    order_sync: OrderSync,
    to_state: str,
    *,
    actor: str,
    user: Any,
    note: str,
    **fields: Any,
) -> None:
    """Plan a state change; `_store` makes it. The order's state is left as read until then,
    so every decision of the batch is taken on what was read under the lock."""
    move = writes.moves.setdefault(order_sync.pk, _Move(order_sync=order_sync))
    move.steps.append((to_state, note))
    move.fields.update(fields)


def _apply_plan(
    *, plan: JournalPlan, ctx: BuildContext, writes: _BatchWrites, actor: str, user: Any
) -> None:
    order_sync = plan.order_sync
    if order_sync.state not in BUILDABLE_STATES:
        writes.outcomes[order_sync.pk] = (Outcome.SKIPPED, None)
        return
    if plan.waiting_on or plan.problem is not None:
        if _keep_sent_journal(plan=plan, ctx=ctx, writes=writes, actor=actor, user=user):
            return
        _park(plan=plan, writes=writes, actor=actor, user=user)
        return
    _build_journal(plan=plan, ctx=ctx, writes=writes, actor=actor, user=user)


def _keep_sent_journal(
    *, plan: JournalPlan, ctx: BuildContext, writes: _BatchWrites, actor: str, user: Any
) -> bool:
    order_sync = plan.order_sync
    current = _current_posting_journal(order_sync, _posting_journals(order_sync))
    if current is not None and current.status in (Journal.Status.DRAFT, Journal.Status.POSTED):
        # In the ledger: waiting or blocking it would hide it from the poster and the
        # reviewer; only a rejection (draft) or a reversal (posted) may follow.
        writes.outcomes[order_sync.pk] = (Outcome.ALREADY_SENT, current)
        return True
    if (
        current is not None
        and current.status == Journal.Status.BUILT
        and current.request_json
        and order_sync.pk not in ctx.confirmed_not_in_ledger
        and journal_may_have_been_sent(current)
    ):
        # An interrupted send: the ledger may hold it. Parked as WAITING or BLOCKED,
        # nobody would look it up; the poster does that first (JOURNAL_BUILT).
        _arrive_built(
            writes,
            order_sync,
            actor=actor,
            user=user,
            note=(
                f"{'items back under review' if plan.waiting_on else plan.problem.message}"
                f" — but {current.source_transaction_reference} may already be in the AR "
                "Ledger; kept for the poster to look it up"
            )[:2000],
        )
        writes.outcomes[order_sync.pk] = (Outcome.KEPT_POSSIBLY_SENT, current)
        return True
    return False


def _park(*, plan: JournalPlan, writes: _BatchWrites, actor: str, user: Any) -> None:
    order_sync = plan.order_sync
    if plan.waiting_on:
        _move(
            writes,
            order_sync,
            S.WAITING,
            actor=actor,
            user=user,
            note=waiting_note(plan.waiting_on),
            waiting_on_items=plan.waiting_on,
        )
        writes.outcomes[order_sync.pk] = (Outcome.WAITING, None)
        return
    problem = plan.problem
    problems = plan.problems_json()
    same = (
        order_sync.state == S.BLOCKED
        and order_sync.blocked_reason == problem.reason
        and order_sync.blocked_message == problem.message
        and order_sync.blocked_fix_url == problem.fix_url
        and (order_sync.blocked_problems or []) == problems
    )
    if same:
        writes.outcomes[order_sync.pk] = (Outcome.STILL_BLOCKED, None)
        return
    _move(
        writes,
        order_sync,
        S.BLOCKED,
        actor=actor,
        user=user,
        note=_blocked_note(plan),
        blocked_reason=problem.reason,
        blocked_message=problem.message,
        blocked_fix_url=problem.fix_url,
        blocked_problems=problems,
    )
    writes.outcomes[order_sync.pk] = (Outcome.BLOCKED, None)


def _build_journal(
    *, plan: JournalPlan, ctx: BuildContext, writes: _BatchWrites, actor: str, user: Any
) -> None:
    order_sync = plan.order_sync
    pk = order_sync.pk
    journals = _posting_journals(order_sync)
    current = _current_posting_journal(order_sync, journals)
    revision = order_sync.revision
    outcome = Outcome.BUILT
    if current is not None:
        if current.status in (Journal.Status.DRAFT, Journal.Status.POSTED):
            # Already in the ledger: only a reversal and a new revision may follow. The poster
            # owns that; the builder never makes a second journal for a sent revision.
            logger.error(
                "journal already sent; not rebuilding",
                extra={"order_sync": pk, "journal": current.source_transaction_reference},
            )
            writes.outcomes[pk] = (Outcome.ALREADY_SENT, current)
            return
        if current.status == Journal.Status.BUILT:
            if journal_fingerprint(current) == plan.fingerprint:
                _keep_built(current, plan=plan, ctx=ctx)
                _arrive_built(writes, order_sync, actor=actor, user=user, note="re-validated")
                writes.outcomes[pk] = (Outcome.UNCHANGED, current)
                return
            if pk not in ctx.confirmed_not_in_ledger and journal_may_have_been_sent(current):
                # The ledger may hold it: superseding could post the order twice. Keep it; the
                # poster asks the ledger for its reference before any resend.
                _arrive_built(
                    writes,
                    order_sync,
                    actor=actor,
                    user=user,
                    note=(
                        f"order changed in ATLAS, but {current.source_transaction_reference} "
                        "may already be in the AR Ledger; kept unchanged"
                    ),
                )
                writes.outcomes[pk] = (Outcome.KEPT_POSSIBLY_SENT, current)
                return
            writes.superseded.append(current.pk)
            outcome = Outcome.REBUILT
        revision = max(j.revision for j in journals) + 1
    journal = _new_journal(plan=plan, ctx=ctx, revision=revision)
    writes.journals.append((journal, plan))
    note = (
        f"journal {journal.source_transaction_reference} built"
        if outcome == Outcome.BUILT
        else f"order changed in ATLAS: {current.source_transaction_reference} superseded by "
        f"{journal.source_transaction_reference}"
    )
    fields: dict[str, Any] = {"revision": revision} if revision != order_sync.revision else {}
    _arrive_built(writes, order_sync, actor=actor, user=user, note=note, force=True, **fields)
    writes.outcomes[pk] = (outcome, journal)


def _blocked_note(plan: JournalPlan) -> str:
    """The history note of a block: the first problem, and how many more there are."""
    first = plan.problems[0].message
    more = len(plan.problems) - 1
    return first if not more else f"{first} (and {more} more problem{'s' if more > 1 else ''})"


def _arrive_built(
    writes: _BatchWrites,
    order_sync: OrderSync,
    *,
    actor: str,
    user: Any,
    note: str,
    force: bool = False,
    **fields: Any,
) -> None:
    """Bring the order to JOURNAL_BUILT by the recorded path (BLOCKED → READY → BUILT)."""
    if order_sync.state == S.BLOCKED:
        _move(writes, order_sync, S.READY, actor=actor, user=user, note="cause fixed; rebuilding")
    elif order_sync.state == S.JOURNAL_BUILT:
        if not force:
            return
        _move(writes, order_sync, S.READY, actor=actor, user=user, note="rebuilding")
    _move(writes, order_sync, S.JOURNAL_BUILT, actor=actor, user=user, note=note, **fields)


def _keep_built(journal: Journal, *, plan: JournalPlan, ctx: BuildContext) -> None:
    """Same lines; keep the journal and its reference, refresh what may change meanwhile
    (the workflow chosen, the period it lands in)."""
    workflow = ctx.posting_settings.journal_workflow
    if journal.workflow != workflow or journal.landed_period != plan.landed_period:
        journal.workflow = workflow
        journal.landed_period = plan.landed_period
        Journal.objects.filter(pk=journal.pk, status=Journal.Status.BUILT).update(
            workflow=workflow, landed_period=plan.landed_period
        )


def _new_journal(*, plan: JournalPlan, ctx: BuildContext, revision: int) -> Journal:
    assert plan.facts is not None
    debit, credit = lines_totals(plan.lines)
    return Journal(
        order_sync=plan.order_sync,
        revision=revision,
        kind=Journal.Kind.POSTING,
        status=Journal.Status.BUILT,
        source_transaction_reference=source_transaction_reference(
            atlas_order_id=plan.facts.atlas_id, revision=revision
        ),
        workflow=ctx.posting_settings.journal_workflow,
        currency=plan.facts.currency,
        total_debit=debit,
        total_credit=credit,
        occurred_on=plan.facts.registration_date,
        event_date=plan.facts.registration_date,
        landed_period=plan.landed_period,
    )


def _store(writes: _BatchWrites, *, actor: str, user: Any) -> None:
    transitions = _store_moves(writes, actor=actor, user=user)
    if writes.superseded:
        Journal.objects.filter(pk__in=writes.superseded, status=Journal.Status.BUILT).update(
            status=Journal.Status.SUPERSEDED
        )
    if writes.journals:
        Journal.objects.bulk_create([journal for journal, _ in writes.journals], batch_size=500)
        _lines_insert(writes.journals)
    order_transitions_record(transitions)


def _store_moves(writes: _BatchWrites, *, actor: str, user: Any) -> list[OrderTransition]:
    """Make the planned state changes: one compare-and-set UPDATE per group of orders moving
    the same way (the common case: READY → JOURNAL_BUILT), one per order that also writes
    fields (a block, a new revision, the waiting list)."""
    transitions: list[OrderTransition] = []
    groups: dict[tuple[str, tuple[str, ...]], list[_Move]] = {}
    for move in writes.moves.values():
        path = tuple(to_state for to_state, _ in move.steps)
        if move.fields or S.BLOCKED in path:
            for index, (to_state, note) in enumerate(move.steps):
                last = index == len(move.steps) - 1
                transitions.append(
                    order_transition_apply(
                        order_sync=move.order_sync,
                        to_state=to_state,
                        actor=actor,
                        user=user,
                        note=note,
                        **(move.fields if last else {}),
                    )
                )
            continue
        groups.setdefault((move.order_sync.state, path), []).append(move)
    for (_, path), moves in groups.items():
        transitions += order_syncs_move_bulk(
            order_syncs=[move.order_sync for move in moves],
            path=path,
            notes=[[note for _, note in move.steps] for move in moves],
            actor=actor,
            user=user,
        )
    return transitions


_LINE_COLUMNS: tuple[str, ...] = (
    "journal",
    "position",
    "side",
    "gl_account",
    "amount",
    "currency",
    "billing_account_num",
    "description",
    "entry_values",
    "order_item",
)


def _lines_insert(journals: Sequence[tuple[Journal, JournalPlan]]) -> None:
    """Insert the lines of freshly created journals with one executemany.

    A journal of five items has fifteen lines: a cycle over 10,000 orders inserts 150,000 rows,
    and bulk_create's per-row model and SQL work would dominate the whole build. Values are
    adapted by the fields themselves, so every backend gets what the ORM would send.
    """
    meta = JournalLine._meta
    fields = [meta.get_field(name) for name in _LINE_COLUMNS]
    quote = connection.ops.quote_name
    # Table and column names come from the model, every value is a parameter.
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) "  # noqa: S608
        f"VALUES ({', '.join(['%s'] * len(fields))})"
    )
    adapt_amount = connection.ops.adapt_decimalfield_value
    values_field = meta.get_field("entry_values")
    rows = [
        (
            journal.pk,
            position,
            str(line.side),
            line.gl_account,
            adapt_amount(line.amount, 18, 2),
            line.currency,
            line.billing_account_num,
            line.description,
            values_field.get_db_prep_value(line.entry_values, connection),
            line.item_pk,
        )
        for journal, plan in journals
        for position, line in enumerate(plan.lines, start=1)
    ]
    with connection.cursor() as cursor:
        for start in range(0, len(rows), 5000):
            cursor.executemany(sql, rows[start : start + 5000])


@transaction.atomic
def _order_syncs_build(
    *, pks: Sequence[int], actor: str, user: Any, ctx: BuildContext
) -> dict[int, tuple[Outcome, Journal | None]]:
    writes = _BatchWrites()
    for order_sync in _load_for_build(pks):
        plan = journal_plan(order_sync=order_sync, ctx=ctx)
        _apply_plan(plan=plan, ctx=ctx, writes=writes, actor=actor, user=user)
    _store(writes, actor=actor, user=user)
    return writes.outcomes


def order_build_journal(*, order_sync: OrderSync, actor: str, user: Any = None) -> Journal | None:
    """Build, validate and store the journal of one order; or block it, or send it back to
    WAITING. Returns the journal to post (status BUILT), or None when there is none.

    Idempotent: an unchanged order keeps its BUILT journal and reference. A changed one gets a
    new revision and the old BUILT journal is SUPERSEDED — unless it may already be in the AR
    Ledger, in which case it is kept for the poster to resolve. A DRAFT or POSTED journal is
    never rebuilt (ApplicationError).
    """
    if order_sync.state not in (S.READY, S.JOURNAL_BUILT):
        raise InvalidTransition(
            f"Order {order_sync.order_id} is {order_sync.state}; a journal is built from "
            f"{S.READY} (or re-validated in {S.JOURNAL_BUILT}). Use order_rebuild for a "
            "blocked order.",
            details={"order_sync": order_sync.pk, "from": order_sync.state},
        )
    return _build_one(order_sync=order_sync, actor=actor, user=user)


def _build_one(
    *, order_sync: OrderSync, actor: str, user: Any, confirmed_not_in_ledger: bool = False
) -> Journal | None:
    ctx = BuildContext()
    if confirmed_not_in_ledger:
        ctx.confirmed_not_in_ledger.add(order_sync.pk)
    outcomes = _order_syncs_build(pks=[order_sync.pk], actor=actor, user=user, ctx=ctx)
    order_sync.refresh_from_db()
    outcome, journal = outcomes.get(order_sync.pk, (Outcome.SKIPPED, None))
    if outcome == Outcome.ALREADY_SENT:
        assert journal is not None
        way_out = (
            "reject the draft (which deletes it in the ledger), then rebuild"
            if journal.status == Journal.Status.DRAFT
            else "correct it with a reversal, not a rebuild"
        )
        raise ApplicationError(
            f"Order {order_sync.order_id}: journal {journal.source_transaction_reference} is "
            f"already {journal.status} in the AR Ledger; {way_out}.",
            details={"order_sync": order_sync.pk, "journal": journal.pk},
        )
    if outcome in (Outcome.BUILT, Outcome.REBUILT, Outcome.UNCHANGED, Outcome.KEPT_POSSIBLY_SENT):
        return journal
    return None


def order_rebuild(
    *,
    order_sync: OrderSync,
    actor: str,
    user: Any = None,
    confirmed_not_in_ledger: bool = False,
) -> Journal | None:
    """Re-evaluate an order after its cause was fixed ("rebuild" in the admin): BLOCKED (any
    reason, including a remote rejection), FAILED, READY or JOURNAL_BUILT → READY → build.

    The same path the next cycle takes; it unblocks only when the cause is really gone, else
    the order stays blocked (with the current reason). `confirmed_not_in_ledger`: the caller
    has just asked the AR Ledger for the current journal's reference and it is not there, so a
    changed order may supersede it even though an earlier attempt to send it was interrupted.
    """
    if order_sync.state == S.FAILED:
        with transaction.atomic():
            order_transition_apply(
                order_sync=order_sync, to_state=S.READY, actor=actor, user=user, note="rebuild"
            ).save()
    if order_sync.state not in BUILDABLE_STATES:
        raise InvalidTransition(
            f"Order {order_sync.order_id} is {order_sync.state}; only a blocked, failed, ready "
            "or built order can be rebuilt.",
            details={"order_sync": order_sync.pk, "from": order_sync.state},
        )
    return _build_one(
        order_sync=order_sync,
        actor=actor,
        user=user,
        confirmed_not_in_ledger=confirmed_not_in_ledger,
    )


def orders_build_ready(
    *,
    actor: str = "system:run_cycle",
    batch_size: int = 500,
    order_sync_ids: Iterable[int] | None = None,
) -> dict[str, int]:
    """The cycle's build stage: every READY order, every JOURNAL_BUILT one (re-validated, so a
    period closed or an order changed since is caught before sending) and every order blocked
    for a cause that may have been fixed meanwhile. Returns counts per Outcome.

    `order_sync_ids` narrows it to those orders (the re-check after a fix, services/rechecks.py).
    """
    rebuildable = OrderSync.objects.filter(
        Q(state__in=[S.READY, S.JOURNAL_BUILT])
        | (Q(state=S.BLOCKED) & ~Q(blocked_reason__in=MANUAL_ONLY_REASONS))
    )
    if order_sync_ids is not None:
        rebuildable = rebuildable.filter(pk__in=list(order_sync_ids))
    pks = list(rebuildable.order_by("pk").values_list("pk", flat=True))
    counts: Counter[str] = Counter()
    ctx = BuildContext()
    for start in range(0, len(pks), batch_size):
        outcomes = _order_syncs_build(
            pks=pks[start : start + batch_size], actor=actor, user=None, ctx=ctx
        )
        counts.update(str(outcome) for outcome, _ in outcomes.values())
    return dict(counts)


__all__ = [
    "Outcome",
    "journal_may_have_been_sent",
    "order_build_journal",
    "order_rebuild",
    "orders_build_ready",
]
