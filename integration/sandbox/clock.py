"""The sandboxes' notion of "now": real time plus an offset, or frozen for tests.

Token expiry, rate-limit windows and webhook timestamps all read this clock, so a test can
move a sandbox an hour forward (`advance(3600)`) instead of sleeping.
"""

from __future__ import annotations

import threading
import time as _time
from datetime import UTC, datetime, timedelta


class SandboxClock:
    """A clock the sandbox reads and a test can move.

    Not frozen (the default): real time, shifted by `start - real now` when a start is given and
    by whatever `advance` added since. Frozen: stands still at `start` (real now if not given)
    and moves only on `advance`.
    """

    def __init__(self, start: datetime | None = None, *, frozen: bool = False):
        if start is not None and start.tzinfo is None:
            # Naive datetimes are read as UTC, like ATLAS's own dates.
            start = start.replace(tzinfo=UTC)
        real_now = _time.time()
        self._frozen = frozen
        self._lock = threading.Lock()
        self._frozen_at = start.timestamp() if start is not None else real_now
        self._offset = (start.timestamp() - real_now) if start is not None else 0.0

    @property
    def frozen(self) -> bool:
        return self._frozen

    def time(self) -> float:
        """Seconds since the epoch, as the sandbox sees them."""
        with self._lock:
            if self._frozen:
                return self._frozen_at
            return _time.time() + self._offset

    def now(self) -> datetime:
        """An aware UTC datetime."""
        return datetime.fromtimestamp(self.time(), tz=UTC)

    def advance(self, seconds: float | timedelta) -> None:
        """Move the clock forward (or back, with a negative value)."""
        if isinstance(seconds, timedelta):
            seconds = seconds.total_seconds()
        with self._lock:
            if self._frozen:
                self._frozen_at += seconds
            else:
                self._offset += seconds

    def __repr__(self) -> str:
        state = "frozen" if self._frozen else "running"
        return f"<SandboxClock {state} at {self.now().isoformat()}>"
