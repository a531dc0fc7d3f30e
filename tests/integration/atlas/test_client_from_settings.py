"""atlas_client_from_settings: ATLAS_* settings in, a configured client with the right pacer out."""

from __future__ import annotations

from pathlib import Path

import pytest
from pyrate_limiter import InMemoryBucket, SQLiteBucket

from integration.atlas.client import AtlasClient
from integration.atlas.ratelimit import RequestPacer, UnlimitedPacer
from ledger_sync.services import remote
from ledger_sync.services.remote import (
    atlas_client_from_settings,
    atlas_pacer_from_settings,
    postgres_conninfo,
    sqlite_ratelimit_path,
)


@pytest.fixture(autouse=True)
def fresh_pacer_cache():
    remote._pacers.clear()
    yield
    for pacer in remote._pacers.values():
        pacer.close()
    remote._pacers.clear()


def test_client_takes_every_atlas_setting(settings):
    settings.ATLAS_BASE_URL = "https://atlas.example.com/"
    settings.ATLAS_USERNAME = "svc-ledger"
    settings.ATLAS_PASSWORD = "s3cret-pw"
    settings.ATLAS_BATCH_SIZE = 250
    settings.ATLAS_TIMEOUT_SECONDS = 12.5
    settings.ATLAS_MAX_RETRIES = 2
    recorded: list[float] = []

    client = atlas_client_from_settings(sleep=recorded.append)

    assert isinstance(client, AtlasClient)
    assert client.base_url == "https://atlas.example.com"
    assert client.batch_size == 250
    assert client.timeout == 12.5
    assert client.max_retries == 2
    assert client._sleep == recorded.append
    assert "s3cret-pw" not in repr(client)


def test_the_test_settings_make_the_suite_unpaced():
    assert isinstance(atlas_pacer_from_settings(), UnlimitedPacer)


@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
def test_database_pacing_on_sqlite_uses_a_file_beside_the_database(settings, tmp_path):
    settings.ATLAS_PACING = "database"
    settings.ATLAS_REQUESTS_PER_MINUTE = 90
    settings.DATABASES = {
        "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp_path / "db.sqlite3")}
    }

    pacer = atlas_pacer_from_settings()

    assert isinstance(pacer, RequestPacer)
    assert isinstance(pacer.bucket, SQLiteBucket)
    assert pacer.requests_per_minute == 90
    assert (tmp_path / "db.atlas-ratelimit.sqlite3").exists()
    assert atlas_pacer_from_settings() is pacer  # one per process, shared by every client


def test_an_in_memory_sqlite_database_puts_the_pacing_file_in_var(settings):
    path = sqlite_ratelimit_path({"NAME": ":memory:"})

    assert path == Path(settings.VAR_DIR) / "ledger_sync.atlas-ratelimit.sqlite3"


def test_memory_pacing_is_per_process(settings):
    settings.ATLAS_PACING = "memory"

    pacer = atlas_pacer_from_settings()

    assert isinstance(pacer.bucket, InMemoryBucket)


def test_an_unknown_pacing_setting_is_refused(settings):
    settings.ATLAS_PACING = "redis"

    with pytest.raises(ValueError, match="ATLAS_PACING"):
        atlas_pacer_from_settings()


def test_postgres_conninfo_carries_the_django_database_entry():
    conninfo = postgres_conninfo(
        {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": "ledger",
            "USER": "app",
            "PASSWORD": "pw",
            "HOST": "db.internal",
            "PORT": 5433,
            "OPTIONS": {"sslmode": "require", "pool": True},
        }
    )

    parts = dict(item.split("=", 1) for item in conninfo.split())
    assert parts["dbname"] == "ledger"
    assert parts["user"] == "app"
    assert parts["host"] == "db.internal"
    assert parts["port"] == "5433"
    assert parts["sslmode"] == "require"
    assert "pool" not in parts


@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
def test_a_client_from_settings_talks_to_atlas_and_counts_in_the_shared_window(
    atlas_sandbox, settings, tmp_path
):
    settings.ATLAS_PACING = "database"
    settings.ATLAS_REQUESTS_PER_MINUTE = 90
    settings.DATABASES = {
        "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp_path / "db.sqlite3")}
    }
    client = atlas_client_from_settings(sleep=pytest.fail)

    orders = client.get_orders()

    assert len(orders.records) + len(orders.errors) == len(atlas_sandbox.app.dataset.orders)
    assert client.stats.requests == 2  # token + orders
    assert atlas_pacer_from_settings().bucket.count() == 2
