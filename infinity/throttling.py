"""Rate limits: DRF throttle classes over an atomic counter shared by every worker.

Fixed one-minute windows. Each request increments ``<prefix>:<scope>:<ident>:<window>``
atomically (Redis INCR, or an SQLite UPSERT … RETURNING when there is no Redis) and is
allowed while the count is ≤ the limit, so the 1000th request in a window passes and
the 1001st is refused, however many processes serve them. DRF's stock throttles do a
non-atomic read-modify-write and are not used.

If the shared store fails we fail open to a per-process counter and log it: the API
keeps answering rather than returning 500 or blanket 429s.

The throttle leaves (limit, remaining, reset) on the Django request; the middleware
turns it into ``X-RateLimit-*`` headers on every /api/v1 response.
"""

import hashlib
import logging
import sqlite3
import threading
import time

from django.conf import settings
from rest_framework.throttling import BaseThrottle

from infinity.clientip import client_ip

logger = logging.getLogger("infinity.ratelimit")
WINDOW = 60


class RedisCounter:
    def __init__(self, url):
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)

    def hit(self, key, ttl):
        pipe = self.client.pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, ttl, nx=True)
        count, _ = pipe.execute()
        return int(count)


class SQLiteCounter:
    """Counters in a small SQLite file shared by the processes of one machine."""

    def __init__(self, path):
        self.path = path
        self.local = threading.local()
        self.last_purge = 0.0

    def _conn(self):
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=10, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS counters (key TEXT PRIMARY KEY, count INTEGER NOT NULL, expires REAL NOT NULL)"
            )
            self.local.conn = conn
        return conn

    def hit(self, key, ttl):
        conn = self._conn()
        now = time.time()
        (count,) = conn.execute(
            "INSERT INTO counters (key, count, expires) VALUES (?, 1, ?) "
            "ON CONFLICT(key) DO UPDATE SET count = count + 1 RETURNING count",
            (key, now + ttl),
        ).fetchone()
        if now - self.last_purge > WINDOW:
            self.last_purge = now
            conn.execute("DELETE FROM counters WHERE expires < ?", (now,))
        return count


class LocalCounter:
    """Per-process fallback when the shared store is unreachable."""

    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {}

    def hit(self, key, ttl):
        now = time.time()
        with self.lock:
            if len(self.counts) > 10000:
                self.counts = {k: v for k, v in self.counts.items() if v[1] > now}
            count, expires = self.counts.get(key, (0, now + ttl))
            self.counts[key] = (count + 1, expires)
            return count + 1


class CounterStore:
    """The shared store with a logged, per-process fail-open fallback."""

    def __init__(self):
        self.primary = None
        self.fallback = LocalCounter()
        self.last_warning = 0.0

    def _primary(self):
        if self.primary is None:
            if settings.REDIS_URL:
                self.primary = RedisCounter(settings.REDIS_URL)
            else:
                self.primary = SQLiteCounter(settings.RATELIMIT_STORE_PATH)
        return self.primary

    def hit(self, key, ttl):
        try:
            return self._primary().hit(key, ttl)
        except Exception as exc:  # the limiter must never take the API down
            now = time.time()
            if now - self.last_warning > 10:
                self.last_warning = now
                logger.warning("rate-limit store unavailable (%s); failing open to a per-process limit", exc)
            return self.fallback.hit(key, ttl)


_store = None
_store_lock = threading.Lock()


def get_store():
    global _store
    if _store is None:
        with _store_lock:
            if _store is None:
                _store = CounterStore()
    return _store


def reset_store():
    """Forget the cached store (tests change settings between runs)."""
    global _store
    _store = None


def consume(request, scope, ident, limit, *, now=None):
    """Count one request against ``scope``/``ident``; record the header state; return allowed."""
    now = time.time() if now is None else now
    window = int(now // WINDOW)
    reset = (window + 1) * WINDOW
    key = f"{settings.RATELIMIT_KEY_PREFIX}:{scope}:{ident}:{window}"
    count = get_store().hit(key, WINDOW + 5)
    state = (limit, max(0, limit - count), reset)
    django_request = getattr(request, "_request", request)
    django_request.rate_limit = state
    return count <= limit


def consume_anonymous(request):
    return consume(request, "anon", f"ip:{client_ip(request)}", settings.RATE_LIMITS["anon"])


class ScopedRateThrottle(BaseThrottle):
    """Per API key for authenticated requests, per client IP otherwise."""

    scope = None

    def allow_request(self, request, view):
        api_key = request.auth
        if api_key is None:
            allowed = consume_anonymous(request)
        else:
            allowed = consume(request, self.scope, f"key:{api_key.pk}", settings.RATE_LIMITS[self.scope])
        return allowed

    def wait(self):
        return max(1, WINDOW - int(time.time()) % WINDOW)


class EventsThrottle(ScopedRateThrottle):
    scope = "events"


class AnalyticsThrottle(ScopedRateThrottle):
    scope = "analytics"


class CollectorThrottle(BaseThrottle):
    """Per client IP for the public collector. The counter key holds a hash of the IP, not the IP."""

    def allow_request(self, request, view):
        ip_hash = hashlib.sha256(f"{settings.SECRET_KEY}:{client_ip(request)}".encode()).hexdigest()[:20]
        return consume(request, "collector", f"ip:{ip_hash}", settings.RATE_LIMITS["collector"])

    def wait(self):
        return max(1, WINDOW - int(time.time()) % WINDOW)
