"""Rate limits: exact per-key windows, shared across processes, headers everywhere, fail open."""

import logging
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest
import redis
import time_machine

from accounts.keys import create_api_key, revoke_key
from accounts.models import ApiKey
from events.models import Event
from infinity import counters

from .redis_server import RedisServer
from .servers import gunicorn_servers, post_event

EVENT = "/api/v1/events"
PURCHASE = "/api/v1/events/purchase"
ANALYTICS = "/api/v1/analytics"
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def window_start():
    """Freeze the clock (ticking) at the start of a minute so a test fits in one window."""
    start = (int(time.time()) // 60 + 1) * 60
    with time_machine.travel(datetime.fromtimestamp(start, UTC), tick=True):
        yield start


@pytest.fixture
def with_redis(settings):
    settings.REDIS_URL = REDIS_URL
    counters.reset_store()
    yield redis.Redis.from_url(REDIS_URL)
    counters.reset_store()


def headers(response):
    return tuple(int(response[h]) for h in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"))


def send_until_refused(api, path, body, count, **kwargs):
    return [api.post(path, body, **kwargs).status_code for _ in range(count)]


@pytest.mark.parametrize("store", ["sqlite", "redis"])
def test_1000th_event_request_passes_and_1001st_is_refused(api, window_start, store, request):
    if store == "redis":
        request.getfixturevalue("with_redis")
    statuses = send_until_refused(api, EVENT, {"event_name": "e"}, 1000)
    assert statuses == [201] * 1000
    refused = api.post(EVENT, {"event_name": "e"})
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "RATE_LIMITED"
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert headers(refused) == (1000, 0, window_start + 60)
    assert Event.objects.count() == 1000


def test_event_and_purchase_share_the_events_limit(api, settings, window_start):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "events": 10}
    purchase = {"price": 1, "currency": "USD", "product_name": "P"}
    statuses = [api.post(EVENT if i % 2 else PURCHASE, {"event_name": "e"} if i % 2 else purchase).status_code for i in range(10)]
    assert statuses == [201] * 10
    assert api.post(PURCHASE, purchase).status_code == 429
    assert api.post(EVENT, {"event_name": "e"}).status_code == 429


def test_remaining_counts_down_and_reset_is_window_end(api, window_start):
    first, second = api.post(EVENT, {"event_name": "e"}), api.post(EVENT, {"event_name": "e"})
    assert headers(first) == (1000, 999, window_start + 60)
    assert headers(second) == (1000, 998, window_start + 60)


def test_window_resets_after_a_minute(api, settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "events": 2}
    start = (int(time.time()) // 60 + 1) * 60
    with time_machine.travel(datetime.fromtimestamp(start, UTC), tick=False):
        assert send_until_refused(api, EVENT, {"event_name": "e"}, 3) == [201, 201, 429]
    with time_machine.travel(datetime.fromtimestamp(start + 60, UTC), tick=False):
        assert api.post(EVENT, {"event_name": "e"}).status_code == 201


def test_analytics_limit_is_100_per_key(api, cast, window_start):
    assert [api.get(ANALYTICS).status_code for _ in range(100)] == [200] * 100
    refused = api.get(ANALYTICS)
    assert refused.status_code == 429 and refused["Retry-After"]
    assert headers(refused)[:2] == (100, 0)
    # Another key of the same site has its own budget; events are a separate budget.
    assert api.get(ANALYTICS, key=cast.analytics_key).status_code == 200
    assert api.post(EVENT, {"event_name": "e"}).status_code == 201


def test_limits_are_per_key(api, cast, settings, window_start):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "events": 3}
    assert send_until_refused(api, EVENT, {"event_name": "e"}, 4) == [201, 201, 201, 429]
    assert api.post(EVENT, {"event_name": "e"}, key=cast.outsider_key).status_code == 201


def test_unauthenticated_requests_are_limited_per_ip(anon, settings, window_start):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "anon": 5}
    statuses = [anon.post(EVENT, {"event_name": "e"}).status_code for _ in range(5)]
    assert statuses == [401] * 5
    refused = anon.post(EVENT, {"event_name": "e"}, headers={"HTTP_AUTHORIZATION": "Bearer im_guess"})
    assert refused.status_code == 429
    assert headers(refused)[:2] == (5, 0)
    other_ip = anon.post(EVENT, {"event_name": "e"}, headers={"REMOTE_ADDR": "10.9.9.9"})
    assert other_ip.status_code == 401


def test_unknown_paths_count_against_the_ip(anon, settings, window_start):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "anon": 2}
    assert [anon.get("/api/v1/nope").status_code for _ in range(3)] == [404, 404, 429]


@pytest.mark.parametrize(
    "method, path, body, key_attr, status",
    [
        ("post", EVENT, {"event_name": "e"}, "key", 201),
        ("post", EVENT, {}, "key", 400),
        ("post", EVENT, {"event_name": "e"}, None, 401),
        ("get", ANALYTICS, None, "events_key", 403),
        ("get", "/api/v1/nothing-here", None, "key", 404),
        ("get", EVENT, None, "key", 405),
        ("get", ANALYTICS, None, "key", 200),
        ("get", "/api/v1/schema", None, None, 200),
    ],
)
def test_every_api_response_has_rate_limit_headers(anon, cast, method, path, body, key_attr, status):
    key = getattr(cast, key_attr) if key_attr else ""
    response = anon.post(path, body, key=key) if method == "post" else anon.get(path, key=key)
    assert response.status_code == status
    limit, remaining, reset = headers(response)
    assert limit > 0 and 0 <= remaining < limit and reset > time.time()


def test_redis_counters_are_used_when_configured(api, with_redis, settings):
    api.post(EVENT, {"event_name": "e"})
    keys = with_redis.keys(f"{settings.RATELIMIT_KEY_PREFIX}:events:*")
    assert len(keys) == 1 and int(with_redis.get(keys[0])) == 1
    assert 0 < with_redis.ttl(keys[0]) <= 65


def test_redis_url_database_number_is_honoured(api, settings):
    settings.REDIS_URL = REDIS_URL.rsplit("/", 1)[0] + "/3"
    counters.reset_store()
    api.post(EVENT, {"event_name": "e"})
    db3 = redis.Redis.from_url(settings.REDIS_URL)
    keys = db3.keys(f"{settings.RATELIMIT_KEY_PREFIX}:events:*")
    assert len(keys) == 1 and int(db3.get(keys[0])) == 1
    assert not redis.Redis.from_url(REDIS_URL).keys(f"{settings.RATELIMIT_KEY_PREFIX}:events:*")


@pytest.fixture
def redis_with_password(tmp_path):
    server = RedisServer(tmp_path, "--requirepass", "the-password").start()
    yield server
    server.stop()


def test_wrong_redis_password_fails_open_and_says_so(api, settings, caplog, window_start, redis_with_password):
    settings.REDIS_URL = redis_with_password.url.replace("the-password", "not-the-password")
    counters.reset_store()
    with caplog.at_level(logging.WARNING, logger="infinity.ratelimit"):
        assert api.post(EVENT, {"event_name": "e"}).status_code == 201
    assert "failing open" in caplog.text


def test_redis_down_fails_open_with_a_per_process_limit(api, settings, caplog, window_start):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "events": 5}
    counters.reset_store()
    with caplog.at_level(logging.WARNING, logger="infinity.ratelimit"):
        statuses = send_until_refused(api, EVENT, {"event_name": "e"}, 6)
    assert statuses == [201] * 5 + [429]
    assert "failing open" in caplog.text
    assert Event.objects.count() == 5


def test_a_redis_that_never_answers_fails_open_after_the_timeout(api, settings, caplog, window_start):
    """A Redis that accepts connections and then says nothing (hung, or a firewall that
    swallows the replies): the request waits about REDIS_TIMEOUT for it, then is served
    under the per-process limit, and never hangs."""
    with socket.create_server(("127.0.0.1", 0), backlog=16) as silent:  # listens, never accepts
        settings.REDIS_URL = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        counters.reset_store()
        with caplog.at_level(logging.WARNING, logger="infinity.ratelimit"):
            started = time.monotonic()
            response = api.post(EVENT, {"event_name": "e"})
            waited = time.monotonic() - started
    assert response.status_code == 201
    assert counters.REDIS_TIMEOUT * 0.8 <= waited < counters.REDIS_TIMEOUT + 2.0
    assert "failing open" in caplog.text
    assert Event.objects.count() == 1


# The circuit breaker: a hung Redis costs one timeout per cool-down, not one per request.


class HangingRedis:
    """A TCP front for the test Redis that can hang like a SIGSTOPped redis-server: while
    ``hung`` it accepts connections and answers nothing, on new connections or open ones;
    otherwise it relays them to Redis. ``connections`` counts the connections made to it (the
    client opens one after each failure)."""

    def __init__(self, url):
        parts = urlsplit(url)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 6379)
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.05)
        auth = parts.netloc.rpartition("@")[0]
        netloc = (auth + "@" if auth else "") + f"127.0.0.1:{self.server.getsockname()[1]}"
        self.url = parts._replace(netloc=netloc).geturl()
        self.hung, self.connections, self.sockets, self.stopped = True, 0, [], False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stopped:
            try:
                client, _ = self.server.accept()
            except TimeoutError:
                continue
            self.connections += 1
            self.sockets.append(client)
            if not self.hung:
                upstream = socket.create_connection(self.upstream)
                self.sockets.append(upstream)
                for src, dst in ((client, upstream), (upstream, client)):
                    threading.Thread(target=self._relay, args=(src, dst), daemon=True).start()

    def _relay(self, src, dst):
        try:
            while data := src.recv(65536):
                while self.hung and not self.stopped:
                    time.sleep(0.01)
                dst.sendall(data)
        except OSError:
            pass

    def close(self):
        self.stopped = True
        self.thread.join()
        self.server.close()
        for sock in self.sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()


@pytest.fixture
def hanging_redis(settings, monkeypatch):
    """REDIS_URL pointing at a HangingRedis (hung to begin with); a 1 s cool-down to keep tests short."""
    monkeypatch.setattr(counters, "COOL_DOWN", 1.0)
    front = HangingRedis(REDIS_URL)
    settings.REDIS_URL = front.url
    counters.reset_store()
    yield front
    front.close()


def test_a_hung_redis_costs_one_timeout_not_one_per_request(api, hanging_redis, caplog, window_start):
    with caplog.at_level(logging.WARNING, logger="infinity.ratelimit"):
        started = time.monotonic()
        responses = [api.post(EVENT, {"event_name": "e"}) for _ in range(20)]
        elapsed = time.monotonic() - started
    assert elapsed < 3 * counters.REDIS_TIMEOUT  # 20 timeouts or more without the breaker
    assert [r.status_code for r in responses] == [201] * 20
    assert [headers(r) for r in responses] == [(1000, 1000 - n, window_start + 60) for n in range(1, 21)]
    assert hanging_redis.connections == 1
    assert caplog.text.count("failing open") == 1
    assert Event.objects.count() == 20


def test_after_the_cool_down_one_request_probes_and_a_recovered_redis_counts_again(
    api, hanging_redis, settings, caplog, window_start
):
    cool_down = counters.COOL_DOWN
    with caplog.at_level(logging.WARNING, logger="infinity.ratelimit"):
        assert api.post(EVENT, {"event_name": "e"}).status_code == 201  # opens the breaker
        time.sleep(cool_down + 0.1)
        started = time.monotonic()
        statuses = [api.post(EVENT, {"event_name": "e"}).status_code for _ in range(5)]
        elapsed = time.monotonic() - started
        assert statuses == [201] * 5
        assert hanging_redis.connections == 2  # one probe, still hung: open again
        assert counters.REDIS_TIMEOUT * 0.8 <= elapsed < 3 * counters.REDIS_TIMEOUT
        hanging_redis.hung = False  # SIGCONT
        time.sleep(cool_down + 0.1)
        statuses = [api.post(EVENT, {"event_name": "e"}).status_code for _ in range(3)]
    assert statuses == [201] * 3
    shared = redis.Redis.from_url(REDIS_URL)
    (key,) = shared.keys(f"{settings.RATELIMIT_KEY_PREFIX}:events:*")
    assert int(shared.get(key)) == 3  # counted in Redis again
    shared.incrby(key, 100)  # another worker's requests
    assert headers(api.post(EVENT, {"event_name": "e"}))[:2] == (1000, 1000 - 104)
    assert caplog.text.count("failing open") == 1
    assert caplog.text.count("answers again") == 1


def test_while_one_request_probes_the_others_use_the_fallback(hanging_redis):
    store = counters.get_store()
    assert store.hit("k", 65) == 1  # waits for the hung store, opens the breaker
    time.sleep(counters.COOL_DOWN + 0.1)

    def timed_hit(_):
        started = time.monotonic()
        store.hit("k", 65)
        return time.monotonic() - started

    with ThreadPoolExecutor(max_workers=8) as pool:
        waits = sorted(pool.map(timed_hit, range(8)))
    assert hanging_redis.connections == 2  # the one probe
    assert waits[-1] >= counters.REDIS_TIMEOUT * 0.8  # the probe waited for the hung store
    assert waits[-2] < counters.REDIS_TIMEOUT / 2  # the others did not
    assert store.fallback.hit("k", 65) == 10  # all nine counted per process


def test_while_the_breaker_is_open_a_revoked_key_is_refused_on_the_next_request(api, hanging_redis, window_start):
    """The key generation is unknown while the breaker is open, as when the store fails: a key
    cached before the outage is read from the database again, so a revocation whose
    announcement was lost still applies on the next request, without waiting for Redis."""
    hanging_redis.hung = False
    assert [api.post(EVENT, {"event_name": "e"}).status_code for _ in range(2)] == [201, 201]  # key cached
    hanging_redis.hung = True
    assert api.post(EVENT, {"event_name": "e"}).status_code == 201  # waits, opens the breaker
    revoke_key(ApiKey.objects.get(name="full"))  # its announcement cannot reach Redis
    started = time.monotonic()
    refused = api.post(EVENT, {"event_name": "e"})
    assert time.monotonic() - started < counters.REDIS_TIMEOUT / 2
    assert refused.status_code == 401
    assert headers(refused)[0] == 120  # a refused key counts against the client IP


# Two real server processes sharing one Redis.


def _post(url, key):
    status, headers, _ = post_event(url, key, "load")
    return status, headers.get("X-RateLimit-Reset")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("store", ["redis", "sqlite"])
def test_two_server_processes_share_exactly_one_limit(cast, store):
    with gunicorn_servers(2, REDIS_URL=REDIS_URL if store == "redis" else None) as urls:
        for _attempt in range(2):
            if 60 - time.time() % 60 < 20:  # start the burst early in a window
                time.sleep(60 - time.time() % 60 + 0.2)
            Event.objects.all().delete()
            _, raw = create_api_key(site=cast.site)
            with ThreadPoolExecutor(max_workers=16) as pool:
                results = list(pool.map(_post, [urls[i % 2] for i in range(1200)], [raw] * 1200))
            if len({reset for _, reset in results}) == 1:
                break  # the burst fitted in one window
    statuses = [status for status, _ in results]
    assert statuses.count(201) == 1000
    assert statuses.count(429) == 200
    assert Event.objects.count() == 1000
