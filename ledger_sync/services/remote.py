"""Remote clients built from settings: the one place that turns ATLAS_* settings into a client.

Services and tasks call `atlas_client_from_settings()` for a fresh client (its own token, session
and stats, so a SyncRun counts only its own requests) that shares this process's pacer, which
in turn shares its request window with every other process through the database.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from psycopg.conninfo import make_conninfo

from integration.atlas.client import AtlasClient
from integration.atlas.ratelimit import (
    Pacer,
    UnlimitedPacer,
    memory_pacer,
    postgres_pacer,
    sqlite_pacer,
)
from integration.gotransverse.client import GotransverseClient

PACING_CHOICES = ("database", "memory", "unlimited")
RATELIMIT_FILE_SUFFIX = ".atlas-ratelimit.sqlite3"

_pacers: dict[tuple[Any, ...], Pacer] = {}
_pacers_lock = threading.Lock()


def atlas_client_from_settings(*, sleep: Callable[[float], None] = time.sleep) -> AtlasClient:
    """A new AtlasClient for settings.ATLAS_*, paced by the process-wide shared pacer."""
    return AtlasClient(
        base_url=settings.ATLAS_BASE_URL,
        username=settings.ATLAS_USERNAME,
        password=settings.ATLAS_PASSWORD,
        batch_size=settings.ATLAS_BATCH_SIZE,
        limiter=atlas_pacer_from_settings(),
        timeout=settings.ATLAS_TIMEOUT_SECONDS,
        max_retries=settings.ATLAS_MAX_RETRIES,
        sleep=sleep,
    )


def gotransverse_client_from_settings(
    *, sleep: Callable[[float], None] = time.sleep
) -> GotransverseClient:
    """A new GotransverseClient for settings.GOTRANSVERSE_* (its own session and stats)."""
    return GotransverseClient(
        base_url=settings.GOTRANSVERSE_BASE_URL,
        api_key=settings.GOTRANSVERSE_API_KEY,
        timeout=settings.GOTRANSVERSE_TIMEOUT_SECONDS,
        max_retries=settings.GOTRANSVERSE_MAX_RETRIES,
        sleep=sleep,
    )


def gotransverse_ledger_id(ledger_id: int | None = None) -> int:
    """The ledger to post to: the one asked for, else GOTRANSVERSE_LEDGER_ID."""
    return int(ledger_id if ledger_id is not None else settings.GOTRANSVERSE_LEDGER_ID)


def atlas_pacer_from_settings() -> Pacer:
    """The pacer for settings.ATLAS_PACING, built once per process and reused.

    "database" follows DATABASES["default"]: PostgreSQL → a table in that database; SQLite → a
    SQLite file beside the database file (its own file, so the pacer's short write locks never
    contend with Django's). Keyed by the process id as well: a forked worker must not share
    its parent's database connections.
    """
    pacing = getattr(settings, "ATLAS_PACING", "database")
    if pacing not in PACING_CHOICES:
        raise ValueError(f"ATLAS_PACING must be one of {PACING_CHOICES}, got {pacing!r}")
    if pacing == "unlimited":
        return UnlimitedPacer()
    per_minute = int(settings.ATLAS_REQUESTS_PER_MINUTE)
    if pacing == "memory":
        key: tuple[Any, ...] = (os.getpid(), "memory", per_minute)
        return _cached(key, lambda: memory_pacer(requests_per_minute=per_minute))

    database = settings.DATABASES["default"]
    engine = database["ENGINE"]
    if engine == "django.db.backends.postgresql":
        conninfo = postgres_conninfo(database)
        key = (os.getpid(), "postgres", conninfo, per_minute)
        return _cached(
            key, lambda: postgres_pacer(conninfo=conninfo, requests_per_minute=per_minute)
        )
    if engine == "django.db.backends.sqlite3":
        path = sqlite_ratelimit_path(database)
        key = (os.getpid(), "sqlite", str(path), per_minute)
        return _cached(key, lambda: sqlite_pacer(path=path, requests_per_minute=per_minute))
    raise ValueError(
        f"ATLAS_PACING=database supports SQLite and PostgreSQL, not {engine}; "
        "set ATLAS_PACING=memory for a single process"
    )


def sqlite_ratelimit_path(database: dict[str, Any]) -> Path:
    """`var/ledger_sync.sqlite3` → `var/ledger_sync.atlas-ratelimit.sqlite3`."""
    name = str(database.get("NAME") or "")
    if not name or name == ":memory:" or name.startswith("file:"):
        # An in-memory database has no "beside": fall back to the project's var/ directory.
        return Path(settings.VAR_DIR) / f"ledger_sync{RATELIMIT_FILE_SUFFIX}"
    path = Path(name)
    return path.with_name(path.stem + RATELIMIT_FILE_SUFFIX)


def postgres_conninfo(database: dict[str, Any]) -> str:
    """A libpq connection string for a Django PostgreSQL DATABASES entry."""
    options = dict(database.get("OPTIONS") or {})
    # Django-only keys that libpq would refuse.
    for django_only in ("pool", "server_side_binding", "assume_role", "isolation_level"):
        options.pop(django_only, None)
    params = {
        "dbname": database.get("NAME") or None,
        "user": database.get("USER") or None,
        "password": database.get("PASSWORD") or None,
        "host": database.get("HOST") or None,
        "port": str(database["PORT"]) if database.get("PORT") else None,
        "application_name": "ledger_sync-atlas-pacing",
        **options,
    }
    return make_conninfo(**{key: value for key, value in params.items() if value is not None})


def _cached(key: tuple[Any, ...], build: Callable[[], Pacer]) -> Pacer:
    with _pacers_lock:
        pacer = _pacers.get(key)
        if pacer is None:
            pacer = _pacers[key] = build()
        return pacer
