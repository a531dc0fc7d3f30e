"""Fault injection shared by the sandboxes: errors, slow answers, 429 bursts, expiring tokens.

Each sandbox asks `FaultConfig.next_fault(path)` once per request, before doing any work, and
applies what it gets back: sleep `delay_seconds` (a real sleep: it exists to provoke client
timeouts), answer `status` with its own error body (and `Retry-After` when given), and/or expire
every token issued so far (`expire_tokens`) so that the request meets a 401 like a token that
ran out mid-run. The configuration is thread-safe and can be changed while the sandbox serves
(the control endpoints do), and the random draws come from a seeded RNG so a run can be replayed.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

DEFAULT_ERROR_STATUSES: tuple[int, ...] = (500, 502, 503)
# Control and health paths stay reachable whatever the faults, so a test can always turn them off.
DEFAULT_EXEMPT_PREFIXES: tuple[str, ...] = ("/_sandbox",)


@dataclass(frozen=True)
class Fault:
    """What to do to one request. A fault may both delay and fail a request."""

    kind: str  # "error", "slow", "rate_limit", "expire_tokens"
    status: int | None = None
    message: str = ""
    delay_seconds: float = 0.0
    retry_after: int | None = None
    expire_tokens: bool = False


class FaultConfig:
    """Run-time fault settings for one sandbox.

    error_rate: share of requests (0..1) answered with one of `error_statuses` (500/502/503).
    slow_rate / slow_seconds: share of requests delayed by `slow_seconds` before they are served.
    burst_429(count, retry_after): the next `count` requests get 429.
    expire_tokens_at_request(n): the n-th request from now (1 = the next) finds its token expired.
    exempt_prefixes: paths starting with one of these are never faulted nor counted.
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        error_rate: float = 0.0,
        slow_rate: float = 0.0,
        slow_seconds: float = 2.0,
        error_statuses: Iterable[int] = DEFAULT_ERROR_STATUSES,
        exempt_prefixes: Iterable[str] = DEFAULT_EXEMPT_PREFIXES,
    ):
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._seed = seed
        self.error_rate = error_rate
        self.slow_rate = slow_rate
        self.slow_seconds = slow_seconds
        self.error_statuses = tuple(error_statuses)
        self.exempt_prefixes = tuple(exempt_prefixes)
        self._burst_remaining = 0
        self._burst_retry_after: int | None = None
        self._expire_countdown: int | None = None
        self._requests_seen = 0
        self.applied: Counter[str] = Counter()

    # --- configuration -------------------------------------------------------------------------

    @property
    def error_rate(self) -> float:
        return self._error_rate

    @error_rate.setter
    def error_rate(self, value: float) -> None:
        self._error_rate = _share("error_rate", value)

    @property
    def slow_rate(self) -> float:
        return self._slow_rate

    @slow_rate.setter
    def slow_rate(self, value: float) -> None:
        self._slow_rate = _share("slow_rate", value)

    def update(self, **settings: Any) -> None:
        """Change several settings at once (the control endpoint's entry point).

        Accepts error_rate, slow_rate, slow_seconds, error_statuses, seed, burst_429 (a count),
        retry_after (for that burst), expire_tokens_at_request (n). Unknown names are refused.
        """
        allowed = {
            "error_rate",
            "slow_rate",
            "slow_seconds",
            "error_statuses",
            "seed",
            "burst_429",
            "retry_after",
            "expire_tokens_at_request",
        }
        unknown = set(settings) - allowed
        if unknown:
            raise ValueError(f"unknown fault settings: {', '.join(sorted(unknown))}")
        with self._lock:
            if "error_rate" in settings:
                self.error_rate = float(settings["error_rate"])
            if "slow_rate" in settings:
                self.slow_rate = float(settings["slow_rate"])
            if "slow_seconds" in settings:
                self.slow_seconds = float(settings["slow_seconds"])
            if "error_statuses" in settings:
                self.error_statuses = tuple(int(s) for s in settings["error_statuses"])
            if "seed" in settings:
                self._seed = int(settings["seed"])
                self._rng = random.Random(self._seed)
        if settings.get("burst_429"):
            retry_after = settings.get("retry_after")
            self.burst_429(
                int(settings["burst_429"]), None if retry_after is None else int(retry_after)
            )
        if settings.get("expire_tokens_at_request"):
            self.expire_tokens_at_request(int(settings["expire_tokens_at_request"]))

    def burst_429(self, count: int, retry_after: int | None = None) -> None:
        """The next `count` requests are answered 429 (with Retry-After when given)."""
        if count < 0:
            raise ValueError("burst_429 count must be >= 0")
        with self._lock:
            self._burst_remaining = count
            self._burst_retry_after = retry_after

    def expire_tokens_at_request(self, n: int = 1) -> None:
        """The n-th request from now (1 = the next one) finds every earlier token expired."""
        if n < 1:
            raise ValueError("expire_tokens_at_request needs n >= 1")
        with self._lock:
            self._expire_countdown = n

    def clear(self) -> None:
        """No faults any more (rates to zero, pending bursts and expiries dropped)."""
        with self._lock:
            self._error_rate = 0.0
            self._slow_rate = 0.0
            self._burst_remaining = 0
            self._burst_retry_after = None
            self._expire_countdown = None

    def snapshot(self) -> dict[str, Any]:
        """The current settings and counts, for the control endpoint and test messages."""
        with self._lock:
            return {
                "seed": self._seed,
                "errorRate": self._error_rate,
                "slowRate": self._slow_rate,
                "slowSeconds": self.slow_seconds,
                "errorStatuses": list(self.error_statuses),
                "burst429Remaining": self._burst_remaining,
                "expireTokensAtRequest": self._expire_countdown,
                "requestsSeen": self._requests_seen,
                "applied": dict(self.applied),
            }

    # --- per request ---------------------------------------------------------------------------

    def is_exempt(self, path: str) -> bool:
        return any(path.startswith(prefix) for prefix in self.exempt_prefixes)

    def next_fault(self, path: str) -> Fault | None:
        """The fault to apply to this request, or None. Call once per request."""
        if self.is_exempt(path):
            return None
        with self._lock:
            self._requests_seen += 1
            expire = False
            if self._expire_countdown is not None:
                self._expire_countdown -= 1
                if self._expire_countdown <= 0:
                    self._expire_countdown = None
                    expire = True
                    self.applied["expire_tokens"] += 1
            if self._burst_remaining > 0:
                self._burst_remaining -= 1
                self.applied["rate_limit"] += 1
                return Fault(
                    kind="rate_limit",
                    status=429,
                    message="Too many requests (injected fault)",
                    retry_after=self._burst_retry_after,
                    expire_tokens=expire,
                )
            # Always draw both numbers so that a given seed gives the same sequence of faults
            # whatever the rates are changed to mid-run.
            error_draw = self._rng.random()
            slow_draw = self._rng.random()
            status_draw = self._rng.choice(self.error_statuses) if self.error_statuses else 500
            delay = self.slow_seconds if slow_draw < self._slow_rate else 0.0
            if error_draw < self._error_rate:
                self.applied["error"] += 1
                if delay:
                    self.applied["slow"] += 1
                return Fault(
                    kind="error",
                    status=status_draw,
                    message=f"Service temporarily unavailable (injected {status_draw})",
                    delay_seconds=delay,
                    expire_tokens=expire,
                )
            if delay:
                self.applied["slow"] += 1
                return Fault(kind="slow", delay_seconds=delay, expire_tokens=expire)
            if expire:
                return Fault(kind="expire_tokens", expire_tokens=True)
            return None


def _share(name: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1, got {value}")
    return float(value)
