"""Fast settings for the test suite: MD5 hashing, locmem cache, tasks run synchronously."""

import os

from .base import *  # noqa: F403
from .base import DATABASES, Q_CLUSTER

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
# Tests queue tasks and assert on them; django-q2 runs them in-process when sync is on.
Q_CLUSTER = {**Q_CLUSTER, "sync": True}
# The suite is never paced; pacing tests build a tight limiter explicitly.
ATLAS_PACING = "unlimited"
DEBUG = False
# Tests render admin pages without running collectstatic first.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # One database per CI run, so two runs on one server never collide.
    DATABASES["default"]["TEST"] = {
        "NAME": os.environ.get("TEST_DATABASE_NAME", "test_ledger_sync"),
    }
