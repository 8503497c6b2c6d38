"""Rate limits: exact per-key windows, shared across processes, headers everywhere, fail open."""

import logging
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
import redis
import time_machine

from accounts.keys import create_api_key
from events.models import Event
from infinity import throttling

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
    throttling.reset_store()
    yield redis.Redis.from_url(REDIS_URL)
    throttling.reset_store()


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
    throttling.reset_store()
    api.post(EVENT, {"event_name": "e"})
    db3 = redis.Redis.from_url(settings.REDIS_URL)
    keys = db3.keys(f"{settings.RATELIMIT_KEY_PREFIX}:events:*")
    assert len(keys) == 1 and int(db3.get(keys[0])) == 1
    assert not redis.Redis.from_url(REDIS_URL).keys(f"{settings.RATELIMIT_KEY_PREFIX}:events:*")


def test_wrong_redis_password_fails_open_and_says_so(api, settings, caplog, window_start):
    settings.REDIS_URL = REDIS_URL.replace("redis://", "redis://:not-the-password@", 1)
    throttling.reset_store()
    with caplog.at_level(logging.WARNING, logger="infinity.ratelimit"):
        assert api.post(EVENT, {"event_name": "e"}).status_code == 201
    assert "failing open" in caplog.text


def test_redis_down_fails_open_with_a_per_process_limit(api, settings, caplog, window_start):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "events": 5}
    throttling.reset_store()
    with caplog.at_level(logging.WARNING, logger="infinity.ratelimit"):
        statuses = send_until_refused(api, EVENT, {"event_name": "e"}, 6)
    assert statuses == [201] * 5 + [429]
    assert "failing open" in caplog.text
    assert Event.objects.count() == 5


def test_a_redis_that_never_answers_fails_open_after_the_timeout(api, settings, caplog, window_start):
    """A Redis that accepts connections and then says nothing (hung, or a firewall that
    swallows the replies): each request waits about REDIS_TIMEOUT for it, then is served
    under the per-process limit, and never hangs."""
    with socket.create_server(("127.0.0.1", 0), backlog=16) as silent:  # listens, never accepts
        settings.REDIS_URL = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        throttling.reset_store()
        with caplog.at_level(logging.WARNING, logger="infinity.ratelimit"):
            started = time.monotonic()
            response = api.post(EVENT, {"event_name": "e"})
            waited = time.monotonic() - started
    assert response.status_code == 201
    assert throttling.REDIS_TIMEOUT * 0.8 <= waited < throttling.REDIS_TIMEOUT + 2.0
    assert "failing open" in caplog.text
    assert Event.objects.count() == 1


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


@pytest.mark.parametrize("key, read", [("im:events:key:7:29000000", "im:keys:generation"), ("k:é", None), ("x" * 300, "g")])
def test_hit_request_is_the_resp_encoding_of_its_commands(key, read):
    from infinity.throttling import RedisCounter, hit_request

    commands = [("INCR", key), ("EXPIRE", key, 65)] + ([("GET", read)] if read else [])
    assert hit_request(key, 65, read) == RedisCounter.encode(commands)
