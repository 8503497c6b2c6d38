"""Infinity Metrics settings: one file, driven by environment variables.

Production differs from development only by environment. The helpers below fail
loudly on junk (``DEBUG=maybe`` is an error, not ``True``).
"""

import os
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name, default=None):
    value = os.environ.get(name)
    return default if value is None or value == "" else value


def env_bool(name, default=False):
    value = env_str(name)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false), got {value!r}")


def env_int(name, default):
    value = env_str(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from None


def env_list(name, default=()):
    value = env_str(name)
    if value is None:
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]


def database_from_url(url):
    """``postgres://user:pass@host:port/name?opt=v`` or ``sqlite:///path`` → a DATABASES entry."""
    parts = urlsplit(url)
    options = dict(parse_qsl(parts.query))
    if parts.scheme in {"postgres", "postgresql", "pgsql"}:
        # Django turns psycopg's prepared statements off unless asked (prepare_threshold None);
        # the ingest INSERT asks for one and was planned afresh on every call without this
        # (~0.74 ms of server CPU per single-event write; ~0.32 ms prepared). ``?prepare_threshold=none`` turns them off, for
        # a pooler that cannot keep them (PgBouncer in transaction mode before 1.21).
        threshold = options.pop("prepare_threshold", "5")
        try:
            options["prepare_threshold"] = None if threshold.lower() == "none" else int(threshold)
        except ValueError:
            raise ImproperlyConfigured(f"DATABASE_URL prepare_threshold must be an integer or none, got {threshold!r}") from None
        # A 201 promises a durable row: commits wait for the WAL flush whatever the server's
        # default (a later -c wins, so this holds over one in the URL's ?options=).
        options["options"] = f"{options.get('options', '')} -c synchronous_commit=on".strip()
        # A server that accepts the connection and never answers (frozen, overloaded) fails the
        # request with a 503 after this many seconds instead of holding a thread for minutes.
        options.setdefault("connect_timeout", "5")
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parts.path.lstrip("/")) or "postgres",
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(parts.port or ""),
            "CONN_MAX_AGE": env_int("CONN_MAX_AGE", 60),
            # Off by default: a "SELECT 1" before every request's first query costs a round trip.
            # Without it, a connection the server dropped fails one request with a 503
            # (Retry-After) and is then replaced; DB_HEALTH_CHECKS=true trades speed for that.
            "CONN_HEALTH_CHECKS": env_bool("DB_HEALTH_CHECKS", False),
            "OPTIONS": options,
        }
    if parts.scheme == "sqlite":
        return sqlite_database(Path(unquote(parts.path)) if parts.path not in {"", "/"} else BASE_DIR / "db.sqlite3")
    raise ImproperlyConfigured(f"DATABASE_URL scheme {parts.scheme!r} is not supported (postgres:// or sqlite://)")


def sqlite_database(path):
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(path),
        "OPTIONS": {
            # WAL lets readers and one writer work across processes; IMMEDIATE takes
            # the write lock up front so concurrent writers wait instead of failing. FULL: a
            # commit reaches the disk before the 201 (NORMAL survives a crash of the process but
            # not of the machine; it measured 409-411 against 338-346 events/s, bench ingest on SQLite).
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
        },
        # A file, not :memory:, so that tests can run real server processes against it.
        "TEST": {"NAME": str(path.parent / f"test_{os.getpid()}.sqlite3")},
    }


DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY is required when DEBUG is off")
    SECRET_KEY = "insecure-development-key-set-SECRET_KEY-in-production"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "accounts",
    "events",
    "analytics",
]

MIDDLEWARE = [
    "infinity.middleware.ApiEnvelopeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Django's own, skipped for /api/v1 (see infinity.middleware._BrowserOnly):
    "infinity.middleware.BrowserSessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "infinity.middleware.BrowserCsrfViewMiddleware",
    "infinity.middleware.BrowserAuthenticationMiddleware",
    "infinity.middleware.BrowserMessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",  # everywhere: the API docs page is HTML
]

ROOT_URLCONF = "infinity.urls"
WSGI_APPLICATION = "infinity.wsgi.application"
APPEND_SLASH = False

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

DATA_DIR = Path(env_str("DATA_DIR", str(BASE_DIR / "var")))
DATA_DIR.mkdir(parents=True, exist_ok=True)
_database_url = env_str("DATABASE_URL")
DATABASES = {"default": database_from_url(_database_url) if _database_url else sqlite_database(DATA_DIR / "db.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL")
# Rate-limit counters and the API-key generation: Redis when REDIS_URL is set, otherwise a
# SQLite file that every worker process on this machine shares (infinity.counters).
RATELIMIT_STORE_PATH = env_str("RATELIMIT_STORE_PATH", str(DATA_DIR / "ratelimit.sqlite3"))
RATELIMIT_KEY_PREFIX = env_str("RATELIMIT_KEY_PREFIX", "im:rl")
RATE_LIMITS = {
    "events": env_int("RATE_LIMIT_EVENTS", 1000),  # per API key per minute
    "analytics": env_int("RATE_LIMIT_ANALYTICS", 100),  # per API key per minute
    "anon": env_int("RATE_LIMIT_ANON", 120),  # per client IP per minute, unauthenticated /api/v1
    "collector": env_int("RATE_LIMIT_COLLECTOR", 600),  # per client IP per minute, public tracker collector
}

# django-ratelimit counts password attempts (accounts.passwords) in this cache. Its counts
# must be atomic and shared by every worker process: Redis, or else the SQLite counter file.
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "ratelimit": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    if REDIS_URL
    else {"BACKEND": "infinity.counters.CounterCache"},
}
RATELIMIT_USE_CACHE = "ratelimit"
SILENCED_SYSTEM_CHECKS = [
    # W001 only says the backend is not on django-ratelimit's list; both have an atomic incr.
    "django_ratelimit.W001",
    # check --deploy looks for CsrfViewMiddleware by name; ours is a subclass
    # (infinity.middleware.BrowserCsrfViewMiddleware) that protects every page but the cookie-less /api/v1.
    "security.W003",
]
PASSWORD_GUESSES_PER_IP = env_str("PASSWORD_GUESSES_PER_IP", "20/10m")
PASSWORD_GUESSES_PER_USERNAME = env_str("PASSWORD_GUESSES_PER_USERNAME", "10/10m")

# Which X-Forwarded-For hops to believe: addresses/CIDRs of our reverse proxies.
TRUSTED_PROXIES = env_list("TRUSTED_PROXIES")

# Input limits (documented in the README; tests cover both sides of each).
MAX_BODY_BYTES = env_int("MAX_BODY_BYTES", 32 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
# manage.py collectstatic writes a gzipped copy beside each file, which WhiteNoise sends to the
# browsers that accept it. Collected files are served from STATIC_ROOT; without them, or with
# DEBUG (files being edited), straight from the apps' static/ folders, uncompressed.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = DEBUG or not STATIC_ROOT.is_dir()
WHITENOISE_AUTOREFRESH = DEBUG

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["accounts.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": [],
    "DEFAULT_PARSER_CLASSES": ["events.parsers.StrictJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "infinity.negotiation.JsonOnlyNegotiation",
    "EXCEPTION_HANDLER": "infinity.errors.api_exception_handler",
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_VERSIONING_CLASS": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Infinity Metrics API",
    "DESCRIPTION": "Privacy-first web analytics: send events and purchases, read analytics.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
}

SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_CONTENT_TYPE_NOSNIFF = True
# Behind a TLS-terminating proxy: SECURE_SSL_REDIRECT=true SECURE_HSTS_SECONDS=31536000.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
if TRUSTED_PROXIES:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "WARNING")},
}

# The dashboard (analytics.dashboard): its data requests count per signed-in user or per shared
# link (and client IP), per minute, apart from any API key's budget. Its password forms (the
# login, a shared link's password) use accounts.passwords' limits.
DASHBOARD_RATE_LIMIT = env_int("RATE_LIMIT_DASHBOARD", 600)
SHARE_RATE_LIMIT = env_int("RATE_LIMIT_SHARE", 300)
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
