"""A load balancer asks ``/api/v1/health`` whether to send traffic here, and an orchestrator asks
``/api/v1/health?live`` whether to restart the process: no key, no rate limit, and an answer
within 2 s even when a dependency accepts connections and never answers."""

import http.client
import json
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from bench.servers import running_server
from infinity import counters, health

HEALTH = "/api/v1/health"
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


class SilentServer:
    """A TCP listener that accepts every connection and never sends a byte: a PostgreSQL or Redis
    that hangs (SIGSTOPped, overloaded, or behind a firewall that swallows replies)."""

    def __init__(self):
        self.server = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.server.settimeout(0.05)
        self.port = self.server.getsockname()[1]
        self.accepted, self.stopped = [], False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stopped:
            try:
                self.accepted.append(self.server.accept()[0])
            except TimeoutError:
                continue

    def close(self):
        self.stopped = True
        self.thread.join()
        self.server.close()
        for sock in self.accepted:
            sock.close()


@pytest.fixture
def silent():
    server = SilentServer()
    yield server
    server.close()


@pytest.fixture(autouse=True)
def _fresh_results():
    health.forget_results()
    yield
    health.forget_results()


def _unused_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_ready_without_a_key(anon):
    response = anon.get(HEALTH)
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "redis": "not configured", "version": health.VERSION}
    assert health.VERSION not in ("", "unknown")
    assert response["Cache-Control"] == "no-store"


def test_a_key_is_not_needed_and_a_bad_one_is_ignored(api, anon):
    assert api.get(HEALTH).status_code == 200
    assert anon.get(HEALTH, headers={"HTTP_AUTHORIZATION": "Bearer im_not_a_key"}).status_code == 200


def test_probes_are_not_rate_limited_nor_counted(anon, settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "anon": 2}
    responses = [anon.get(HEALTH) for _ in range(6)] + [anon.get(HEALTH, {"live": ""}) for _ in range(6)]
    assert [r.status_code for r in responses] == [200] * 12
    assert all("X-RateLimit-Limit" not in r for r in responses)
    other = anon.get("/api/v1/schema")  # the first request this client makes that counts
    assert other["X-RateLimit-Remaining"] == "1"


def test_live_checks_the_process_only(anon):
    for query in ({"live": ""}, {"live": "1"}):
        response = anon.get(HEALTH, query)
        assert response.status_code == 200
        assert response.json() == {"status": "ok", "version": health.VERSION}


def test_head_and_other_methods(anon):
    assert anon.client.head(HEALTH).status_code == 200
    refused = anon.post(HEALTH, {})
    assert refused.status_code == 405
    assert refused.json()["error"]["code"] == "METHOD_NOT_ALLOWED"


def test_redis_ok_when_configured(anon, settings):
    settings.REDIS_URL = REDIS_URL
    counters.reset_store()
    assert anon.get(HEALTH).json()["redis"] == "ok"


def test_a_lost_redis_degrades_but_stays_ready(anon, settings):
    settings.REDIS_URL = f"redis://127.0.0.1:{_unused_port()}/0"
    response = anon.get(HEALTH)
    assert response.status_code == 200
    assert response.json()["status"] == "ok" and response.json()["redis"] == "down"


def test_a_hung_redis_answers_within_2_s_and_recovers(anon, settings, silent, monkeypatch):
    monkeypatch.setattr(health, "FRESH", 0.2)
    settings.REDIS_URL = f"redis://127.0.0.1:{silent.port}/0"
    started = time.monotonic()
    response = anon.get(HEALTH)
    assert time.monotonic() - started < 2.0
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "redis": "down", "version": health.VERSION}
    assert len(silent.accepted) == 1
    settings.REDIS_URL = REDIS_URL  # Redis answers again
    time.sleep(0.3)
    assert anon.get(HEALTH).json()["redis"] == "ok"


def test_the_openapi_schema_documents_health(anon):
    schema = anon.client.get("/api/v1/schema", {"format": "json"}).json()
    operation = schema["paths"][HEALTH]["get"]
    assert {"200", "503"} <= set(operation["responses"])
    assert [p["name"] for p in operation["parameters"]] == ["live"]
    assert operation.get("security") in (None, [], [{}])


# A real server whose database hangs: the probe must not wait for the driver's timeouts.


def _get(base, path, timeout=10):
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        started = time.monotonic()
        conn.request("GET", path)
        response = conn.getresponse()
        body = json.loads(response.read())
        return response.status, dict(response.getheaders()), body, time.monotonic() - started
    finally:
        conn.close()


@pytest.fixture
def server_env(settings):
    return {"DEBUG": "true", "SECRET_KEY": settings.SECRET_KEY, "REDIS_URL": None,
            "RATELIMIT_STORE_PATH": settings.RATELIMIT_STORE_PATH}  # fmt: skip


def test_a_hung_database_is_unavailable_within_2_s_and_a_burst_costs_one_connection(server_env, silent):
    env = {**server_env, "DATABASE_URL": f"postgres://root@127.0.0.1:{silent.port}/nothing"}
    with running_server(server="gunicorn:gthread", workers=1, threads=8, env=env, settings_module="infinity.settings",
                        ready_path=f"{HEALTH}?live") as base:  # fmt: skip
        status, headers, body, took = _get(base, HEALTH)
        assert status == 503 and took < 2.0
        assert body == {"status": "unavailable", "database": "down", "redis": "not configured", "version": health.VERSION}
        assert int(headers["Retry-After"]) >= 1
        with ThreadPoolExecutor(max_workers=16) as pool:
            burst = list(pool.map(lambda _: _get(base, HEALTH), range(16)))
        assert [b[0] for b in burst] == [503] * 16
        assert max(b[3] for b in burst) < 2.0
        assert len(silent.accepted) == 1  # the one check still waiting for the hung server
        live = _get(base, f"{HEALTH}?live")
        assert live[0] == 200 and live[2] == {"status": "ok", "version": health.VERSION} and live[3] < 1.0


def test_an_unreachable_database_is_unavailable(server_env):
    env = {**server_env, "DATABASE_URL": f"postgres://root@127.0.0.1:{_unused_port()}/nothing"}
    with running_server(server="gunicorn:gthread", workers=1, threads=2, env=env, settings_module="infinity.settings",
                        ready_path=f"{HEALTH}?live") as base:  # fmt: skip
        status, _, body, took = _get(base, HEALTH)
    assert status == 503 and body["status"] == "unavailable" and body["database"] == "down" and took < 2.0
