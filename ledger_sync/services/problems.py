"""The one error queue: reporting problems, folding repeats, refreshing from the sources, and
what a person does with a problem (assign, note, resolve, ignore, reopen).

Two ways in, both folding on (kind, key) so a repeat never adds a row:

- `problem_report` — an event with no row of its own (a refused inbound request): every call
  is one more occurrence; last seen, count and message are refreshed, first seen is kept, a
  resolved row reopens and an ignored one stays ignored.
- `problems_refresh` — the state-bearing sources (blocked orders, failed write-backs, failed
  deliveries and callbacks, mirror record errors, failed tasks; services/problem_sources.py)
  are read and folded: the count grows only when the source shows a new occurrence (a later
  attempt), and open rows whose source has recovered are resolved automatically. It runs after
  each cycle, mirror pass and inbound sweep, and on its own schedule — never on page load.

A problem is recorded outside the business write it is about: the refresh reads committed
state after the work is done, and `problem_report_safely` runs in a savepoint and only logs when
it fails, so failing to record a problem can never roll back or break what it describes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from ledger_sync.errors import ApplicationError
from ledger_sync.models import Problem
from ledger_sync.services.admin_links import admin_change_url
from ledger_sync.services.problem_sources import Observation, problem_sources

logger = logging.getLogger(__name__)

CHANGE_PERMISSION = "ledger_sync.change_problem"
CHUNK = 500
KEY_MAX = 255
LABEL_MAX = 255
URL_MAX = 500

K = Problem.Kind
S = Problem.Status


@dataclass
class FoldResult:
    created: int = 0
    updated: int = 0
    reopened: int = 0
    resolved: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def _check_kind(kind: str) -> None:
    if kind not in K.values:
        raise ApplicationError(
            f"Unknown problem kind {kind!r}; use one of {', '.join(K.values)}.",
            details={"field": "kind"},
        )


def _clean(*, key: str, record_label: str, fix_url: str) -> tuple[str, str, str]:
    if not key:
        raise ApplicationError("A problem needs a key (what makes two reports the same).")
    return key[:KEY_MAX], (record_label or "")[:LABEL_MAX], (fix_url or "")[:URL_MAX]


# --- events ---------------------------------------------------------------------------------


def problem_report(
    *,
    kind: str,
    key: str,
    message: str,
    record_label: str = "",
    fix_url: str = "",
    details: dict | None = None,
    now: datetime | None = None,
) -> Problem:
    """Record one occurrence of a problem, folded into its (kind, key) row.

    New: a row with count 1. Seen before: last seen, count and message (and the label, link
    and details when given) refreshed, first seen kept; a resolved row reopens, an ignored
    row stays ignored (a person decided it does not matter).
    """
    _check_kind(kind)
    key, record_label, fix_url = _clean(key=key, record_label=record_label, fix_url=fix_url)
    now = now or timezone.now()
    with transaction.atomic():
        row = Problem.objects.select_for_update().filter(kind=kind, key=key).first()
        if row is None:
            try:
                with transaction.atomic():
                    return Problem.objects.create(
                        kind=kind,
                        key=key,
                        message=message,
                        record_label=record_label,
                        fix_url=fix_url,
                        details=details or {},
                        first_seen_at=now,
                        last_seen_at=now,
                    )
            except IntegrityError:
                # Reported at the same moment by another request: fold into its row.
                row = Problem.objects.select_for_update().get(kind=kind, key=key)
        row.count += 1
        row.last_seen_at = max(row.last_seen_at, now)
        row.message = message
        row.record_label = record_label or row.record_label
        row.fix_url = fix_url or row.fix_url
        if details is not None:
            row.details = details
        if row.status == S.RESOLVED:
            row.status, row.resolved_by, row.resolved_at = S.OPEN, None, None
        row.save()
        return row


def problem_report_safely(**report: Any) -> Problem | None:
    """`problem_report` for code that must go on whatever happens (an API answer, a money
    path): in a savepoint, and a failure to record is logged, never raised."""
    try:
        with transaction.atomic():
            return problem_report(**report)
    except Exception:
        logger.exception(
            "problems.report_failed", extra={"kind": report.get("kind"), "key": report.get("key")}
        )
        return None


def refused_request_report(
    *,
    route: str,
    method: str,
    client: str,
    status_code: int,
    code: str,
    message: str,
    field: str | None = None,
    api_client_pk: int | None = None,
    remote_addr: str | None = None,
    now: datetime | None = None,
) -> Problem | None:
    """A 4xx answer of the inbound API, folded per endpoint, caller, status and reason.

    `route` is the URL pattern (never the path: an id in the path would make a row per id);
    nothing of the request body or headers is kept, so no token or payload lands here.
    """
    reason = f"{code}" + (f", field {field}" if field else "")
    return problem_report_safely(
        kind=K.REFUSED_REQUEST,
        key=f"{method} {route} | {client} | {status_code} {code} | {field or '-'}",
        record_label=f"{method} /{route.lstrip('/')} from {client}",
        message=f"Refused with {status_code} ({reason}): {message}",
        fix_url=admin_change_url("ledger_sync", "apiclient", api_client_pk)
        if api_client_pk
        else "",
        details={
            "endpoint": route,
            "method": method,
            "client": client,
            "status": status_code,
            "code": code,
            "field": field,
            "remote_addr": remote_addr,
        },
        now=now,
    )


# --- state-bearing sources -------------------------------------------------------------------


def _chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def problems_resolve_absent(
    *, kind: str, present_keys: Iterable[str], now: datetime | None = None
) -> int:
    """Resolve (automatically: no resolver) the open problems of `kind` whose key is no longer
    present at the source; how many. Ignored rows are left as a person set them."""
    _check_kind(kind)
    now = now or timezone.now()
    present = {key[:KEY_MAX] for key in present_keys}
    gone = [
        pk
        for pk, key in Problem.objects.filter(kind=kind, status=S.OPEN).values_list("pk", "key")
        if key not in present
    ]
    resolved = 0
    for chunk in _chunks(gone):
        resolved += Problem.objects.filter(pk__in=chunk, status=S.OPEN).update(
            status=S.RESOLVED, resolved_by=None, resolved_at=now, updated_at=now
        )
    return resolved


_FOLDED_FIELDS = ("message", "record_label", "fix_url", "details", "count", "last_seen_at")


def problems_fold(
    *,
    kind: str,
    observations: Iterable[Observation],
    now: datetime | None = None,
    resolve_absent: bool = True,
) -> FoldResult:
    """Fold what a source shows now into the queue (see the module docstring); with
    `resolve_absent`, open rows of `kind` not observed are resolved. Writes only what changed,
    in bulk, so a refresh over thousands of unchanged problems is a handful of reads."""
    _check_kind(kind)
    now = now or timezone.now()
    latest: dict[str, Observation] = {}
    for obs in observations:
        key = obs.key[:KEY_MAX]
        if key not in latest or obs.seen_at > latest[key].seen_at:
            latest[key] = obs
    existing: dict[str, Problem] = {}
    for chunk in _chunks(list(latest)):
        for row in Problem.objects.filter(kind=kind, key__in=chunk).only(
            "pk", "key", "status", *_FOLDED_FIELDS
        ):
            existing[row.key] = row
    result = FoldResult()
    new_rows: list[Problem] = []
    changed: list[Problem] = []
    reopen: list[int] = []
    for key, obs in latest.items():
        _, label, fix_url = _clean(key=key, record_label=obs.record_label, fix_url=obs.fix_url)
        row = existing.get(key)
        if row is None:
            new_rows.append(
                Problem(
                    kind=kind,
                    key=key,
                    message=obs.message,
                    record_label=label,
                    fix_url=fix_url,
                    details=obs.details,
                    first_seen_at=obs.seen_at,
                    last_seen_at=obs.seen_at,
                    count=max(1, obs.count or 1),
                )
            )
            continue
        count = row.count + (1 if obs.seen_at > row.last_seen_at else 0)
        values = {
            "message": obs.message,
            "record_label": label,
            "fix_url": fix_url,
            "details": obs.details,
            "count": max(count, obs.count or 0),
            "last_seen_at": max(row.last_seen_at, obs.seen_at),
        }
        if any(getattr(row, name) != value for name, value in values.items()):
            for name, value in values.items():
                setattr(row, name, value)
            row.updated_at = now
            changed.append(row)
        # Resolved by a person, yet the source still shows it: it is not fixed.
        if row.status == S.RESOLVED:
            reopen.append(row.pk)
    with transaction.atomic():
        # ignore_conflicts: a concurrent refresh created the row first; it holds the same.
        Problem.objects.bulk_create(new_rows, batch_size=CHUNK, ignore_conflicts=True)
        Problem.objects.bulk_update(changed, [*_FOLDED_FIELDS, "updated_at"], batch_size=CHUNK)
        for chunk in _chunks(reopen):
            # Conditional: a row a person ignored meanwhile stays ignored.
            result.reopened += Problem.objects.filter(pk__in=chunk, status=S.RESOLVED).update(
                status=S.OPEN, resolved_by=None, resolved_at=None, updated_at=now
            )
        if resolve_absent:
            result.resolved = problems_resolve_absent(kind=kind, present_keys=latest, now=now)
    result.created = len(new_rows)
    result.updated = len(changed)
    return result


def problems_refresh(
    *, kinds: Iterable[str] | None = None, now: datetime | None = None
) -> dict[str, dict[str, int]]:
    """Read every registered source (or those of `kinds`) and fold it into the queue; what
    changed per kind. A source that fails is logged and its kind left as it was (nothing is
    resolved on a read that did not happen); the other kinds are still refreshed."""
    wanted = None if kinds is None else set(kinds)
    now = now or timezone.now()
    by_kind: dict[str, list[Callable[[], Iterable[Observation]]]] = {}
    for source in problem_sources():
        if wanted is None or source.kind in wanted:
            by_kind.setdefault(source.kind, []).append(source.observe)
    report: dict[str, dict[str, int]] = {}
    for kind, observers in by_kind.items():
        try:
            # A savepoint: a source whose query fails inside a caller's transaction must not
            # leave that transaction unusable (PostgreSQL aborts it until rolled back).
            with transaction.atomic():
                observations = [obs for observe in observers for obs in observe()]
                folded = problems_fold(kind=kind, observations=observations, now=now)
            report[kind] = folded.as_dict()
        except Exception:
            logger.exception("problems.refresh_failed", extra={"kind": kind})
            report[kind] = {"error": 1}
    return report


def problems_refresh_safely(*, kinds: Iterable[str] | None = None) -> dict[str, dict[str, int]]:
    """The refresh at the end of a cycle, mirror pass or sweep: never fails the work it follows."""
    try:
        return problems_refresh(kinds=kinds)
    except Exception:
        logger.exception("problems.refresh_failed")
        return {}


# --- what a person does ----------------------------------------------------------------------


def _require_worker(user: Any) -> None:
    if user is None or not user.has_perm(CHANGE_PERMISSION):
        raise PermissionDenied("Only an accountant or a finance lead may work the error queue.")


def _ids(problems: Iterable[Problem] | QuerySet) -> list[int]:
    return [problem.pk for problem in problems]


@transaction.atomic
def problems_assign(*, problems: Iterable[Problem] | QuerySet, user: Any, assignee: Any) -> int:
    """Give problems to `assignee` (None: to nobody); how many changed hands."""
    _require_worker(user)
    rows = Problem.objects.filter(pk__in=_ids(problems))
    if assignee is None:
        rows = rows.filter(assignee__isnull=False)
    else:
        rows = rows.exclude(assignee=assignee)
    return rows.update(assignee=assignee, updated_at=timezone.now())


def _decide(
    *, problems: Iterable[Problem] | QuerySet, user: Any, to: str, from_: Sequence[str], now: Any
) -> int:
    _require_worker(user)
    now = now or timezone.now()
    # Who decided and when: kept on resolved and ignored rows, cleared when reopened.
    decided = {"resolved_by": None if to == S.OPEN else user, "resolved_at": None}
    if to != S.OPEN:
        decided["resolved_at"] = now
    return Problem.objects.filter(pk__in=_ids(problems), status__in=from_).update(
        status=to, updated_at=now, **decided
    )


@transaction.atomic
def problems_resolve(
    *, problems: Iterable[Problem] | QuerySet, user: Any, now: datetime | None = None
) -> int:
    """Mark open (or ignored) problems resolved by `user`; how many. A state-bearing problem
    whose source still shows it reopens at the next refresh: resolving does not fix it."""
    return _decide(problems=problems, user=user, to=S.RESOLVED, from_=(S.OPEN, S.IGNORED), now=now)


@transaction.atomic
def problems_ignore(
    *, problems: Iterable[Problem] | QuerySet, user: Any, now: datetime | None = None
) -> int:
    """Ignore problems (they stay ignored when seen again); how many."""
    return _decide(problems=problems, user=user, to=S.IGNORED, from_=(S.OPEN, S.RESOLVED), now=now)


@transaction.atomic
def problems_reopen(
    *, problems: Iterable[Problem] | QuerySet, user: Any, now: datetime | None = None
) -> int:
    """Put resolved or ignored problems back in the open queue; how many."""
    return _decide(problems=problems, user=user, to=S.OPEN, from_=(S.RESOLVED, S.IGNORED), now=now)


@transaction.atomic
def problem_update(*, problem: Problem, user: Any, note: str, assignee: Any) -> Problem:
    """Save a person's note and assignee on one problem (the admin's change form)."""
    _require_worker(user)
    Problem.objects.filter(pk=problem.pk).update(
        note=note.strip(), assignee=assignee, updated_at=timezone.now()
    )
    problem.refresh_from_db()
    return problem


__all__ = [
    "CHANGE_PERMISSION",
    "CHUNK",
    "KEY_MAX",
    "LABEL_MAX",
    "URL_MAX",
    "FoldResult",
    "K",
    "S",
    "logger",
    "problem_report",
    "problem_report_safely",
    "problem_update",
    "problems_assign",
    "problems_fold",
    "problems_ignore",
    "problems_refresh",
    "problems_refresh_safely",
    "problems_reopen",
    "problems_resolve",
    "problems_resolve_absent",
    "refused_request_report",
]
