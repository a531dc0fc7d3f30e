"""Production: PostgreSQL from DATABASE_URL, HTTPS only, secrets required."""

from .base import *  # noqa: F403
from .base import env

SECRET_KEY = env("SECRET_KEY")
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
