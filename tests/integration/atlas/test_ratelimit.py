"""The shared pacer: a tight window refuses the next request and says how long to wait.

Nothing here really sleeps: the pacer's sleep is a recorder that moves time-machine's clock
(which the pyrate-limiter buckets read) forward instead.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
import uuid

import pytest
import time_machine
from filelock import FileLock
from pyrate_limiter import Duration, InMemoryBucket, Rate

from integration.atlas.ratelimit import (
    PacingTimeout,
    RequestPacer,
    UnlimitedPacer,
    memory_pacer,
    postgres_pacer,
    sqlite_pacer,
)


class TravellingSleep:
    """Records each requested sleep and moves the frozen clock on by that much."""

    def __init__(self, traveller):
        self.traveller = traveller
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        self.traveller.shift(seconds)


@pytest.fixture
def frozen_time():
    with time_machine.travel(1_775_000_000, tick=False) as traveller:
        yield traveller


@pytest.fixture
def file_pacer(tmp_path, frozen_time):
    made: list[RequestPacer] = []

    def make(**options) -> RequestPacer:
        options.setdefault("requests_per_minute", 5)
        options.setdefault("clock", time.time)
        pacer = sqlite_pacer(path=tmp_path / "var" / "pacing.sqlite3", **options)
        made.append(pacer)
        return pacer

    yield make
    for pacer in made:
        pacer.close()


def test_sixth_request_in_a_five_per_minute_window_is_refused(file_pacer):
    pacer = file_pacer()

    granted = [pacer.try_acquire() for _ in range(5)]

    assert granted == [True] * 5
    assert pacer.try_acquire() is False
    assert 59.0 <= pacer.seconds_until_free() <= 61.0


def test_blocking_acquire_waits_for_the_window_then_proceeds(file_pacer, frozen_time):
    sleep = TravellingSleep(frozen_time)
    pacer = file_pacer(sleep=sleep)

    for _ in range(5):
        pacer.acquire()
    assert sleep.calls == []

    pacer.acquire()

    assert len(sleep.calls) == 1
    assert 59.0 <= sleep.calls[0] <= 61.0


def test_blocking_acquire_gives_up_past_its_bound_without_sleeping(file_pacer, frozen_time):
    sleep = TravellingSleep(frozen_time)
    pacer = file_pacer(sleep=sleep, max_wait_seconds=30)
    for _ in range(5):
        pacer.acquire()

    with pytest.raises(PacingTimeout) as caught:
        pacer.acquire()

    assert sleep.calls == []
    assert caught.value.wait_needed_seconds > 30
    assert "5 requests/minute" in str(caught.value)


def test_two_pacers_on_one_file_share_the_window(file_pacer):
    web = file_pacer()
    worker = file_pacer()

    granted = [web.try_acquire() for _ in range(3)] + [worker.try_acquire() for _ in range(2)]

    assert granted == [True] * 5
    assert worker.try_acquire() is False
    assert web.try_acquire() is False


def test_a_briefly_held_file_lock_is_waited_for_not_read_as_a_full_window(file_pacer, tmp_path):
    pacer = file_pacer()
    # Another process's put (or the bucket's cleanup thread) holding the lock for a moment.
    other = FileLock(str(tmp_path / "var" / "pacing.sqlite3.lock"), thread_local=False)
    other.acquire()
    releaser = threading.Timer(0.1, other.release)
    releaser.start()

    granted = pacer.try_acquire()

    releaser.join()
    assert granted is True
    assert pacer.bucket.count() == 1


def _take_slots(path: str, attempts: int, results) -> None:
    pacer = sqlite_pacer(path=path, requests_per_minute=6)
    try:
        results.put(sum(1 for _ in range(attempts) if pacer.try_acquire()))
    finally:
        pacer.close()


def test_processes_sharing_the_file_never_exceed_the_window_together(tmp_path):
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    path = str(tmp_path / "shared.sqlite3")
    workers = [context.Process(target=_take_slots, args=(path, 5, results)) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)

    granted = [results.get(timeout=5) for _ in workers]

    assert sum(granted) == 6, granted


def test_memory_pacer_limits_one_process(frozen_time):
    pacer = memory_pacer(requests_per_minute=2, clock=time.time)

    assert [pacer.try_acquire() for _ in range(3)] == [True, True, False]
    pacer.close()


def test_unlimited_pacer_never_waits():
    pacer = UnlimitedPacer()

    for _ in range(1000):
        pacer.acquire()

    assert pacer.try_acquire() is True


def test_a_window_of_zero_requests_is_refused():
    with pytest.raises(ValueError, match="at least 1"):
        memory_pacer(requests_per_minute=0)


@pytest.mark.django_db
def test_postgres_pacer_shares_the_window_through_a_table():
    from django.db import connection

    from ledger_sync.services.remote import postgres_conninfo

    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (DATABASE_URL=postgres://...)")
    table = f"atlas_test_{uuid.uuid4().hex[:8]}"
    conninfo = postgres_conninfo(connection.settings_dict)
    first = postgres_pacer(conninfo=conninfo, requests_per_minute=3, table=table)
    second = postgres_pacer(conninfo=conninfo, requests_per_minute=3, table=table)
    try:
        granted = [first.try_acquire(), second.try_acquire(), first.try_acquire()]

        assert granted == [True, True, True]
        assert second.try_acquire() is False
        assert first.try_acquire() is False
        assert 55.0 <= first.seconds_until_free() <= 61.0
    finally:
        with first.bucket.pool.connection() as conn:
            conn.execute(f'DROP TABLE IF EXISTS "ratelimit___{table}"')
        first.close()
        second.close()


class _BusyOnceBucket(InMemoryBucket):
    """Like the PostgreSQL bucket under contention: the first put fails with room left."""

    def __init__(self, rates):
        super().__init__(rates)
        self.busy_puts = 1

    def put(self, item):
        if self.busy_puts:
            self.busy_puts -= 1
            return False
        return super().put(item)


def test_a_busy_bucket_is_waited_through_not_read_as_a_full_window(frozen_time):
    sleep = TravellingSleep(frozen_time)
    bucket = _BusyOnceBucket([Rate(5, Duration.MINUTE)])
    pacer = RequestPacer(bucket, requests_per_minute=5, sleep=sleep, clock=time.time)

    assert pacer.try_acquire() is True
    assert sleep.calls == [0.05]
    pacer.close()


def test_a_full_window_is_refused_at_once(frozen_time):
    sleep = TravellingSleep(frozen_time)
    pacer = memory_pacer(requests_per_minute=1, sleep=sleep, clock=time.time)

    assert pacer.try_acquire() is True
    assert pacer.try_acquire() is False
    assert sleep.calls == []


@pytest.mark.django_db
def test_postgres_pacer_waits_through_a_briefly_held_table_lock():
    import psycopg
    from django.db import connection

    from ledger_sync.services.remote import postgres_conninfo

    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (DATABASE_URL=postgres://...)")
    table = f"atlas_test_{uuid.uuid4().hex[:8]}"
    conninfo = postgres_conninfo(connection.settings_dict)
    holder = psycopg.connect(conninfo)
    released: list[float] = []

    def release_then_wait(seconds: float) -> None:
        released.append(seconds)
        holder.rollback()  # the other process's put is done: the lock goes

    pacer = postgres_pacer(
        conninfo=conninfo, requests_per_minute=3, table=table, sleep=release_then_wait
    )
    try:
        holder.execute(f'LOCK TABLE "ratelimit___{table}" IN EXCLUSIVE MODE')

        assert pacer.try_acquire() is True
        # Waited through the lock (and any cleanup of the bucket's own that followed it).
        assert released and set(released) == {0.05}
    finally:
        holder.rollback()
        with pacer.bucket.pool.connection() as conn:
            conn.execute(f'DROP TABLE IF EXISTS "ratelimit___{table}"')
        pacer.close()
        holder.close()
