"""Settings shared by every environment; every value comes from the environment (django-environ).

The defaults run the embedded setup: a SQLite file under var/, the django-q2 ORM broker and the
two sandboxes on loopback. Production sets DATABASE_URL to PostgreSQL and the real endpoints.
"""

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = BASE_DIR / "var"
VAR_DIR.mkdir(exist_ok=True)

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

SECRET_KEY = env("SECRET_KEY", default="insecure-local-only-change-me")
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "import_export",
    "django_q",
    "ledger_sync",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Serves the admin's static files from the app server itself, in the demo and behind gunicorn.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'ledger_sync.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web process read while the worker writes; the busy timeout makes a writer
    # wait for the lock instead of failing with "database is locked"; IMMEDIATE takes the write
    # lock at BEGIN so two writers never deadlock upgrading from a read lock.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": (
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=30000;"
            ),
        }
    )
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", 60)
    DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "structured": {
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
        },
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "structured"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    "loggers": {
        # urllib3 logs full URLs and, at DEBUG, headers: keep it quiet so no token leaks.
        "urllib3": {"level": "WARNING"},
    },
}

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "ledger_sync API",
    "DESCRIPTION": "Inbound webhooks and callbacks of ledger_sync.",
    "VERSION": "0.1.0",
}

# --- ATLAS ETRM -------------------------------------------------------------------------------
ATLAS_BASE_URL = env("ATLAS_BASE_URL", default="http://127.0.0.1:8101")
ATLAS_USERNAME = env("ATLAS_USERNAME", default="ledger-sync")
ATLAS_PASSWORD = env("ATLAS_PASSWORD", default="sandbox-password")
ATLAS_TRIGGER_STATUS = env.list("ATLAS_TRIGGER_STATUS", default=["Approved order by ETRM"])
ATLAS_WEBHOOK_SECRET = env("ATLAS_WEBHOOK_SECRET", default="sandbox-webhook-secret")
# Ids per read call and records per write call; API calls grow with batches, not records.
ATLAS_BATCH_SIZE = env.int("ATLAS_BATCH_SIZE", default=500)
# ATLAS allows 100 requests a minute per client; stay under it with headroom for clock skew.
ATLAS_REQUESTS_PER_MINUTE = env.int("ATLAS_REQUESTS_PER_MINUTE", default=90)
ATLAS_TIMEOUT_SECONDS = env.float("ATLAS_TIMEOUT_SECONDS", default=30.0)
ATLAS_MAX_RETRIES = env.int("ATLAS_MAX_RETRIES", default=5)
ATLAS_SYNC_INTERVAL_MINUTES = env.int("ATLAS_SYNC_INTERVAL_MINUTES", default=15)

# --- Gotransverse AR Ledger -------------------------------------------------------------------
GOTRANSVERSE_BASE_URL = env("GOTRANSVERSE_BASE_URL", default="http://127.0.0.1:8102")
GOTRANSVERSE_API_KEY = env("GOTRANSVERSE_API_KEY", default="sandbox-api-key")
GOTRANSVERSE_LEDGER_ID = env("GOTRANSVERSE_LEDGER_ID", default="1")
GOTRANSVERSE_TIMEOUT_SECONDS = env.float("GOTRANSVERSE_TIMEOUT_SECONDS", default=30.0)
GOTRANSVERSE_MAX_RETRIES = env.int("GOTRANSVERSE_MAX_RETRIES", default=5)
GOTRANSVERSE_SYNC_INTERVAL_MINUTES = env.int("GOTRANSVERSE_SYNC_INTERVAL_MINUTES", default=60)

# --- Initial posting settings (a finance lead changes them in the admin afterwards) ------------
LEDGER_ACCOUNT_RECEIVABLES = env("LEDGER_ACCOUNT_RECEIVABLES", default="1200")
LEDGER_ACCOUNT_PAYABLES = env("LEDGER_ACCOUNT_PAYABLES", default="2000")
LEDGER_ACCOUNT_OUTPUT_VAT = env("LEDGER_ACCOUNT_OUTPUT_VAT", default="2200")
LEDGER_ACCOUNT_INPUT_VAT = env("LEDGER_ACCOUNT_INPUT_VAT", default="1400")
LEDGER_ACCOUNT_BANK = env("LEDGER_ACCOUNT_BANK", default="1000")
JOURNAL_WORKFLOW = env("JOURNAL_WORKFLOW", default="review")
CLOSED_PERIOD_POLICY = env("CLOSED_PERIOD_POLICY", default="block")

# --- Sandboxes (python manage.py sandbox) -------------------------------------------------------
SANDBOX_HOST = "127.0.0.1"
SANDBOX_ATLAS_PORT = env.int("SANDBOX_ATLAS_PORT", default=8101)
SANDBOX_GOTRANSVERSE_PORT = env.int("SANDBOX_GOTRANSVERSE_PORT", default=8102)
SANDBOX_SEED = env.int("SANDBOX_SEED", default=2026)
SANDBOX_ORDERS = env.int("SANDBOX_ORDERS", default=120)
SANDBOX_WEBHOOK_URL = env(
    "SANDBOX_WEBHOOK_URL", default="http://127.0.0.1:8000/api/webhooks/atlas/"
)

# --- django-q2 --------------------------------------------------------------------------------
# The ORM broker has delivery receipts: a task whose worker died is handed out again once it
# has been in flight for `retry` seconds, so `retry` must exceed the slowest task (`timeout`),
# or a healthy long task would run twice at once. Sync schedules never catch up: one pass
# after downtime covers everything missed.
Q_CLUSTER = {
    "name": "ledger_sync",
    "orm": "default",
    "workers": env.int("Q_WORKERS", default=2),
    "timeout": env.int("Q_TIMEOUT_SECONDS", default=900),
    "retry": env.int("Q_RETRY_SECONDS", default=1200),
    "max_attempts": env.int("Q_MAX_ATTEMPTS", default=3),
    "catch_up": False,
    "save_limit": 1000,
    "ack_failures": True,
    "poll": 1,
    "label": "Task queue",
}
