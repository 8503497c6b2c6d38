"""Counters shared by every worker process: rate-limit windows and the API-key generation.

Redis when REDIS_URL is set (redis-py: ``redis://``, ``rediss://``, ``unix://``), otherwise a
small SQLite file that the processes of one machine share. ``get_store()`` puts either behind
a circuit breaker: when the shared store fails, counting falls back to this process and is
logged, and a hung store costs one timeout per cool-down instead of one per request.
"""

import hashlib
import logging
import sqlite3
import threading
import time

import redis
from django.conf import settings
from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache

logger = logging.getLogger("infinity.ratelimit")

REDIS_TIMEOUT = 0.5  # seconds, to connect and for each reply
COOL_DOWN = 1.0  # seconds after a failure before one request tries the store again

# INCR and the window's expiry in one atomic step: a key never outlives its window.
_HIT = "local n = redis.call('INCR', KEYS[1]) if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end return n"
_HIT_SHA = hashlib.sha1(_HIT.encode()).hexdigest()
# The same hit, answering a second counter's value too: an API request's rate limit and the
# key generation its cached key is confirmed against, in one round trip.
_HIT_READ = (
    "local n = redis.call('INCR', KEYS[1]) if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end "
    "return {n, tonumber(redis.call('GET', KEYS[2]) or 0)}"
)
_HIT_READ_SHA = hashlib.sha1(_HIT_READ.encode()).hexdigest()


class RedisCounters:
    """Counters in Redis: one redis-py connection per thread, spoken to directly.

    redis-py's Connection brings the URL forms, TLS, unix sockets, AUTH, SELECT and the reply
    parser; the client's pool and retry layers on top of it cost each API request as much as
    the rest of its rate limiting. A connection Redis closed (a restart) is replaced and the
    command sent again once; any other failure, a timeout included, goes to the breaker.
    """

    def __init__(self, url):
        self.pool = redis.ConnectionPool.from_url(url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT)
        self.local = threading.local()

    def call(self, *command):
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = self.pool.make_connection()
        for attempt in (1, 2):
            try:
                conn.send_command(*command)
                return conn.read_response()
            except redis.ConnectionError:
                conn.disconnect()
                if attempt == 2:
                    raise
            except BaseException:
                conn.disconnect()
                raise

    def hit(self, key: str, ttl: int) -> int:
        try:
            return self.call("EVALSHA", _HIT_SHA, 1, key, ttl)
        except redis.exceptions.NoScriptError:  # a restarted Redis has forgotten it
            return self.call("EVAL", _HIT, 1, key, ttl)

    def hit_and_read(self, key: str, ttl: int, read: str) -> tuple[int, int]:
        try:
            return tuple(self.call("EVALSHA", _HIT_READ_SHA, 2, key, read, ttl))
        except redis.exceptions.NoScriptError:
            return tuple(self.call("EVAL", _HIT_READ, 2, key, read, ttl))

    def read(self, key: str) -> int:
        return int(self.call("GET", key) or 0)

    def bump(self, key: str) -> None:
        self.call("INCR", key)


class SQLiteCounters:
    """Counters in a SQLite file shared by the processes of one machine."""

    def __init__(self, path):
        self.path = path
        self.local = threading.local()
        self.last_purge = 0.0

    def connection(self):
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

    def hit(self, key: str, ttl: float) -> int:
        conn = self.connection()
        now = time.time()
        (count,) = conn.execute(
            "INSERT INTO counters (key, count, expires) VALUES (?, 1, ?) "
            "ON CONFLICT(key) DO UPDATE SET count = count + 1 RETURNING count",
            (key, now + ttl),
        ).fetchone()
        if now - self.last_purge > 60:
            self.last_purge = now
            conn.execute("DELETE FROM counters WHERE expires < ?", (now,))
        return count

    def hit_and_read(self, key: str, ttl: float, read: str) -> tuple[int, int]:
        return self.hit(key, ttl), self.read(read)

    def read(self, key: str) -> int:
        row = self.connection().execute("SELECT count FROM counters WHERE key = ?", (key,)).fetchone()
        return row[0] if row else 0

    def bump(self, key: str) -> None:
        self.connection().execute(
            "INSERT INTO counters (key, count, expires) VALUES (?, 1, 1e300) ON CONFLICT(key) DO UPDATE SET count = count + 1",
            (key,),
        )


class LocalCounters:
    """This process's counters, used while the shared store is unreachable."""

    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {}

    def hit(self, key: str, ttl: float) -> int:
        now = time.time()
        with self.lock:
            if len(self.counts) > 10_000:
                self.counts = {k: v for k, v in self.counts.items() if v[1] > now}
            count, expires = self.counts.get(key, (0, now + ttl))
            self.counts[key] = (count + 1, expires)
            return count + 1


class CounterStore:
    """The shared store behind a circuit breaker, with a per-process fallback.

    A failure (error, refused connection, timeout) opens the breaker: for ``COOL_DOWN``
    seconds ``hit`` counts in this process and ``read`` answers None, without waiting for the
    store. Then one caller probes it while the others keep to the fallback; success closes the
    breaker. A short cool-down lets every worker count in the store again within about a
    second of its return.
    """

    def __init__(self, primary):
        self.primary = primary
        self.fallback = LocalCounters()
        self.lock = threading.Lock()
        self.open_until = 0.0  # time.monotonic() before which the store is not tried; 0: closed
        self.opened_at = 0.0

    def _call(self, method, *args):
        """``method`` of the store, or ``_DOWN`` when it failed or the breaker kept it from being asked."""
        if self.open_until:
            now = time.monotonic()
            with self.lock:
                if now < self.open_until:
                    return _DOWN
                self.open_until = now + COOL_DOWN  # this caller probes; the others keep to the fallback
        try:
            result = getattr(self.primary, method)(*args)
        except Exception as exc:  # the limiter must never take the API down
            self._failed(exc)
            return _DOWN
        if self.open_until:
            self._recovered()
        return result

    def _failed(self, exc):
        now = time.monotonic()
        with self.lock:
            opening = not self.open_until
            self.open_until = now + COOL_DOWN
            if opening:
                self.opened_at = now
        if opening:
            logger.warning("rate-limit store unavailable (%s); failing open to a per-process limit", exc)

    def _recovered(self):
        with self.lock:
            closing, self.open_until = bool(self.open_until), 0.0
        if closing:
            logger.warning("rate-limit store answers again after %.1f s; counting in it again", time.monotonic() - self.opened_at)

    def hit(self, key: str, ttl: int) -> int:
        """Count one hit on ``key`` (expiring ``ttl`` seconds after its first); the new count."""
        count = self._call("hit", key, ttl)
        return self.fallback.hit(key, ttl) if count is _DOWN else count

    def hit_and_read(self, key: str, ttl: int, read: str) -> tuple[int, int | None]:
        """``hit(key, ttl)`` and ``read(read)`` in one round trip: (new count, value or None)."""
        result = self._call("hit_and_read", key, ttl, read)
        return (self.fallback.hit(key, ttl), None) if result is _DOWN else result

    def read(self, key: str) -> int | None:
        """A counter's value, or None when the shared store cannot say."""
        value = self._call("read", key)
        return None if value is _DOWN else value

    def bump(self, key: str) -> None:
        """Add one to a never-expiring counter; raises when the store is down. Tried even while
        the breaker is open: workers whose store answers must hear of the change."""
        self.primary.bump(key)


_DOWN = object()
_store = None
_store_lock = threading.Lock()


def get_store() -> CounterStore:
    """This process's store, built from the settings on first use."""
    global _store
    if _store is None:
        with _store_lock:
            if _store is None:
                if settings.REDIS_URL:
                    _store = CounterStore(RedisCounters(settings.REDIS_URL))
                else:
                    _store = CounterStore(SQLiteCounters(settings.RATELIMIT_STORE_PATH))
    return _store


def reset_store() -> None:
    """Forget the store (tests change settings between runs)."""
    global _store
    _store = None


class CounterCache(BaseCache):
    """A Django cache of integers in the SQLite counter file (RATELIMIT_STORE_PATH), for
    django-ratelimit without Redis.

    Its ``add`` and ``incr`` are single atomic statements and every worker process of the
    machine shares the file, which Django's local-memory and database caches cannot offer
    (django-ratelimit's check E003 rejects them for that).
    """

    def __init__(self, location, params):
        super().__init__(params)
        self.files = {}

    def _connection(self):
        path = settings.RATELIMIT_STORE_PATH
        if path not in self.files:
            self.files[path] = SQLiteCounters(path)
        return self.files[path].connection()

    def _expiry(self, timeout):
        timeout = self.get_backend_timeout(timeout)
        return 1e300 if timeout is None else timeout

    def add(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        key = self.make_and_validate_key(key, version=version)
        conn = self._connection()
        now = time.time()
        conn.execute("DELETE FROM counters WHERE key = ? AND expires <= ?", (key, now))
        return conn.execute(
            "INSERT INTO counters (key, count, expires) VALUES (?, ?, ?) ON CONFLICT(key) DO NOTHING",
            (key, int(value), self._expiry(timeout)),
        ).rowcount == 1  # fmt: skip

    def get(self, key, default=None, version=None):
        key = self.make_and_validate_key(key, version=version)
        row = (
            self._connection().execute("SELECT count FROM counters WHERE key = ? AND expires > ?", (key, time.time())).fetchone()
        )
        return default if row is None else row[0]

    def set(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        key = self.make_and_validate_key(key, version=version)
        self._connection().execute(
            "INSERT INTO counters (key, count, expires) VALUES (?, ?, ?) "
            "ON CONFLICT(key) DO UPDATE SET count = excluded.count, expires = excluded.expires",
            (key, int(value), self._expiry(timeout)),
        )

    def incr(self, key, delta=1, version=None):
        key = self.make_and_validate_key(key, version=version)
        row = (
            self._connection()
            .execute(
                "UPDATE counters SET count = count + ? WHERE key = ? AND expires > ? RETURNING count", (delta, key, time.time())
            )
            .fetchone()
        )
        if row is None:
            raise ValueError(f"Key '{key}' not found")
        return row[0]

    def touch(self, key, timeout=DEFAULT_TIMEOUT, version=None):
        key = self.make_and_validate_key(key, version=version)
        return self._connection().execute(
            "UPDATE counters SET expires = ? WHERE key = ?", (self._expiry(timeout), key)
        ).rowcount == 1  # fmt: skip

    def delete(self, key, version=None):
        key = self.make_and_validate_key(key, version=version)
        return self._connection().execute("DELETE FROM counters WHERE key = ?", (key,)).rowcount == 1

    def clear(self):
        self._connection().execute("DELETE FROM counters WHERE key LIKE ?", (f"{self.key_prefix}:%",))
