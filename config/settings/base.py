"""Settings shared by every environment; every value comes from the environment (django-environ).

The defaults run the embedded setup: a SQLite file under var/, the django-q2 ORM broker and the
two sandboxes on loopback. Production sets DATABASE_URL to PostgreSQL and the real endpoints.
"""

from decimal import Decimal
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = BASE_DIR / "var"
VAR_DIR.mkdir(exist_ok=True)

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

SECRET_KEY = env("SECRET_KEY", default="insecure-local-only-change-me")
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])

INSTALLED_APPS = [
    "ledger_sync.apps.BackOfficeAdminConfig",  # django.contrib.admin, with our AdminSite
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
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
# whitenoise warns on every request until collectstatic has run; the demo runs it.
STATIC_ROOT.mkdir(exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        # The fields services pass as `extra=` are kept: key=value for a terminal, or JSON.
        "text": {
            "()": "ledger_sync.logging.KeyValueFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
        },
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": env("LOG_FORMAT", default="text"),
        }
    },
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    "loggers": {
        # urllib3 logs full URLs and, at DEBUG, headers: keep it quiet so no token leaks.
        "urllib3": {"level": "WARNING"},
    },
}

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # Per API client (ledger_sync/api/throttling.py); over it → 429 with Retry-After.
    "DEFAULT_THROTTLE_RATES": {
        "payments": env("API_THROTTLE_PAYMENTS", default="600/min"),
        "invoices": env("API_THROTTLE_INVOICES", default="600/min"),
        "status": env("API_THROTTLE_STATUS", default="1200/min"),
    },
}
SPECTACULAR_SETTINGS = {
    "TITLE": "ledger_sync API",
    "DESCRIPTION": "Inbound webhooks and callbacks of ledger_sync.",
    "VERSION": "0.1.0",
    # Interactive docs (/api/docs/) from drf-spectacular-sidecar's bundled files: no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "CallbackStatusEnum": "ledger_sync.api.serializers.CALLBACK_STATUSES",
        "WebhookAckStatusEnum": "ledger_sync.api.serializers.WEBHOOK_ACK_STATUSES",
    },
}

# The API's per-client throttles count in this cache. The default (local memory) counts per
# process; with several gunicorn workers or machines set CACHE_URL to a shared cache:
# dbcache://ledger_sync_cache (after `manage.py createcachetable`), or redis://… with the
# redis package installed.
CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://")}

# --- ATLAS ETRM -------------------------------------------------------------------------------
# The defaults point at the local sandboxes (`manage.py sandbox`, SANDBOX_* below).
_SANDBOX_ATLAS_PORT = env.int("SANDBOX_ATLAS_PORT", default=8101)
_SANDBOX_GOTRANSVERSE_PORT = env.int("SANDBOX_GOTRANSVERSE_PORT", default=8102)
ATLAS_BASE_URL = env("ATLAS_BASE_URL", default=f"http://127.0.0.1:{_SANDBOX_ATLAS_PORT}")
ATLAS_USERNAME = env("ATLAS_USERNAME", default="ledger-sync")
ATLAS_PASSWORD = env("ATLAS_PASSWORD", default="sandbox-password")
ATLAS_TRIGGER_STATUS = env.list("ATLAS_TRIGGER_STATUS", default=["Approved order by ETRM"])
ATLAS_WEBHOOK_SECRET = env("ATLAS_WEBHOOK_SECRET", default="sandbox-webhook-secret")
# Ids per read call and records per write call; API calls grow with batches, not records.
ATLAS_BATCH_SIZE = env.int("ATLAS_BATCH_SIZE", default=500)
# ATLAS allows 100 requests a minute per client; stay under it with headroom for clock skew.
ATLAS_REQUESTS_PER_MINUTE = env.int("ATLAS_REQUESTS_PER_MINUTE", default=90)
# Where that budget is counted: "database" (shared by every process: a SQLite file beside the
# SQLite database, or a table in PostgreSQL), "memory" (this process only) or "unlimited".
ATLAS_PACING = env("ATLAS_PACING", default="database")
ATLAS_TIMEOUT_SECONDS = env.float("ATLAS_TIMEOUT_SECONDS", default=30.0)
ATLAS_MAX_RETRIES = env.int("ATLAS_MAX_RETRIES", default=5)
ATLAS_SYNC_INTERVAL_MINUTES = env.int("ATLAS_SYNC_INTERVAL_MINUTES", default=15)

# --- Gotransverse AR Ledger -------------------------------------------------------------------
GOTRANSVERSE_BASE_URL = env(
    "GOTRANSVERSE_BASE_URL", default=f"http://127.0.0.1:{_SANDBOX_GOTRANSVERSE_PORT}"
)
GOTRANSVERSE_API_KEY = env("GOTRANSVERSE_API_KEY", default="sandbox-api-key")
GOTRANSVERSE_LEDGER_ID = env("GOTRANSVERSE_LEDGER_ID", default="1")
if not GOTRANSVERSE_LEDGER_ID.strip().isdigit():
    # Refused at start-up: the ledger id is an int64 in every AR Ledger path.
    raise ImproperlyConfigured(
        f"GOTRANSVERSE_LEDGER_ID={GOTRANSVERSE_LEDGER_ID!r} is not a number; set it to the "
        "AR Ledger's id."
    )
GOTRANSVERSE_TIMEOUT_SECONDS = env.float("GOTRANSVERSE_TIMEOUT_SECONDS", default=30.0)
GOTRANSVERSE_MAX_RETRIES = env.int("GOTRANSVERSE_MAX_RETRIES", default=5)
GOTRANSVERSE_SYNC_INTERVAL_MINUTES = env.int("GOTRANSVERSE_SYNC_INTERVAL_MINUTES", default=60)

# --- ERP parties and counterparty matching --------------------------------------------------
# Code of an ERP party created for an unmatched counterparty; {number} is one above the highest
# code of the same pattern (the sample register uses BA-100001 upwards).
ERP_PARTY_CODE_PATTERN = env("ERP_PARTY_CODE_PATTERN", default="BA-{number:06d}")
# A proposal scoring at least this (0-100) is pre-selected for approval; below it needs a look.
ERP_MATCH_AUTO_SUGGEST_SCORE = env.int("ERP_MATCH_AUTO_SUGGEST_SCORE", default=70)
# Candidates proposed per counterparty.
ERP_MATCH_CANDIDATES = env.int("ERP_MATCH_CANDIDATES", default=3)

# --- Initial posting settings (a finance lead changes them in the admin afterwards) ------------
LEDGER_ACCOUNT_RECEIVABLES = env("LEDGER_ACCOUNT_RECEIVABLES", default="1200")
LEDGER_ACCOUNT_PAYABLES = env("LEDGER_ACCOUNT_PAYABLES", default="2000")
LEDGER_ACCOUNT_OUTPUT_VAT = env("LEDGER_ACCOUNT_OUTPUT_VAT", default="2200")
LEDGER_ACCOUNT_INPUT_VAT = env("LEDGER_ACCOUNT_INPUT_VAT", default="1400")
LEDGER_ACCOUNT_BANK = env("LEDGER_ACCOUNT_BANK", default="1000")
# Revenue / expense account for an item whose own GL is missing and whose counterparty's is not
# of the item's role; empty (the default): such an item blocks its order with the reason.
LEDGER_ACCOUNT_DEFAULT_REVENUE = env("LEDGER_ACCOUNT_DEFAULT_REVENUE", default="")
LEDGER_ACCOUNT_DEFAULT_EXPENSE = env("LEDGER_ACCOUNT_DEFAULT_EXPENSE", default="")
JOURNAL_WORKFLOW = env("JOURNAL_WORKFLOW", default="review")
CLOSED_PERIOD_POLICY = env("CLOSED_PERIOD_POLICY", default="block")
# Refuse an unknown value at start-up: posting treats any workflow but "review" as auto, so a
# typo ("Review") would post journals no accountant saw.
for _name, _value, _allowed in (
    ("JOURNAL_WORKFLOW", JOURNAL_WORKFLOW, ("auto", "review")),
    ("CLOSED_PERIOD_POLICY", CLOSED_PERIOD_POLICY, ("block", "roll_forward")),
):
    if _value not in _allowed:
        raise ImproperlyConfigured(
            f"{_name}={_value!r} is not known; use one of: {', '.join(_allowed)}."
        )

# --- Posting journals and writing back to ATLAS (services/posting.py, services/writeback.py) ----
# Transactions per bulk call to the AR Ledger; calls grow with batches, not journals.
LEDGER_POST_BATCH_SIZE = env.int("LEDGER_POST_BATCH_SIZE", default=100)
# A claim older than this is taken to belong to a worker that died, and may be taken over.
LEDGER_CLAIM_TIMEOUT_SECONDS = env.int("LEDGER_CLAIM_TIMEOUT_SECONDS", default=900)
# Backoff of transient failures (posting and write-backs): base * 2^(attempts-1), capped.
LEDGER_RETRY_BASE_SECONDS = env.int("LEDGER_RETRY_BASE_SECONDS", default=60)
LEDGER_RETRY_MAX_SECONDS = env.int("LEDGER_RETRY_MAX_SECONDS", default=3600)
# The ERP document code written to the ATLAS order: {transaction_id} is the AR Ledger's id,
# {date} the journal's transaction date, {order_id} the ATLAS order id, {revision} the revision.
ERP_CODE_PATTERN = env("ERP_CODE_PATTERN", default="ERP-DOC-{date:%Y%m%d}-{transaction_id}")
# True: the ERP issues invoice numbers and sends them through the invoice callback.
INVOICE_NUMBERS_FROM_ERP = env.bool("INVOICE_NUMBERS_FROM_ERP", default=False)
INVOICE_NUMBER_PATTERN = env("INVOICE_NUMBER_PATTERN", default="{prefix}-{year}-{number:04d}")
INVOICE_PREFIX_STANDARD = env("INVOICE_PREFIX_STANDARD", default="INV")
INVOICE_PREFIX_SELF_BILLING = env("INVOICE_PREFIX_SELF_BILLING", default="SB")
# Our ERP reference of the invoice (ATLAS `externalId`): derived from the order alone, so that
# it can be looked up in ATLAS even if our own record of it were lost.
INVOICE_EXTERNAL_ID_PATTERN = env("INVOICE_EXTERNAL_ID_PATTERN", default="LS-INV-{order_id}")
JOURNAL_CYCLE_INTERVAL_MINUTES = env.int("JOURNAL_CYCLE_INTERVAL_MINUTES", default=15)
# The error queue is refreshed from its sources after each cycle, mirror pass and inbound sweep,
# and on this schedule too (services/problems.py); never on page load.
PROBLEMS_REFRESH_INTERVAL_MINUTES = env.int("PROBLEMS_REFRESH_INTERVAL_MINUTES", default=5)

# --- Reconciliation (services/reconciliation.py): ATLAS vs our journals vs the AR Ledger
# Every 6 hours by default; each run reads the whole ledger once (paged), so not every minute.
RECONCILE_INTERVAL_MINUTES = env.int("RECONCILE_INTERVAL_MINUTES", default=360)

# --- Inbound REST: webhooks, payment and invoice callbacks (ledger_sync/api, services/inbound.py)
# Largest request body the API accepts; bigger → 413 before anything is parsed or stored.
API_MAX_BODY_BYTES = env.int("API_MAX_BODY_BYTES", default=64 * 1024)
# Refuse plain HTTP on the API (production sets it; a redirect would invite a resend in clear).
API_REQUIRE_HTTPS = env.bool("API_REQUIRE_HTTPS", default=False)
# A payment may take its invoice past the invoice amount by at most this much (e.g. rounding).
PAYMENT_OVERPAYMENT_TOLERANCE = Decimal(env("PAYMENT_OVERPAYMENT_TOLERANCE", default="0.00"))
# Inbound work left over (ATLAS down, a worker died) is picked up by this schedule.
INBOUND_SWEEP_INTERVAL_MINUTES = env.int("INBOUND_SWEEP_INTERVAL_MINUTES", default=1)
# Automatic retries of a failed webhook delivery or callback before it waits for a person.
INBOUND_MAX_ATTEMPTS = env.int("INBOUND_MAX_ATTEMPTS", default=12)
# A delivery or callback claimed longer ago than this belongs to a worker that died.
INBOUND_CLAIM_TIMEOUT_SECONDS = env.int("INBOUND_CLAIM_TIMEOUT_SECONDS", default=900)

# --- Sandboxes (python manage.py sandbox) -------------------------------------------------------
SANDBOX_HOST = "127.0.0.1"
SANDBOX_ATLAS_PORT = _SANDBOX_ATLAS_PORT
SANDBOX_GOTRANSVERSE_PORT = _SANDBOX_GOTRANSVERSE_PORT
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
