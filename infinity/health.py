"""``GET /api/v1/health``: is this process able to serve, and are its dependencies reachable?

Readiness (the default) checks the database and, when configured, Redis; ``?live`` checks the
process only (a liveness probe must not restart a healthy server because PostgreSQL is down).
No key, no rate limit, no rate-limit headers: a load balancer's probe is not a client.

Each dependency is checked in a thread of its own, so a server that accepts connections and
never answers costs the request ``WAIT`` seconds, not the driver's timeouts. Within a process
the checks are shared: a result is reused for ``FRESH`` seconds and concurrent requests wait for
the one check in flight, so a burst of probes costs at most one database query per second.
"""

import logging
import threading
import time
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version

import redis
from django.conf import settings
from django.db import connections
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response

from infinity.api import ApiView
from infinity.counters import REDIS_TIMEOUT

logger = logging.getLogger("infinity.health")

WAIT = 1.0  # seconds a request waits for its checks before calling a silent dependency down
FRESH = 1.0  # seconds a check's result is reused by later requests of the process
ABANDON = 10.0  # seconds after which a check that never returned is given up and started afresh

OK, DOWN, NOT_CONFIGURED = "ok", "down", "not configured"


def _version() -> str:
    try:
        return package_version("infinity-metrics")
    except PackageNotFoundError:
        return "unknown"


VERSION = _version()


def check_database() -> None:
    """One round trip on a connection of this thread's own, closed afterwards."""
    connection = connections["default"]
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    finally:
        connection.close()


def check_redis() -> None:
    """One PING on a connection of its own (redis-py's, with the rate limiter's timeouts and no retries)."""
    pool = redis.ConnectionPool.from_url(settings.REDIS_URL, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT)
    conn = pool.make_connection()
    try:
        conn.send_command("PING")
        if conn.read_response() not in (b"PONG", "PONG", True):
            raise ConnectionError("Redis did not answer PING with PONG")
    finally:
        conn.disconnect()


class Probe:
    """One dependency's check, run in a daemon thread, shared by the requests of a process."""

    def __init__(self, name, check):
        self.name, self.check = name, check
        self.lock = threading.Lock()
        self.state = None  # OK or DOWN, from the last check that returned
        self.checked_at = float("-inf")  # monotonic time that check started
        self.running = None  # (threading.Event set when done, monotonic start) of the check in flight

    def status(self, deadline: float) -> str:
        """OK or DOWN: a result under ``FRESH`` seconds old, or the check in flight (starting one
        if none is) if it returns before ``deadline`` (monotonic) and within ``WAIT`` seconds of
        its start; DOWN if it does not. A check already pending for ``WAIT`` is not waited for
        again: a queue of probes behind a hung dependency answers at once."""
        now = time.monotonic()
        with self.lock:
            if now - self.checked_at < FRESH:
                return self.state
            if self.running is None or now - self.running[1] > ABANDON:
                self.running = (threading.Event(), now)
                threading.Thread(target=self._run, args=self.running, name=f"health-{self.name}", daemon=True).start()
            done, started = self.running
        if done.wait(max(0.0, min(deadline, started + WAIT) - time.monotonic())):
            with self.lock:
                return self.state
        return DOWN

    def _run(self, done, started):
        failure = None
        try:
            self.check()
            state = OK
        except Exception as exc:
            state = DOWN
            failure = exc
        with self.lock:
            changed = state != self.state
            if self.running is not None and self.running[0] is done:
                self.running = None
            if started >= self.checked_at:
                self.state, self.checked_at = state, started
        done.set()
        if changed and state == DOWN:
            logger.warning("health: %s is down (%s)", self.name, failure)
        elif changed and state == OK:
            logger.info("health: %s is ok", self.name)


_database = Probe("database", check_database)
_redis = Probe("redis", check_redis)


def forget_results() -> None:
    """Start afresh (tests change the dependencies between runs)."""
    global _database, _redis
    _database = Probe("database", check_database)
    _redis = Probe("redis", check_redis)


def readiness() -> tuple[int, dict]:
    """(HTTP status, body): 503 when the database is down; a lost Redis only degrades (the API
    counts rate limits per process then, see ``infinity.throttling``)."""
    deadline = time.monotonic() + WAIT
    if settings.REDIS_URL:
        _redis.status(0)  # starts its check beside the database's
    database = _database.status(deadline)
    redis = _redis.status(deadline) if settings.REDIS_URL else NOT_CONFIGURED
    ok = database == OK
    body = {"status": "ok" if ok else "unavailable", "database": database, "redis": redis, "version": VERSION}
    return (200 if ok else 503), body


HealthOut = inline_serializer(
    name="Health",
    fields={
        "status": serializers.ChoiceField(["ok", "unavailable"]),
        "database": serializers.ChoiceField([OK, DOWN], required=False, help_text="Absent with `live`"),
        "redis": serializers.ChoiceField([OK, DOWN, NOT_CONFIGURED], required=False, help_text="Absent with `live`"),
        "version": serializers.CharField(help_text="The server's version"),
    },
)


class HealthView(ApiView):
    authentication_classes = []
    permission_classes = []
    throttle_classes = []

    @extend_schema(
        operation_id="get_health",
        summary="Health",
        description=(
            "For load balancers and orchestrators; no API key, not rate limited. Readiness by default: 200 when "
            "the database answers (`redis` is `down` while Redis is lost: the API keeps serving, with per-process "
            "rate limits), 503 with `status: unavailable` when the database does not answer within about a "
            "second. With `live` (any value, e.g. `/api/v1/health?live`) only the process is checked: "
            "a liveness probe. Results are reused for a second within a server process."
        ),
        parameters=[
            OpenApiParameter(
                "live", OpenApiTypes.STR, allow_blank=True, description="Present (any value): check the process only"
            )
        ],
        responses={
            200: OpenApiResponse(HealthOut, description="Ready (or alive, with `live`)"),
            503: OpenApiResponse(HealthOut, description="The database is unreachable (see Retry-After)"),
        },
        examples=[
            OpenApiExample(
                "ready",
                response_only=True,
                status_codes=["200"],
                value={"status": "ok", "database": "ok", "redis": "ok", "version": "0.1.0"},
            ),
            OpenApiExample(
                "database down",
                response_only=True,
                status_codes=["503"],
                value={"status": "unavailable", "database": "down", "redis": "ok", "version": "0.1.0"},
            ),
            OpenApiExample("alive", response_only=True, status_codes=["200"], value={"status": "ok", "version": "0.1.0"}),
        ],
        tags=["Health"],
    )
    def get(self, request):
        request._request.unmetered = True  # infinity.middleware: no rate limit, no headers
        if "live" in request.query_params:
            status, body = 200, {"status": "ok", "version": VERSION}
        else:
            status, body = readiness()
        headers = {"Cache-Control": "no-store"}
        if status == 503:
            headers["Retry-After"] = "5"
        return Response(body, status=status, headers=headers)
