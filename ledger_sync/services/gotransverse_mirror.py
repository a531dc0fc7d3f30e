"""Mirror the Gotransverse reference data: the ledger, its calendar (years and periods) and the
GL accounts of its chart.

One pass is one SyncRun (system "gotransverse") with created / updated / unchanged / failed
counts per entity, plus "missing":

- every record is upserted on its own savepoint, keyed by its AR Ledger id; a changed record is
  updated with a RecordChange holding the before/after of each changed top-level JSON field;
- a record that cannot be read or stored is a failed item of the run with its reason, its stored
  row (if any) turns INVALID and keeps its last good values, and the rest of the pass goes on;
- a record no longer in the AR Ledger is kept and marked MISSING (journals may point at it),
  only when the pass saw the whole list, so a short page never makes live records vanish;
- a remote failure (after the client's own retries) ends the run FAILED with the reason.

Only one pass runs at a time (the same claim as the ATLAS mirror's): a second one is refused
with GotransverseMirrorAlreadyRunning and does nothing; a pass left RUNNING for longer than the
task timeout by a worker that died does not block.

Idempotent: a record whose content has not changed is not rewritten; the only write a second
pass over an unchanged ledger makes is `last_seen_at`, in one UPDATE per model.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from integration.gotransverse import records as remote
from integration.gotransverse.errors import GotransverseError
from integration.gotransverse.records import RecordError
from ledger_sync.errors import ConfigurationError
from ledger_sync.models import (
    AccountingPeriod,
    AccountingYear,
    GLAccount,
    Ledger,
    SyncRun,
    SyncState,
)
from ledger_sync.services.gotransverse_storage import SYSTEM, MirrorStorage, as_int
from ledger_sync.services.mirror_records import (
    ENTITY_ACCOUNT,
    ENTITY_LEDGER,
    ENTITY_PERIOD,
    ENTITY_YEAR,
    GOTRANSVERSE_ENTITIES,
)
from ledger_sync.services.problem_sources import MIRROR_KINDS
from ledger_sync.services.problems import problems_refresh_safely
from ledger_sync.services.rechecks import orders_recheck_after_reference_sync
from ledger_sync.services.sync_runs import (
    SyncRunAlreadyRunning,
    sync_run_start_exclusive,
)

logger = logging.getLogger(__name__)

# progress(stage, done, total): stage is one of GOTRANSVERSE_ENTITIES; total is None when not
# known yet.
Progress = Callable[[str, int, int | None], None]


class GotransverseMirrorAlreadyRunning(SyncRunAlreadyRunning):
    """A Gotransverse reference-data pass is already running; this one was skipped, nothing was
    done (details["running_run_id"] names the running pass)."""


def gotransverse_mirror_run(
    *,
    client: Any,
    ledger_id: int | str,
    trigger: str,
    user: Any = None,
    progress: Progress | None = None,
) -> SyncRun:
    """One pass over ledger `ledger_id`: ledger, calendar years, accounting periods, GL accounts.

    Returns the finished SyncRun: SUCCEEDED, COMPLETED_WITH_ERRORS (some records failed, each in
    run.errors) or FAILED (the AR Ledger could not be read; run.error_message says why).

    Raises GotransverseMirrorAlreadyRunning when another pass is running (nothing is done then:
    no run recorded, no remote call).
    """
    remote_ledger_id = _ledger_id(ledger_id)
    recorder = sync_run_start_exclusive(
        system=SYSTEM,
        trigger=trigger,
        user=user,
        entities=GOTRANSVERSE_ENTITIES,
        what="A Gotransverse reference-data pass",
        already_running=GotransverseMirrorAlreadyRunning,
    )
    mirror = _Mirror(recorder=recorder, progress=progress or _no_progress)
    # A client may serve several runs: each run counts only its own requests.
    stats_at_start = _client_stats(client)
    error = ""
    try:
        mirror.run(client=client, ledger_id=remote_ledger_id)
    except GotransverseError as exc:
        error = str(exc)
        logger.warning(
            "gotransverse mirror failed",
            extra={"run": recorder.run.pk, "status": exc.status, "code": exc.code},
        )
    except Exception as exc:
        # A bug, not the ledger: never leave the run RUNNING, and let the caller see the crash.
        recorder.finish(
            error=f"Unexpected {type(exc).__name__}: {exc}",
            **_stats_since(client, stats_at_start),
        )
        raise
    run = _store_missing_counts(
        recorder.finish(error=error, **_stats_since(client, stats_at_start)), mirror.missing
    )
    orders_recheck_after_reference_sync(run=run)
    problems_refresh_safely(kinds=MIRROR_KINDS)
    return run


def _ledger_id(value: int | str) -> int:
    try:
        return int(str(value).strip())
    except ValueError:
        raise ConfigurationError(
            f"The Gotransverse ledger id must be a number, got {value!r}; "
            "set GOTRANSVERSE_LEDGER_ID to the AR Ledger's id."
        ) from None


# --- the pass ----------------------------------------------------------------------------------


@dataclass(kw_only=True)
class _Mirror(MirrorStorage):
    progress: Progress

    def run(self, *, client: Any, ledger_id: int) -> None:
        for entity in GOTRANSVERSE_ENTITIES:
            self.missing.setdefault(entity, 0)
        ledger_raw = _fetch_ledger_raw(client, ledger_id)
        ledger = self.mirror_ledger(ledger_id, ledger_raw)
        if ledger is not None:
            self.mirror_calendar(ledger, ledger_raw)
        self.refresh_last_seen()
        chart_id = ledger.chart_of_account_id if ledger is not None else None
        self.mirror_accounts(client, chart_id)
        self.refresh_last_seen()

    # --- ledger ---------------------------------------------------------------------------------

    def mirror_ledger(self, ledger_id: int, raw: Any) -> Ledger | None:
        self.progress(ENTITY_LEDGER, 0, 1)
        own_raw = _without(raw, "calendar")
        try:
            record = remote.Ledger.from_json(own_raw)
            if record.id != ledger_id:
                raise RecordError(
                    ENTITY_LEDGER,
                    record.id,
                    "id",
                    f"is {record.id}, but ledger {ledger_id} was asked for; check "
                    "GOTRANSVERSE_LEDGER_ID",
                    own_raw,
                )
        except RecordError as exc:
            self.fail(exc, model=Ledger, default_id=ledger_id)
            # The calendar still belongs to the ledger we already hold, if we hold it.
            return Ledger.objects.filter(gotransverse_id=ledger_id).first()
        ledger = self.upsert(
            Ledger,
            entity=ENTITY_LEDGER,
            lookup={"gotransverse_id": record.id},
            raw=own_raw,
            values={
                "name": record.name,
                "description": record.description or "",
                "status": record.status or "",
                "convert_currency": record.convert_currency or "",
                "conversion_currency": (record.conversion_currency or "").upper(),
                "conversion_rate_set_id": record.conversion_rate_set_id or "",
                "currency_exchange_version": record.currency_exchange_version or "",
                "chart_of_account_id": record.chart_of_account_id,
                "rule_set_id": record.rule_set_id,
                "timezone_name": record.timezone_name or "",
                "create_zero_amount_entries": bool(record.create_zero_amount_entries),
                "is_valid": record.valid,
            },
        )
        self.progress(ENTITY_LEDGER, 1, 1)
        return ledger

    # --- calendar -------------------------------------------------------------------------------

    def mirror_calendar(self, ledger: Ledger, ledger_raw: Any) -> None:
        calendar = ledger_raw.get("calendar") if isinstance(ledger_raw, Mapping) else None
        years_raw = calendar.get("years") if isinstance(calendar, Mapping) else None
        if years_raw is None:
            years_raw = []
        if not isinstance(years_raw, list):
            self.recorder.error(
                entity=ENTITY_YEAR,
                field="calendar.years",
                message=f"Ledger {ledger.gotransverse_id}: calendar.years is not a list; "
                "the calendar was not mirrored.",
                raw=calendar,
            )
            return
        seen_years: set[int] = set()
        seen_periods: set[int] = set()
        # Years whose periods cannot all be accounted for: their periods are never marked MISSING.
        incomplete_years: set[int] = set()
        all_years_known = True
        period_total = sum(
            len(y.get("accounting-periods") or []) for y in years_raw if isinstance(y, Mapping)
        )
        periods_done = 0
        for index, year_raw in enumerate(years_raw):
            self.progress(ENTITY_YEAR, index, len(years_raw))
            own_raw = _without(year_raw, "accounting-periods")
            try:
                year_record = remote.CalendarYear.from_json(own_raw)
            except RecordError as exc:
                self.fail(exc, model=AccountingYear, scope={"ledger": ledger})
                year_id = _int_or_none(own_raw, "id")
                if year_id is None:
                    all_years_known = False
                else:
                    seen_years.add(year_id)
                    incomplete_years.add(year_id)
                continue
            seen_years.add(year_record.id)
            year = self.upsert(
                AccountingYear,
                entity=ENTITY_YEAR,
                lookup={"ledger": ledger, "gotransverse_id": year_record.id},
                raw=own_raw,
                values={
                    "name": year_record.name or f"{year_record.start_date:%Y}",
                    "description": year_record.description or "",
                    "year": year_record.start_date.year,
                    "start_date": year_record.start_date,
                    "end_date": year_record.end_date,
                    "is_open": year_record.open,
                    "is_complete": year_record.complete,
                },
            )
            periods_raw = year_raw.get("accounting-periods") or []
            if year is None or not isinstance(periods_raw, list):
                incomplete_years.add(year_record.id)
                if year is not None:
                    self.recorder.error(
                        entity=ENTITY_PERIOD,
                        field="accounting-periods",
                        message=f"AccountingYear {year_record.id}: accounting-periods is not a "
                        "list; its periods were not mirrored.",
                        raw=periods_raw,
                    )
                continue
            for period_raw in periods_raw:
                periods_done += 1
                self.progress(ENTITY_PERIOD, periods_done, period_total)
                outcome = self.mirror_period(ledger, year, period_raw)
                if outcome is None:
                    incomplete_years.add(year_record.id)
                else:
                    seen_periods.add(outcome)
        self.progress(ENTITY_YEAR, len(years_raw), len(years_raw))
        if all_years_known:
            self.mark_missing(
                AccountingYear.objects.filter(ledger=ledger).exclude(
                    gotransverse_id__in=seen_years
                ),
                entity=ENTITY_YEAR,
            )
            self.mark_missing(
                AccountingPeriod.objects.filter(ledger=ledger)
                .exclude(gotransverse_id__in=seen_periods)
                .exclude(year__gotransverse_id__in=incomplete_years),
                entity=ENTITY_PERIOD,
            )

    def mirror_period(self, ledger: Ledger, year: AccountingYear, raw: Any) -> int | None:
        """Upsert one period; returns its remote id when known (stored or failed), else None."""
        try:
            record = remote.AccountingPeriod.from_json(raw)
            if record.end_date < record.start_date:
                raise RecordError(
                    ENTITY_PERIOD,
                    record.id,
                    "end_date",
                    f"({record.end_date}) is before start_date ({record.start_date}); fix the "
                    "period in the Gotransverse calendar",
                    raw,
                )
        except RecordError as exc:
            self.fail(exc, model=AccountingPeriod, scope={"ledger": ledger})
            return as_int(exc.record_id)
        stored = self.upsert(
            AccountingPeriod,
            entity=ENTITY_PERIOD,
            lookup={"ledger": ledger, "gotransverse_id": record.id},
            raw=raw,
            values={
                "year": year,
                "name": record.name or f"{record.start_date:%b %Y}",
                "description": record.description or "",
                "quarter": record.quarter or "",
                "start_date": record.start_date,
                "end_date": record.end_date,
                "is_open": record.open,
                "status": "OPEN" if record.open else "CLOSED",
            },
        )
        return record.id if stored is not None else None

    # --- GL accounts ----------------------------------------------------------------------------

    def mirror_accounts(self, client: Any, chart_id: int | None) -> None:
        paginator = _list_accounts(client, chart_id)
        seen: set[int] = set()
        seen_numbers: set[str] = set()
        done = 0
        for record in paginator:
            done += 1
            self.progress(ENTITY_ACCOUNT, done, paginator.total_count)
            seen.add(record.id)
            number = record.number.strip()
            if number in seen_numbers:
                self.fail(
                    RecordError(
                        ENTITY_ACCOUNT,
                        record.id,
                        "number",
                        f"{number} is used by another account of the same chart; give each "
                        "account its own number in Gotransverse",
                        record.raw,
                    ),
                    model=GLAccount,
                )
                continue
            seen_numbers.add(number)
            self.upsert(
                GLAccount,
                entity=ENTITY_ACCOUNT,
                lookup={"gotransverse_id": record.id},
                raw=record.raw,
                values={
                    "number": number,
                    "name": record.name or "",
                    "description": record.description or "",
                    "type": record.type or "",
                    "designation": record.designation or "",
                    "designation_category": record.designation_category or "",
                    "is_posting_account": record.is_posting_account,
                    "status": record.status or "",
                    "chart_of_account_ids": list(record.chart_of_accounts),
                },
                before_save=self._free_number_of_vanished_account,
            )
        unknown_ids = False
        for exc in paginator.errors:
            self.fail(exc, model=GLAccount)
            record_id = as_int(exc.record_id)
            if record_id is None:
                unknown_ids = True
            else:
                seen.add(record_id)
        received = len(seen) + (len(paginator.errors) if unknown_ids else 0)
        complete = paginator.total_count is None or received >= paginator.total_count
        if not complete:
            # Offset paging is not a snapshot: a record written during the pass may have shifted
            # the pages. Marking the "unseen" ones MISSING could hide live accounts.
            self.recorder.error(
                entity=ENTITY_ACCOUNT,
                message=f"The AR Ledger announced {paginator.total_count} GL accounts but the "
                f"pass received {received}; no account was marked missing. The next pass "
                "will settle it.",
                count=False,
            )
        elif not unknown_ids:
            self.mark_missing(
                GLAccount.objects.exclude(gotransverse_id__in=seen), entity=ENTITY_ACCOUNT
            )

    def _free_number_of_vanished_account(self, account: GLAccount) -> None:
        """A number re-used by a new account after the old one was deleted in Gotransverse.

        The old row keeps its number (history) but turns MISSING now, so the unique-while-live
        constraint lets the new account take the number.
        """
        previous = (
            GLAccount.objects.exclude(sync_state=SyncState.MISSING)
            .exclude(gotransverse_id=account.gotransverse_id)
            .filter(number=account.number)
        )
        self.mark_missing(previous, entity=ENTITY_ACCOUNT)


# --- talking to the client ---------------------------------------------------------------------


def _fetch_ledger_raw(client: Any, ledger_id: int) -> Any:
    """The ledger's JSON with its embedded calendar (GET /ledgers/{id}).

    Parsed here piece by piece (ledger, each year, each period) so that one malformed period
    fails alone. A client offering the unparsed answer (`get_ledger_raw`) lets that happen;
    through `get_ledger`, which parses the whole calendar at once, a malformed period makes the
    client raise UnexpectedResponseError and the run fails with the record named.
    """
    fetch_raw = getattr(client, "get_ledger_raw", None)
    if callable(fetch_raw):
        return fetch_raw(ledger_id)
    return client.get_ledger(ledger_id).raw


def _list_accounts(client: Any, chart_id: int | None) -> Any:
    """Every GL account of the ledger's chart (all pages); the Paginator keeps parse errors."""
    if chart_id is None:
        return client.list_gl_accounts()
    return client.list_gl_accounts(chart_of_account=chart_id)


def _stats_since(client: Any, start: Mapping[str, int]) -> dict[str, int]:
    now = _client_stats(client)
    return {key: now[key] - start.get(key, 0) for key in now}


def _client_stats(client: Any) -> dict[str, int]:
    stats = getattr(client, "stats", None)
    return {
        "api_calls": int(getattr(stats, "requests", 0) or 0),
        # The AR Ledger has no rate limit in the spec; a client that counts 429s anyway says so.
        "rate_limited": int(getattr(stats, "rate_limited", 0) or 0),
    }


# --- helpers -----------------------------------------------------------------------------------


def _store_missing_counts(run: SyncRun, missing: Mapping[str, int]) -> SyncRun:
    """Add "missing" to each entity's counts (the recorder counts created/updated/unchanged/
    failed only): a record that vanished from the ledger is worth seeing in the run summary."""
    if not missing:
        return run
    counts = dict(run.counts)
    for entity, n in missing.items():
        if entity in counts or n:
            counts.setdefault(entity, {})
            counts[entity] = {**counts[entity], "missing": n}
    run.counts = counts
    run.save(update_fields=["counts"])
    return run


def _no_progress(stage: str, done: int, total: int | None) -> None:
    return None


def _without(raw: Any, key: str) -> Any:
    if isinstance(raw, Mapping):
        return {k: v for k, v in raw.items() if k != key}
    return raw


def _int_or_none(raw: Any, key: str) -> int | None:
    return as_int(raw.get(key)) if isinstance(raw, Mapping) else None
