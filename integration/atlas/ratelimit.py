"""Pacing for ATLAS requests, shared by every worker process (pyrate-limiter underneath).

ATLAS allows 100 requests a minute per client, and the client is our service account, not one
process: every web and django-q2 worker counts against the same budget. So the window is kept in
a database every process can see — pyrate-limiter's SQLite bucket on a file (embedded setup;
a file lock makes count-then-insert atomic across processes) or its PostgreSQL bucket (an
exclusive table lock does the same). The in-memory and unlimited pacers are for one process and
for tests.

`RequestPacer.acquire()` blocks until a slot is free, waiting through the injected `sleep`, and
gives up with `PacingTimeout` after `max_wait_seconds` so a worker never hangs on a full window.
This module knows nothing of Django: it takes a file path or a PostgreSQL connection string.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from pyrate_limiter import (
    AbstractBucket,
    Duration,
    InMemoryBucket,
    Limiter,
    PostgresBucket,
    Rate,
    RateItem,
    SQLiteBucket,
)

logger = logging.getLogger(__name__)

DEFAULT_BUCKET_NAME = "atlas_requests"
DEFAULT_MAX_WAIT_SECONDS = 120.0
# A failed put that records no wait (PostgreSQL lock contention) is retried after this pause,
# so two processes never spin against each other.
MIN_WAIT_SECONDS = 0.05
# Longest wait for the SQLite bucket's file lock, held by another process for one put at a time.
LOCK_WAIT_SECONDS = 5.0


class PacingTimeout(Exception):
    """No request slot became free within the pacer's wait bound."""

    def __init__(self, *, waited_seconds: float, wait_needed_seconds: float, limit: str):
        self.waited_seconds = waited_seconds
        self.wait_needed_seconds = wait_needed_seconds
        self.limit = limit
        super().__init__(
            f"no request slot free under {limit} after waiting {waited_seconds:.1f}s "
            f"(next slot in {wait_needed_seconds:.1f}s)"
        )


class Pacer(Protocol):
    """What the ATLAS client needs: one blocking call before each request."""

    def acquire(self) -> None: ...


class UnlimitedPacer:
    """Never waits. For tests and for a sandbox that enforces nothing."""

    def acquire(self) -> None:
        return None

    def try_acquire(self) -> bool:
        return True

    def close(self) -> None:
        return None

    def __repr__(self) -> str:
        return "UnlimitedPacer()"


class RequestPacer:
    """A blocking, bounded acquire over one pyrate-limiter bucket.

    pyrate-limiter counts the window and makes the check-and-record atomic (across processes for
    the database buckets); the wait loop is ours so that the sleep and the clock can be injected
    and the wait has an upper bound.
    """

    def __init__(
        self,
        bucket: AbstractBucket,
        *,
        requests_per_minute: int,
        name: str = DEFAULT_BUCKET_NAME,
        max_wait_seconds: float = DEFAULT_MAX_WAIT_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ):
        if max_wait_seconds < 0:
            raise ValueError("max_wait_seconds must be zero or more")
        self.bucket = bucket
        self.requests_per_minute = requests_per_minute
        self.name = name
        self.max_wait_seconds = max_wait_seconds
        self._sleep = sleep
        self._clock = clock
        self._limiter = Limiter(bucket, buffer_ms=50)

    @property
    def limit(self) -> str:
        return f"{self.requests_per_minute} requests/minute"

    def try_acquire(self) -> bool:
        """Take a slot if one is free now; never waits for the window to move.

        It does wait (at most LOCK_WAIT_SECONDS) for the bucket's cross-process lock: that lock
        is held for milliseconds (another process's put, the bucket's background cleanup), and
        pyrate-limiter's non-blocking path would otherwise report that as "no slot".
        """
        lock = self.bucket.limiter_lock()
        if lock is None:
            return self._try_through_contention()
        try:
            lock.acquire(timeout=LOCK_WAIT_SECONDS)
        except TimeoutError:  # filelock.Timeout is one
            return False
        try:
            # The lock is re-entrant for this thread, so the limiter's own attempt gets it.
            return bool(self._limiter.try_acquire(self.name, blocking=False))
        finally:
            lock.release()

    def _try_through_contention(self) -> bool:
        """One put, tried again while it fails only because the bucket was busy.

        The PostgreSQL bucket takes its table lock with NOWAIT: another process's put, or any
        bucket's background cleanup, holding the lock for a few milliseconds makes a put fail
        although the window has room. Only a window with no room is "no slot"; contention is
        waited through (MIN_WAIT_SECONDS at a time, at most LOCK_WAIT_SECONDS in all).
        """
        for _ in range(int(LOCK_WAIT_SECONDS / MIN_WAIT_SECONDS)):
            if self._limiter.try_acquire(self.name, blocking=False):
                return True
            if self._window_full():
                return False
            self._sleep(MIN_WAIT_SECONDS)
        return False

    def _window_full(self) -> bool:
        waiting_ms = self.bucket.waiting(RateItem(self.name, self.bucket.now(), weight=1))
        return not isinstance(waiting_ms, int) or waiting_ms > 0

    def seconds_until_free(self) -> float:
        """How long until the next slot frees, as the bucket computes it after a failed put."""
        item = RateItem(self.name, self.bucket.now(), weight=1)
        waiting_ms = self.bucket.waiting(item)
        if not isinstance(waiting_ms, int) or waiting_ms < 0:
            return MIN_WAIT_SECONDS
        return max(waiting_ms / 1000, MIN_WAIT_SECONDS)

    def acquire(self) -> None:
        """Block until a slot is free; raise PacingTimeout rather than wait past the bound."""
        started = self._clock()
        while not self.try_acquire():
            wait = self.seconds_until_free()
            waited = self._clock() - started
            if waited + wait > self.max_wait_seconds:
                raise PacingTimeout(
                    waited_seconds=waited, wait_needed_seconds=wait, limit=self.limit
                )
            logger.info("ATLAS pacing: window full (%s), waiting %.2fs", self.limit, wait)
            self._sleep(wait)

    def close(self) -> None:
        self._limiter.close()

    def __repr__(self) -> str:
        return f"RequestPacer({type(self.bucket).__name__}, {self.limit}, name={self.name!r})"


def _rates(requests_per_minute: int) -> list[Rate]:
    if requests_per_minute < 1:
        raise ValueError("requests_per_minute must be at least 1 (use UnlimitedPacer for none)")
    return [Rate(requests_per_minute, Duration.MINUTE)]


def memory_pacer(*, requests_per_minute: int, **options: object) -> RequestPacer:
    """A window in this process's memory: correct only when one process talks to ATLAS."""
    bucket = InMemoryBucket(_rates(requests_per_minute))
    return RequestPacer(bucket, requests_per_minute=requests_per_minute, **options)  # type: ignore[arg-type]


def sqlite_pacer(
    *,
    path: str | Path,
    requests_per_minute: int,
    table: str = DEFAULT_BUCKET_NAME,
    **options: object,
) -> RequestPacer:
    """A window in a SQLite file, shared by every process on this host.

    The file lock (filelock) is what makes it safe across processes: without it two processes
    could both count 89 and both insert the 90th.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    bucket = SQLiteBucket.init_from_file(
        _rates(requests_per_minute),
        table=table,
        db_path=str(path),
        create_new_table=True,
        use_file_lock=True,
    )
    return RequestPacer(bucket, requests_per_minute=requests_per_minute, **options)  # type: ignore[arg-type]


def postgres_pacer(
    *,
    conninfo: str,
    requests_per_minute: int,
    table: str = DEFAULT_BUCKET_NAME,
    **options: object,
) -> RequestPacer:
    """A window in a PostgreSQL table (`ratelimit___<table>`), shared by every machine.

    The bucket creates its table on first use (outside Django's migrations: it is pyrate-limiter's
    own bookkeeping) and takes an exclusive table lock for each check-and-record.
    """
    from psycopg_pool import ConnectionPool

    pool = ConnectionPool(
        conninfo,
        min_size=1,
        max_size=2,
        open=True,
        name="atlas-pacing",
        # Not autocommit: the bucket's LOCK TABLE must live in a transaction; the pool commits
        # it when each put hands the connection back, so the lock is held only for that put.
    )
    bucket = PostgresBucket(pool, table, _rates(requests_per_minute))
    return RequestPacer(bucket, requests_per_minute=requests_per_minute, **options)  # type: ignore[arg-type]
