"""Production: PostgreSQL from DATABASE_URL, HTTPS only, secrets required."""

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F403
from .base import env

SECRET_KEY = env("SECRET_KEY")
# Required: base.py's default is the sandbox's, public in this repository; with it anyone could
# sign webhooks (each costs ATLAS calls from the 100-a-minute budget).
ATLAS_WEBHOOK_SECRET = env("ATLAS_WEBHOOK_SECRET")
SANDBOX_WEBHOOK_SECRET = "sandbox-webhook-secret"  # noqa: S105 - refused, not used
if ATLAS_WEBHOOK_SECRET == SANDBOX_WEBHOOK_SECRET or len(ATLAS_WEBHOOK_SECRET) < 16:
    raise ImproperlyConfigured(
        "ATLAS_WEBHOOK_SECRET must be the secret agreed with ATLAS (16 characters or more), "
        "not the sandbox's default."
    )
DEBUG = False
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
# The API refuses plain HTTP with a 403 instead of redirecting: a client that followed the
# redirect would already have sent its token and body in clear, and would resend them.
SECURE_REDIRECT_EXEMPT = [r"^api/"]
API_REQUIRE_HTTPS = True
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_HSTS_SECONDS = 31536000
SECURE_CONTENT_TYPE_NOSNIFF = True
