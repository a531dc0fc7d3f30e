"""Reads over the mirrored Gotransverse reference data: periods, landings, GL accounts.

Only records still present in the AR Ledger count: a period or account the last mirror pass
marked MISSING is treated as absent. One marked INVALID (the AR Ledger sent it, but it could
not be read) is never relied on: what it would mean is unknown, so it is reported as a problem.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from django.db.models import QuerySet

from ledger_sync.models import (
    AccountingPeriod,
    GLAccount,
    Ledger,
    RecordChange,
    SyncRun,
    SyncState,
)


def gotransverse_record_history(
    *, entity: str, gotransverse_id: int, limit: int = 200
) -> list[RecordChange]:
    """The observed changes of one mirrored AR Ledger record, newest first (with its run)."""
    return list(
        RecordChange.objects.filter(
            system=SyncRun.System.GOTRANSVERSE, entity=entity, remote_id=str(gotransverse_id)
        )
        .select_related("sync_run")
        .order_by("-changed_at", "-id")[:limit]
    )


def live_periods(*, ledger: Ledger) -> QuerySet[AccountingPeriod]:
    return (
        AccountingPeriod.objects.filter(ledger=ledger)
        .exclude(sync_state=SyncState.MISSING)
        .select_related("year")
        .order_by("start_date", "gotransverse_id")
    )


def accounting_period_for(*, ledger: Ledger, on: date) -> AccountingPeriod | None:
    """The period of `ledger` whose dates include `on` (start and end days inclusive)."""
    return live_periods(ledger=ledger).filter(start_date__lte=on, end_date__gte=on).first()


@dataclass(frozen=True)
class PeriodLanding:
    """Where a transaction dated `on` lands in the ledger.

    `period` is the period that covers `on` (None when the calendar has none). `landing` is the
    period the AR Ledger will post into: `period` itself when it is open; the next open period
    when it is closed (the AR Ledger's published behaviour: a closed period does not reject a
    transaction, it rolls it forward); None when there is nowhere to land, and then `problem`
    says why and what fixes it.
    """

    on: date
    period: AccountingPeriod | None
    landing: AccountingPeriod | None
    rolled_forward: bool
    problem: str | None = None

    @property
    def can_post(self) -> bool:
        return self.landing is not None


def period_landing(*, ledger: Ledger, on: date) -> PeriodLanding:
    period = accounting_period_for(ledger=ledger, on=on)
    if period is None:
        return PeriodLanding(
            on=on,
            period=None,
            landing=None,
            rolled_forward=False,
            problem=(
                f"No accounting period of ledger {ledger} covers {on:%Y-%m-%d}; add the "
                "accounting year to the ledger's calendar in Gotransverse, then sync it."
            ),
        )
    if period.sync_state == SyncState.INVALID:
        return PeriodLanding(
            on=on,
            period=period,
            landing=None,
            rolled_forward=False,
            problem=f"{on:%Y-%m-%d} falls in {period.name}, but " + _unreadable_period(period),
        )
    if period.is_open:
        return PeriodLanding(on=on, period=period, landing=period, rolled_forward=False)
    next_open = None
    # Walk forward: the first open period is where the AR Ledger posts, unless a period before
    # it could not be read (it may be open, and then the transaction would land there).
    for later in live_periods(ledger=ledger).filter(start_date__gt=period.end_date):
        if later.sync_state == SyncState.INVALID:
            return PeriodLanding(
                on=on,
                period=period,
                landing=None,
                rolled_forward=False,
                problem=f"{on:%Y-%m-%d} falls in the closed period {period.name}; "
                + _unreadable_period(later),
            )
        if later.is_open:
            next_open = later
            break
    if next_open is None:
        return PeriodLanding(
            on=on,
            period=period,
            landing=None,
            rolled_forward=False,
            problem=(
                f"{on:%Y-%m-%d} falls in the closed period {period.name} and no later period of "
                f"ledger {ledger} is open; open a period in Gotransverse (or the one the date "
                "belongs to), then sync it."
            ),
        )
    return PeriodLanding(on=on, period=period, landing=next_open, rolled_forward=True)


def _unreadable_period(period: AccountingPeriod) -> str:
    return (
        f"the accounting period {period.name} could not be read from Gotransverse at the last "
        f"sync ({period.sync_error}); fix it in Gotransverse, then sync, before posting into it."
    )


def period_landings_for_closed(*, ledger: Ledger) -> list[PeriodLanding]:
    """For every closed period of `ledger`, where a transaction dated on its first day lands.

    Every day of a closed period lands in the same place (the next open period after it), so
    the first day stands for the whole period. One query, whatever the number of periods.
    """
    periods = list(live_periods(ledger=ledger))
    landings: list[PeriodLanding] = []
    for index, period in enumerate(periods):
        if period.is_open and period.sync_state != SyncState.INVALID:
            continue
        landing, problem = None, "no later period is open"
        for later in periods[index + 1 :]:
            if later.sync_state == SyncState.INVALID:
                problem = f"{later.name} could not be read from Gotransverse at the last sync"
                break
            if later.is_open:
                landing, problem = later, None
                break
        if period.sync_state == SyncState.INVALID:
            landing, problem = None, f"{period.name} could not be read from Gotransverse"
        landings.append(
            PeriodLanding(
                on=period.start_date,
                period=period,
                landing=landing,
                rolled_forward=landing is not None,
                problem=problem,
            )
        )
    return landings


def gl_account_live(number: str) -> GLAccount | None:
    return (
        GLAccount.objects.exclude(sync_state=SyncState.MISSING)
        .filter(number=number.strip())
        .first()
    )


def gl_account_check(number: str | None) -> tuple[GLAccount | None, str | None]:
    """The live GL account with this number and whether a journal may post to it.

    Returns (account, None) when it exists, is a posting account and is active; otherwise the
    account (when known) and a sentence that names the problem and the fix.
    """
    if number is None or not str(number).strip():
        return None, "No GL account number is given; set one on the ATLAS item or counterparty."
    number = str(number).strip()
    account = gl_account_live(number)
    if account is None:
        gone = GLAccount.objects.filter(number=number, sync_state=SyncState.MISSING).exists()
        if gone:
            return None, (
                f"GL account {number} is no longer in the Gotransverse chart of accounts; "
                "choose another account or restore it in Gotransverse."
            )
        return None, (
            f"GL account {number} is not in the Gotransverse chart of accounts; create it in "
            "Gotransverse (then sync the reference data) or choose an existing account."
        )
    if account.sync_state == SyncState.INVALID:
        return account, (
            f"GL account {number} could not be read from Gotransverse at the last sync "
            f"({account.sync_error}); fix it in Gotransverse, then sync."
        )
    if not account.is_posting_account:
        example = _posting_child_example(account)
        hint = f" such as {example}" if example else ""
        return account, (
            f"GL account {number} is a non-posting (parent) account in the Gotransverse chart; "
            f"choose a posting account{hint}."
        )
    if not account.is_active:
        return account, (
            f"GL account {number} is {account.status or 'not active'} in the Gotransverse chart; "
            "activate it in Gotransverse or choose an active account."
        )
    return account, None


def _posting_child_example(parent: GLAccount) -> str | None:
    """A live, active posting account to suggest in place of a parent account.

    The AR Ledger's /accounts list carries no parent link, so the suggestion is the first
    posting account of the same type whose number extends the parent's (4000 → 4001), else
    the first of the same type and designation.
    """
    candidates = (
        GLAccount.objects.exclude(sync_state=SyncState.MISSING)
        .filter(is_posting_account=True, type=parent.type)
        .order_by("number")
    )
    active = [a for a in candidates.only("number", "status", "designation") if a.is_active]
    stem = parent.number.rstrip("0") or parent.number
    for account in active:
        if account.number.startswith(stem) and account.number != parent.number:
            return account.number
    same_designation = [a for a in active if a.designation == parent.designation]
    return same_designation[0].number if same_designation else None
