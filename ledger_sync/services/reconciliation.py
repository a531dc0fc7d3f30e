"""Reconciliation: ATLAS, ledger_sync and the AR Ledger agree, or a person sees the difference.

`reconciliation_run` compares, for one accounting period (`YYYY-MM`) or for all of them:
1. per order and posted journal — ATLAS's order now vs our journal vs the ledger's transaction;
2. per GL account and period — Σ our posted lines vs the ledger's entries vs its balance;
3. per counterparty — ATLAS invoices - payments vs our open items vs the ledger's
   receivable/payable entries for that billing account.
services/reconciliation_checks.py holds the rules and says how each figure is computed.

Remote reads are paged and bounded, never one per order:
- ATLAS: one fresh mirror pass (services/atlas_mirror.py, batched reads: ids in arrays), then
  every ATLAS figure comes from the mirror;
- AR Ledger: the posted transactions, listed once with their entries (`GET
  .../accounting-transactions`, 50 per page; with a period, `accounting_period_to` = its last
  day, so that level 3 is cumulative to the period's end) and indexed by reference locally;
  plus one `GET .../balance` per reconciled period (every account in one answer).
So a reconciliation makes ⌈T / 50⌉ + P AR Ledger calls (T transactions in the ledger up to the
period's end, P periods compared) and the ATLAS calls of one mirror pass.

A run is recorded as a ReconciliationRun — also when it finds nothing, and also when it
fails (status FAILED with the remote error), so the admin shows both. Each difference is a
ReconciliationDifference whose `key` is the same in every run that finds it.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from integration.atlas.errors import AtlasError
from integration.gotransverse.errors import GotransverseError
from ledger_sync.errors import ApplicationError
from ledger_sync.models import (
    Journal,
    Ledger,
    PostingSettings,
    Problem,
    ReconciliationDifference,
    ReconciliationRun,
    SyncRun,
)
from ledger_sync.selectors import reconciliation as read
from ledger_sync.services import reconciliation_checks as checks
from ledger_sync.services.admin_links import admin_url
from ledger_sync.services.atlas_mirror import AtlasMirrorAlreadyRunning, atlas_mirror_run
from ledger_sync.services.problems import problems_refresh_safely
from ledger_sync.services.remote import (
    atlas_client_from_settings,
    gotransverse_client_from_settings,
)
from ledger_sync.services.settlement_plan import SETTLEMENT_REFERENCE_PREFIX, settlement_reference

logger = logging.getLogger(__name__)

PERIOD_PATTERN = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


class ReconciliationPeriodInvalid(ApplicationError):
    """--period is malformed or names no mirrored accounting period."""


@dataclass(frozen=True)
class _Scope:
    period: checks.PeriodFacts | None  # None: every period

    def includes(self, period_id: int | None) -> bool:
        return self.period is None or period_id == self.period.id

    def up_to_end(self, period: checks.PeriodFacts | None) -> bool:
        """Level 3 is cumulative: everything landed up to the reconciled period's end."""
        if self.period is None:
            return True
        return period is not None and period.end <= self.period.end


def reconciliation_run(
    *,
    trigger: str,
    period: str | None = None,
    user: Any = None,
    atlas_client: Any = None,
    gotransverse_client: Any = None,
    mirror_atlas: bool = True,
) -> ReconciliationRun:
    """Reconcile `period` (YYYY-MM; None = every period) and record the run and its
    differences. Raises ReconciliationPeriodInvalid for a bad period (nothing recorded); a
    remote failure is recorded on the run (status FAILED) and the run is returned."""
    ledger = _ledger()
    periods = read.reconciliation_periods(ledger=ledger)
    scope = _Scope(period=_period(period, periods))
    # Built before the run is recorded: a configuration error raises instead of leaving a run
    # RUNNING for ever.
    atlas_client = atlas_client or (atlas_client_from_settings() if mirror_atlas else None)
    gotransverse_client = gotransverse_client or gotransverse_client_from_settings()
    run = ReconciliationRun.objects.create(
        trigger=trigger,
        user=user if getattr(user, "pk", None) else None,
        period=period or "",
        started_at=timezone.now(),
    )
    atlas_before = _requests(atlas_client)
    ledger_before = _requests(gotransverse_client)
    try:
        notes = _mirror_atlas(atlas_client, trigger=trigger, user=user) if mirror_atlas else []
        listing_started = timezone.now()
        ledger_transactions = _ledger_transactions(gotransverse_client, ledger, scope)
        # Read after the ledger, so that nothing we posted before the listing is missed; a
        # journal posted while the listing ran is left to the next run (it may or may not be
        # in the listing), and its reference is not taken for a stray.
        journals, in_flight = read.reconciliation_journals(
            periods=periods, posted_before=listing_started
        )
        compared = _compared_periods(scope, periods, ledger_transactions, journals)
        balances = _balances(gotransverse_client, ledger, compared)
        findings, counts = _compare(
            periods=periods,
            scope=scope,
            compared=compared,
            journals=journals,
            in_flight=in_flight,
            ledger_transactions=ledger_transactions,
            balances=balances,
        )
        _store_done(
            run,
            findings=findings,
            counts=counts,
            ledger_transactions_read=len(ledger_transactions),
            notes=notes,
            atlas_calls=_requests(atlas_client) - atlas_before,
            ledger_calls=_requests(gotransverse_client) - ledger_before,
        )
    except (GotransverseError, AtlasError, ApplicationError) as exc:
        message = getattr(exc, "message", None) or str(exc)
        _finish_failed(run, message, atlas_client, gotransverse_client, atlas_before, ledger_before)
        logger.warning("reconciliation.failed", extra={"run_id": run.pk, "error": message})
        return run
    except Exception as exc:
        _finish_failed(
            run, f"{type(exc).__name__}: {exc}", atlas_client, gotransverse_client,
            atlas_before, ledger_before,
        )  # fmt: skip
        raise
    # The differences reach the error queue now, not at its next scheduled refresh.
    problems_refresh_safely(kinds=[Problem.Kind.RECONCILIATION])
    logger.info(
        "reconciliation.done",
        extra={
            "run_id": run.pk,
            "period": run.period or "all",
            "differences": run.difference_count,
            "ledger_calls": run.ledger_calls,
            "atlas_calls": run.atlas_calls,
        },
    )
    return run


# --- reading -------------------------------------------------------------------------------------


def _ledger() -> Ledger:
    ledger = Ledger.objects.filter(gotransverse_id=int(settings.GOTRANSVERSE_LEDGER_ID)).first()
    if ledger is None:
        raise ApplicationError(
            f"The AR Ledger {settings.GOTRANSVERSE_LEDGER_ID} is not mirrored yet: run "
            f"`python manage.py sync_gotransverse` first.",
            details={"field": "GOTRANSVERSE_LEDGER_ID"},
        )
    return ledger


def _period(text: str | None, periods: read.PeriodIndex) -> checks.PeriodFacts | None:
    if not text:
        return None
    match = PERIOD_PATTERN.match(text.strip())
    if not match:
        raise ReconciliationPeriodInvalid(
            f"period {text!r} is not a month: give it as YYYY-MM, e.g. 2026-03.",
            details={"field": "period"},
        )
    first_day = date(int(match.group(1)), int(match.group(2)), 1)
    found = periods.for_date(first_day)
    if found is None:
        raise ReconciliationPeriodInvalid(
            f"period {text}: the AR Ledger has no accounting period on {first_day} in the "
            f"mirror; run `python manage.py sync_gotransverse`, or pick a month of its calendar.",
            details={"field": "period"},
        )
    return found


def _mirror_atlas(client: Any, *, trigger: str, user: Any) -> list[str]:
    """A fresh ATLAS mirror pass, so that "ATLAS now" is now. A pass already running is not
    waited for (the mirror as it stands is compared, and the run says so); a failed pass fails
    the reconciliation, since stale invoices and payments would show false differences."""
    try:
        # The mirror run is recorded with our trigger when it is one SyncRun knows.
        mirror_trigger = trigger if trigger in SyncRun.Trigger.values else SyncRun.Trigger.COMMAND
        mirror = atlas_mirror_run(client=client, trigger=mirror_trigger, user=user)
    except AtlasMirrorAlreadyRunning as running:
        return [f"ATLAS mirror pass already running: {running.message}"]
    if mirror.status == SyncRun.Status.FAILED:
        raise ApplicationError(
            f"ATLAS could not be mirrored (sync run {mirror.pk}): {mirror.error or 'see the run'}",
            details={"sync_run_id": mirror.pk},
        )
    return []


def _ledger_transactions(
    client: Any, ledger: Ledger, scope: _Scope
) -> list[checks.LedgerTransaction]:
    pages = client.list_transactions(
        ledger.gotransverse_id,
        accounting_period_to=scope.period.end if scope.period else None,
    )
    found = []
    for record in pages:
        found.append(
            checks.LedgerTransaction(
                id=record.id,
                reference=record.source_transaction_reference or "",
                lines=[
                    checks.Line(
                        account=entry.gl_account_num or "",
                        credit=entry.credit,
                        amount=entry.amount.amount,
                        currency=(entry.amount.currency or "").upper(),
                        billing=entry.billing_account_num or "",
                    )
                    for entry in record.entries
                ],
                period_ids=tuple(entry.accounting_period_id for entry in record.entries),
            )
        )
    if pages.errors:
        raise ApplicationError(
            f"{len(pages.errors)} AR Ledger transaction(s) could not be read, so the ledger "
            f"cannot be reconciled: {pages.errors[0]}",
            details={"errors": [str(e) for e in pages.errors[:20]]},
        )
    return found


def _compared_periods(
    scope: _Scope,
    periods: read.PeriodIndex,
    ledger: list[checks.LedgerTransaction],
    journals: list[checks.OurJournal],
) -> list[checks.PeriodFacts]:
    if scope.period is not None:
        return [scope.period]
    ids = {pid for t in ledger for pid in t.period_ids if pid is not None}
    ids |= {j.period_id for j in journals if j.period_id is not None}
    return [p for p in periods.periods if p.id in ids]


def _balances(
    client: Any, ledger: Ledger, compared: list[checks.PeriodFacts]
) -> dict[tuple[int, str, str], Decimal]:
    """One balance call per period: every account's debit-positive balance in it."""
    balances: dict[tuple[int, str, str], Decimal] = {}
    for period in compared:
        for line in client.get_balance(
            ledger.gotransverse_id,
            amount_type="DEBIT",
            start_date=period.start,
            end_date=period.end,
            include_parent_accounts="EXCLUDE",
        ):
            currency = (line.currency or "").upper()
            key = (period.id, line.gl_account_number or "", currency)
            balances[key] = balances.get(key, Decimal("0.00")) + line.amount_in(currency)
    return balances


def _requests(client: Any) -> int:
    stats = getattr(client, "stats", None)
    return int(getattr(stats, "requests", 0) or 0)


# --- comparing -----------------------------------------------------------------------------------


def _control_accounts() -> frozenset[str]:
    row = PostingSettings.load()
    return frozenset(n for n in (row.receivables_account, row.payables_account) if n)


def _compare(
    *,
    periods: read.PeriodIndex,
    scope: _Scope,
    compared: list[checks.PeriodFacts],
    journals: list[checks.OurJournal],
    in_flight: set[str],
    ledger_transactions: list[checks.LedgerTransaction],
    balances: dict[tuple[int, str, str], Decimal],
) -> tuple[list[checks.Finding], dict[str, int]]:
    control = _control_accounts()
    if in_flight:
        ledger_transactions = [t for t in ledger_transactions if t.reference not in in_flight]
    current = {j.order_pk for j in journals if j.is_current_posting and j.order_pk}
    atlas_orders = read.reconciliation_orders(order_pks=current)
    level1 = checks.order_findings(
        journals=journals,
        ledger=ledger_transactions,
        atlas_orders=atlas_orders,
        control_accounts=control,
        in_scope=scope.includes,
        unposted_references=read.reference_journals_unposted(),
    )
    level2, accounts = checks.account_findings(
        journals=journals,
        ledger=ledger_transactions,
        balances=balances,
        periods=compared,
        explained_by=level1,
    )
    cumulative = [j for j in journals if scope.up_to_end(periods.by_id(j.period_id))]
    facts = _counterparty_facts(cumulative, ledger_transactions, control, scope)
    level3, counterparties = checks.counterparty_findings(facts=facts, explained_by=level1)
    for finding in level3:
        finding.details = {k: v for k, v in finding.details.items() if v is not None}
    orders_checked = len({j.order_pk for j in journals if scope.includes(j.period_id)})
    counts = {"orders": orders_checked, "accounts": accounts, "counterparties": counterparties}
    return [*level1, *level2, *level3], counts


def _counterparty_facts(
    journals: list[checks.OurJournal],
    ledger: list[checks.LedgerTransaction],
    control: frozenset[str],
    scope: _Scope,
) -> checks.CounterpartyFacts:
    facts = checks.CounterpartyFacts()
    settled = {j.reference for j in journals if j.reference.startswith(SETTLEMENT_REFERENCE_PREFIX)}
    # Each order's billing account and direction, from its posting journals' control lines.
    order_billing: dict[int, tuple[str, str, int]] = {}
    open_item: dict[int, Decimal] = {}  # the latest posting journal's, by order pk
    for journal in journals:
        for line in journal.lines:
            if line.account in control and line.billing:
                facts.ours[(line.billing, line.currency)] += line.signed
        if journal.kind == Journal.Kind.POSTING and journal.order_pk is not None:
            booked = [ln for ln in journal.lines if ln.account in control and ln.billing]
            if booked:
                balance = sum((ln.signed for ln in booked), Decimal("0.00"))
                sign = -1 if balance < 0 else 1
                order_billing[journal.order_pk] = (booked[0].billing, journal.currency, sign)
                open_item[journal.order_pk] = abs(balance)
    until = scope.period.end if scope.period else None
    money = read.reconciliation_order_money(order_pks=set(order_billing), until=until)
    names = read.order_counterparties(order_pks=set(order_billing))
    # Only an order whose posting is in force expects an invoice: a reversed one does not.
    in_force = {j.order_pk for j in journals if j.is_current_posting}
    on_the_way = read.orders_invoice_on_the_way(order_pks=set(order_billing) & in_force)
    mirrored_at = read.atlas_mirror_last_started()
    for order_pk, (code, currency, sign) in order_billing.items():
        held = money[order_pk]
        key = (code, currency)
        invoiced = held.invoiced
        if not invoiced and order_pk in on_the_way.expected:
            # Posted, and its invoice is on its way to ATLAS: the write-back is queued (the
            # next cycle, or the approval's task, does it) or the supplier's invoice comes from
            # the ERP (services/documents.py). Until then ATLAS is expected to hold the open
            # item; a failed write-back is not expected to heal and stays a difference.
            invoiced = open_item[order_pk]
            facts.invoices_expected[key] += sign * invoiced
        elif not invoiced and order_pk in on_the_way.failed:
            facts.write_backs_failed[key].append(on_the_way.failed[order_pk])
        elif not invoiced and order_pk in on_the_way.written and open_item[order_pk]:
            label, written_at = on_the_way.written[order_pk]
            if mirrored_at is None or written_at >= mirrored_at:
                facts.invoices_not_mirrored[key].append(label)
        facts.atlas[key] += sign * (invoiced - held.atlas_paid)
        for confirmation_pk, amount in held.accepted:
            if settlement_reference(confirmation_pk) not in settled:
                facts.ours[key] -= sign * amount
                facts.unsettled_payments[key] += sign * amount
        counterparty_pk, name = names.get(order_pk, (None, ""))
        if counterparty_pk is not None:
            facts.counterparty_pks.setdefault(code, counterparty_pk)
            facts.labels.setdefault(code, f"{name} ({code})" if name else code)
    for transaction_ in ledger:
        for line in transaction_.lines:
            if line.account in control and line.billing:
                facts.ledger[(line.billing, line.currency)] += line.signed
    return facts


# --- storing -------------------------------------------------------------------------------------


def _store_done(
    run: ReconciliationRun,
    *,
    findings: list[checks.Finding],
    counts: dict[str, int],
    ledger_transactions_read: int,
    notes: list[str],
    atlas_calls: int,
    ledger_calls: int,
) -> None:
    """The differences and the finished run, in one transaction: all of it or none."""
    with transaction.atomic():
        ReconciliationDifference.objects.bulk_create(
            [_row(run, f) for f in findings], batch_size=500
        )
        run.status = ReconciliationRun.Status.DONE
        run.finished_at = timezone.now()
        run.difference_count = len(findings)
        run.orders_checked = counts["orders"]
        run.accounts_checked = counts["accounts"]
        run.counterparties_checked = counts["counterparties"]
        run.ledger_transactions_read = ledger_transactions_read
        run.atlas_calls = atlas_calls
        run.ledger_calls = ledger_calls
        by_kind = Counter(f"{f.level}:{f.kind}" for f in findings)
        run.summary = {"differences": dict(sorted(by_kind.items())), "notes": notes}
        run.save()


def _row(run: ReconciliationRun, finding: checks.Finding) -> ReconciliationDifference:
    counterparty_pk = finding.details.get("counterparty_pk") if finding.level == 3 else None
    return ReconciliationDifference(
        run=run,
        level=finding.level,
        kind=finding.kind,
        key=finding.key[:255],
        record_label=finding.label[:255],
        currency=finding.currency,
        atlas_amount=finding.atlas,
        ours_amount=finding.ours,
        ledger_amount=finding.ledger,
        ledger_balance_amount=finding.ledger_balance,
        amount=finding.amount,
        likely_cause=finding.cause,
        fix_url=_fix_url(finding, counterparty_pk)[:500],
        period=finding.period[:255],
        gl_account=finding.gl_account,
        billing_account_num=finding.billing,
        source_transaction_reference=finding.reference[:64],
        ledger_transaction_ids=finding.ledger_ids,
        order_id=finding.order_pk,
        journal_id=finding.journal_pk,
        counterparty_id=counterparty_pk,
        details={k: v for k, v in finding.details.items() if k != "counterparty_pk"},
    )


def _fix_url(finding: checks.Finding, counterparty_pk: int | None) -> str:
    if finding.kind == checks.ORDER_CHANGED and finding.order_pk is not None:
        return admin_url("order", pk=finding.order_pk)
    if finding.journal_pk is not None:
        return admin_url("journal", pk=finding.journal_pk)
    if finding.level == 1:
        return admin_url("journal", query=f"q={finding.reference}")
    if finding.level == 2:
        return admin_url("glaccount", query=f"number__exact={finding.gl_account}")
    if counterparty_pk is not None:
        return admin_url("counterparty", pk=counterparty_pk)
    return admin_url("counterparty", query=f"q={finding.billing}")


def _finish_failed(
    run: ReconciliationRun,
    message: str,
    atlas_client: Any,
    gotransverse_client: Any,
    atlas_before: int,
    ledger_before: int,
) -> None:
    run.status = ReconciliationRun.Status.FAILED
    run.error = message
    run.difference_count = 0
    run.finished_at = timezone.now()
    run.atlas_calls = _requests(atlas_client) - atlas_before
    run.ledger_calls = _requests(gotransverse_client) - ledger_before
    run.save()
