"""Rate limits: DRF throttle classes over an atomic counter shared by every worker.

Fixed one-minute windows. Each request increments ``<prefix>:<scope>:<ident>:<window>``
atomically (Redis INCR, or an SQLite UPSERT … RETURNING when there is no Redis) and is
allowed while the count is ≤ the limit, so the 1000th request in a window passes and
the 1001st is refused, however many processes serve them. DRF's stock throttles do a
non-atomic read-modify-write and are not used.

If the shared store fails we fail open to a per-process counter and log it: the API
keeps answering rather than returning 500 or blanket 429s. A circuit breaker keeps a hung
store (one that accepts and never answers) from costing every request its timeouts: after a
failure the process counts per process for ``BREAKER_COOL_DOWN`` seconds without trying the
store, then one request probes it (see ``CounterStore``).

The throttle leaves (limit, remaining, reset) on the Django request; the middleware
turns it into ``X-RateLimit-*`` headers on every /api/v1 response. A request may name one
more shared counter to read in the same round trip (``shared_read``; the API-key generation,
see ``accounts.authentication``); its value is left in ``shared_value``.
"""

import hashlib
import logging
import socket
import sqlite3
import struct
import threading
import time
from urllib.parse import unquote, urlsplit

from django.conf import settings
from rest_framework.throttling import BaseThrottle

from infinity.clientip import client_ip

logger = logging.getLogger("infinity.ratelimit")
WINDOW = 60
REDIS_TIMEOUT = 0.5  # seconds: connecting, and each send or receive of a round trip
BREAKER_COOL_DOWN = 5.0  # seconds after a store failure during which the process does not try it


_HIT = b"*2\r\n$4\r\nINCR\r\n$%d\r\n%s\r\n*3\r\n$6\r\nEXPIRE\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n"
_GET = b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n"


def hit_request(key: str, ttl: int, read: str | None = None) -> bytes:
    """``RedisCounter.encode([("INCR", key), ("EXPIRE", key, ttl)] + [("GET", read)])``, in one step."""
    k, t = key.encode(), str(ttl).encode()
    payload = _HIT % (len(k), k, len(k), k, len(t), t)
    if read is not None:
        r = read.encode()
        payload += _GET % (len(r), r)
    return payload


class RedisCounter:
    """Counters in Redis, spoken to directly over one socket per thread (RESP 2).

    Every request costs one round trip, so its client cost matters: redis-py 8 spends
    several times the CPU per call (pool bookkeeping, a poll() per command; measured by
    ``python -m bench counters``). Only INCR, EXPIRE, GET are needed. URLs: ``redis://[:password@]host[:port][/db]``
    and ``rediss://`` (TLS).
    """

    def __init__(self, url):
        parts = urlsplit(url)
        if parts.scheme not in {"redis", "rediss"}:
            raise ValueError(f"REDIS_URL must be redis:// or rediss://, not {parts.scheme}://")
        self.address = (parts.hostname or "127.0.0.1", parts.port or 6379)
        self.tls = parts.scheme == "rediss"
        self.setup = []
        if parts.password is not None:
            auth = [unquote(parts.username), unquote(parts.password)] if parts.username else [unquote(parts.password)]
            self.setup.append(("AUTH", *auth))
        db = parts.path.strip("/")
        if db and db != "0":
            self.setup.append(("SELECT", db))
        self.local = threading.local()

    def _connect(self):
        sock = socket.create_connection(self.address, timeout=REDIS_TIMEOUT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls:
            import ssl

            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=self.address[0])
        else:
            # A blocking socket whose timeouts the kernel keeps (SO_SNDTIMEO/SO_RCVTIMEO): with
            # Python's own timeout every send and receive is preceded by a poll(), two more
            # system calls per round trip, each releasing and retaking the GIL. A timeout still
            # raises (BlockingIOError, an OSError), and the caller fails open as before.
            seconds = int(REDIS_TIMEOUT)
            timeval = struct.pack("@ll", seconds, int((REDIS_TIMEOUT - seconds) * 1_000_000))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
            sock.settimeout(None)
        self.local.sock, self.local.reader = sock, sock.makefile("rb")
        if self.setup:
            self._send_bytes(self.encode(self.setup), len(self.setup))

    def _read_reply(self):
        line = self.local.reader.readline()
        if not line.endswith(b"\r\n"):
            raise ConnectionError("Redis closed the connection")
        kind, body = line[:1], line[1:-2]
        if kind == b":":
            return int(body)
        if kind == b"+":
            return body.decode()
        if kind == b"$":
            if body == b"-1":
                return None
            data = self.local.reader.read(int(body) + 2)
            return data[:-2].decode()
        if kind == b"-":
            raise ConnectionError(f"Redis error: {body.decode(errors='replace')}")
        raise ConnectionError(f"unexpected Redis reply {line[:20]!r}")

    @staticmethod
    def encode(commands) -> bytes:
        out = []
        for command in commands:
            out.append(b"*%d\r\n" % len(command))
            for arg in command:
                data = str(arg).encode()
                out.append(b"$%d\r\n%s\r\n" % (len(data), data))
        return b"".join(out)

    def _send_bytes(self, payload: bytes, replies: int):
        self.local.sock.sendall(payload)
        return [self._read_reply() for _ in range(replies)]

    def call(self, *commands):
        """Send ``commands`` (tuples) in one round trip; their replies. Any failure closes the
        socket (the next call reconnects) and raises."""
        return self._call(self.encode(commands), len(commands))

    def _call(self, payload: bytes, replies: int):
        try:
            if getattr(self.local, "sock", None) is None:
                self._connect()
            return self._send_bytes(payload, replies)
        except BaseException:
            sock = getattr(self.local, "sock", None)
            self.local.sock = None
            if sock is not None:
                sock.close()
            raise

    def hit(self, key, ttl, read=None):
        # EXPIRE on every hit (not NX, which needs Redis 7): the key names its window anyway.
        # The request is written in one format operation instead of ``encode``'s loop over 3
        # commands and 7 arguments (callgrind: -14k of 1.29M instructions per event request);
        # equal bytes (tested).
        if read is None:
            return self._call(hit_request(key, ttl), 2)[0], None
        count, _, value = self._call(hit_request(key, ttl, read), 3)
        return count, int(value or 0)

    def read(self, key):
        (value,) = self.call(("GET", key))
        return int(value or 0)

    def bump(self, key):
        self.call(("INCR", key))


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

    def hit(self, key, ttl, read=None):
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
        return count, (self.read(read) if read else None)

    def read(self, key):
        row = self._conn().execute("SELECT count FROM counters WHERE key = ?", (key,)).fetchone()
        return row[0] if row else 0

    def bump(self, key):
        self._conn().execute(
            "INSERT INTO counters (key, count, expires) VALUES (?, 1, 1e300) ON CONFLICT(key) DO UPDATE SET count = count + 1",
            (key,),
        )


class LocalCounter:
    """Per-process fallback when the shared store is unreachable."""

    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {}

    def hit(self, key, ttl, read=None):
        now = time.time()
        with self.lock:
            if len(self.counts) > 10000:
                self.counts = {k: v for k, v in self.counts.items() if v[1] > now}
            count, expires = self.counts.get(key, (0, now + ttl))
            self.counts[key] = (count + 1, expires)
            return count + 1, None  # nothing shared to read: callers treat None as unknown


class CounterStore:
    """The shared store with a logged, per-process fail-open fallback behind a circuit breaker.

    Closed (the usual state, ``open_until`` 0): every call goes to the shared store; that costs
    one attribute test more than no breaker. A failure (an error, a refused connection or a
    timeout) opens it: for ``BREAKER_COOL_DOWN`` seconds calls are answered as if the store had
    failed, without waiting for it: ``hit`` counts in the per-process fallback, ``read`` returns
    None. Then the first caller probes the store (the deadline moves on by a cool-down, so the
    others keep to the fallback while it waits, and a probe that dies frees the slot by itself);
    success closes the breaker, failure re-opens it. Opening and closing are logged once each.

    The API-key generation (``shared_read`` in ``hit``, ``read``) is therefore None while the
    breaker is open, exactly as when the store fails: no cached key is trusted, each request
    reads its key from the database (``accounts.keys.confirm_key``), so a revocation still
    applies on the next request, and the cache is used again once the store answers. ``bump``
    (announcing a key change) ignores the breaker: it is rare, and skipping it would leave the
    workers whose store is fine trusting a revoked key for up to ``CACHE_SECONDS``.
    """

    def __init__(self):
        self.primary = None
        self.fallback = LocalCounter()
        self.lock = threading.Lock()
        self.open_until = 0.0  # time.monotonic() until which the store is not tried; 0: closed
        self.opened_at = 0.0

    def _primary(self):
        if self.primary is None:
            if settings.REDIS_URL:
                self.primary = RedisCounter(settings.REDIS_URL)
            else:
                self.primary = SQLiteCounter(settings.RATELIMIT_STORE_PATH)
        return self.primary

    def _failed(self, exc):
        """Open the breaker (or keep it open) for a cool-down from now; log when it opens."""
        now = time.monotonic()
        with self.lock:
            opening = not self.open_until
            self.open_until = now + BREAKER_COOL_DOWN
            if opening:
                self.opened_at = now
        if opening:
            logger.warning(
                "rate-limit store unavailable (%s); failing open to a per-process limit, retrying every %g s",
                exc,
                BREAKER_COOL_DOWN,
            )

    def _probe(self, method, *args):
        """While the breaker is open: ``method(*args)`` of the store if the cool-down is over and
        no other caller is probing (closing the breaker if it answers), else ``_DOWN``."""
        now = time.monotonic()
        with self.lock:
            if now < self.open_until:
                return _DOWN
            if self.open_until:
                self.open_until = now + BREAKER_COOL_DOWN  # ours: the others keep to the fallback
        try:
            result = getattr(self._primary(), method)(*args)
        except Exception as exc:
            self._failed(exc)
            return _DOWN
        with self.lock:
            closing, self.open_until = bool(self.open_until), 0.0
        if closing:
            outage = time.monotonic() - self.opened_at
            logger.warning("rate-limit store answers again after %.1f s; counting in it again", outage)
        return result

    def hit(self, key, ttl, read=None):
        """Count one hit on ``key``; (count, value of the counter ``read`` in the same round trip,
        or None when not asked or the shared store is down or the breaker open)."""
        if not self.open_until:
            try:
                return self._primary().hit(key, ttl, read)
            except Exception as exc:  # the limiter must never take the API down
                self._failed(exc)
                return self.fallback.hit(key, ttl, read)
        result = self._probe("hit", key, ttl, read)
        return self.fallback.hit(key, ttl, read) if result is _DOWN else result

    def read(self, key):
        """A never-expiring counter's value (see ``bump``), or None when the store is down or
        the breaker open."""
        if not self.open_until:
            try:
                return self._primary().read(key)
            except Exception as exc:
                self._failed(exc)
                return None
        result = self._probe("read", key)
        return None if result is _DOWN else result

    def bump(self, key):
        """Add one to a never-expiring counter: how workers learn that shared state changed.
        Raises when the store is down: the caller must not assume the others were told.
        Tried even while the breaker is open (see the class)."""
        self._primary().bump(key)


_DOWN = object()  # CounterStore._probe: the store was not asked, or failed


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


def consume(request, scope, ident, limit, *, now=None, store=None):
    """Count one request against ``scope``/``ident`` in ``store`` (default the shared store);
    record the header state; return allowed."""
    now = time.time() if now is None else now
    window = int(now // WINDOW)
    reset = (window + 1) * WINDOW
    key = f"{settings.RATELIMIT_KEY_PREFIX}:{scope}:{ident}:{window}"
    django_request = getattr(request, "_request", request)
    # Another shared counter the request needs (the API-key generation) rides along.
    count, django_request.shared_value = (store or get_store()).hit(key, WINDOW + 5, getattr(django_request, "shared_read", None))
    django_request.rate_limit = (limit, max(0, limit - count), reset)
    return count <= limit


def consume_anonymous(request):
    return consume(request, "anon", f"ip:{client_ip(request)}", settings.RATE_LIMITS["anon"])


class ScopedRateThrottle(BaseThrottle):
    """Per API key for authenticated requests, per client IP otherwise."""

    scope = None
    store = None  # the shared store; ``bench ingest --parts`` swaps in a per-process one

    def allow_request(self, request, view):
        api_key = request.auth
        if api_key is None:
            allowed = consume_anonymous(request)
        else:
            allowed = consume(request, self.scope, f"key:{api_key.pk}", settings.RATE_LIMITS[self.scope], store=self.store)
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
