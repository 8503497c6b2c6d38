"""The public collector: what the tracking script sends, what is kept, what is dropped and why."""

import json
import logging
from datetime import timedelta

import pytest
from django.apps import apps
from django.db import connection, models
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import Site
from events.collector import MAX_COLLECTOR_BODY, DropReason, Hit, collect, forget_cached_sites
from events.models import Event, Kind

COLLECT = "/api/v1/collect"
CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.2 Mobile/15E148 Safari/604.1"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
PUBLIC_IP = "81.2.69.142"  # registered in GB
GERMAN_IP = "80.128.0.1"  # registered in DE


def page_view(**overrides):
    body = {"domain": "example.com", "url": "https://example.com/", "referrer": None, "name": "pageview", "screen": 1440}
    body.update(overrides)
    return body


class Browser:
    """Posts like the tracking script: JSON as text/plain, no key, a user agent and a socket IP."""

    def __init__(self, user_agent=CHROME, ip=PUBLIC_IP):
        self.client = APIClient()
        self.user_agent = user_agent
        self.ip = ip

    def send(self, body, *, raw=None, content_type="text/plain;charset=UTF-8", headers=None):
        data = raw if raw is not None else json.dumps(body)
        extra = {"HTTP_USER_AGENT": self.user_agent, "REMOTE_ADDR": self.ip, **(headers or {})}
        return self.client.generic("POST", COLLECT, data, content_type=content_type, **extra)


@pytest.fixture
def browser(cast):
    return Browser()


def hit(**overrides):
    values = {
        "domain": "example.com",
        "url": "https://example.com/",
        "referrer": "",
        "name": "pageview",
        "props": {},
        "hash_mode": False,
        "user_agent": CHROME,
        "ip": PUBLIC_IP,
    }
    values.update(overrides)
    return Hit(**values)


# --- Kept ------------------------------------------------------------------------------


def test_page_view_is_stored_enriched_without_a_key(browser, settings):
    response = browser.send(
        page_view(
            url="https://www.example.com/pricing?utm_source=newsletter&utm_medium=email&utm_campaign=launch&token=secret#plans",
            referrer="https://www.google.de/search?q=analytics",
        )
    )
    assert response.status_code == 202
    assert response.json() == {"accepted": True}
    event = Event.objects.get()
    assert event.kind == Kind.PAGEVIEW and event.name == "pageview"
    assert event.hostname == "example.com"
    assert event.path == "/pricing?utm_source=newsletter&utm_medium=email&utm_campaign=launch"
    assert event.source == "Newsletter"  # utm_source beats the Referer
    assert (event.utm_source, event.utm_medium, event.utm_campaign) == ("newsletter", "email", "launch")
    assert event.referrer == "https://www.google.de/search"  # no query string: it may hold personal data
    assert (event.browser, event.os, event.device, event.country) == ("Chrome", "Windows", "desktop", "GB")
    assert event.visitor is not None and event.session is not None
    assert event.metadata == {}


def test_referrer_becomes_the_source(browser):
    browser.send(page_view(referrer="https://www.google.com/"))
    browser.send(page_view(referrer="https://news.ycombinator.com/item?id=1"))
    browser.send(page_view(referrer="https://blog.example.com/post"))  # same site: no source
    assert list(Event.objects.order_by("id").values_list("source", flat=True)) == ["Google", "Hacker News", ""]


def test_custom_event_keeps_its_props(browser):
    response = browser.send(page_view(name="signup", props={"plan": "premium", "seats": 3}))
    assert response.status_code == 202
    event = Event.objects.get()
    assert (event.kind, event.name, event.metadata) == (Kind.CUSTOM, "signup", {"plan": "premium", "seats": 3})


def test_page_views_and_one_visitor_show_in_analytics(browser, api):
    for path in ("/", "/pricing", "/about"):
        assert browser.send(page_view(url=f"https://example.com{path}")).status_code == 202
    browser.send(page_view(name="signup"))
    Browser(user_agent=IPHONE).send(page_view())  # another device: another visitor
    body = api.get("/api/v1/analytics", {"metrics": "page_views,unique_visitors,events"}).json()
    assert body["data"] == {"page_views": 4, "unique_visitors": 2, "events": 1}


def test_application_json_is_accepted_too(browser):
    assert browser.send(page_view(), content_type="application/json").status_code == 202
    assert Event.objects.count() == 1


def test_www_domain_and_subdomain_pages_belong_to_the_site(browser):
    browser.send(page_view(domain="www.example.com", url="https://blog.example.com/hello"))
    assert Event.objects.get().hostname == "blog.example.com"


def test_site_comes_from_domain_never_from_a_smuggled_site_id(browser, cast):
    browser.send({**page_view(), "site_id": cast.outsider_site.pk, "site": "outsider.org"})
    assert Event.objects.get().site == cast.site


def test_pages_of_the_outsider_site_go_to_the_outsider(browser, cast):
    browser.send(page_view(domain="outsider.org", url="https://outsider.org/"))
    assert Event.objects.get().site == cast.outsider_site


# --- Dropped ---------------------------------------------------------------------------

DROPS = [
    ("unknown site", {"domain": "nobody.example", "url": "https://nobody.example/"}, CHROME, DropReason.UNKNOWN_SITE),
    ("page on another host", {"url": "https://evil.org/"}, CHROME, DropReason.HOSTNAME_MISMATCH),
    ("look-alike host", {"url": "https://example.com.evil.org/"}, CHROME, DropReason.HOSTNAME_MISMATCH),
    ("suffix without a dot", {"url": "https://notexample.com/"}, CHROME, DropReason.HOSTNAME_MISMATCH),
    ("crawler", {}, GOOGLEBOT, DropReason.BOT),
    ("headless browser", {}, CHROME.replace("Chrome/", "HeadlessChrome/"), DropReason.BOT),
    ("script", {}, "python-requests/2.31.0", DropReason.BOT),
    ("no user agent", {}, "", DropReason.BOT),
    ("referrer spam", {"referrer": "http://semalt.com/"}, CHROME, DropReason.REFERRER_SPAM),
    ("referrer spam subdomain", {"referrer": "https://www.best-seo-offer.com/x"}, CHROME, DropReason.REFERRER_SPAM),
    ("not a URL", {"url": "not a url"}, CHROME, DropReason.INVALID_URL),
    ("javascript URL", {"url": "javascript:alert(1)"}, CHROME, DropReason.INVALID_URL),
    ("file URL", {"url": "file:///home/me/index.html"}, CHROME, DropReason.INVALID_URL),
    ("no host", {"url": "https:///path"}, CHROME, DropReason.INVALID_URL),
    ("bad port", {"url": "https://example.com:99999/"}, CHROME, DropReason.INVALID_URL),
    ("too long", {"url": "https://example.com/" + "a" * 2000}, CHROME, DropReason.INVALID_URL),
]


@pytest.mark.parametrize("overrides, user_agent, reason", [d[1:] for d in DROPS], ids=[d[0] for d in DROPS])
def test_dropped_hits_get_202_and_store_nothing(cast, overrides, user_agent, reason):
    response = Browser(user_agent=user_agent).send(page_view(**overrides))
    assert response.status_code == 202
    assert response.json() == {"accepted": True}
    assert Event.objects.count() == 0


@pytest.mark.parametrize("overrides, user_agent, reason", [d[1:] for d in DROPS], ids=[d[0] for d in DROPS])
def test_pipeline_names_the_drop_reason(cast, overrides, user_agent, reason):
    values = {"domain": "example.com", "url": "https://example.com/", "referrer": ""}
    values.update(overrides)
    outcome = collect(hit(user_agent=user_agent, **values))
    assert outcome.dropped == reason
    assert outcome.event is None


def test_kept_hit_has_no_drop_reason(cast):
    outcome = collect(hit())
    assert outcome.dropped is None and outcome.event.pk is not None


def test_drops_are_logged_with_reason_but_no_ip(cast, caplog):
    with caplog.at_level(logging.INFO, logger="infinity.collector"):
        collect(hit(domain="nobody.example", url="https://nobody.example/"))
    assert "reason=UNKNOWN_SITE" in caplog.text
    assert PUBLIC_IP not in caplog.text


def test_unknown_and_known_sites_answer_alike(browser):
    known = browser.send(page_view())
    unknown = browser.send(page_view(domain="nobody.example", url="https://nobody.example/"))
    assert (known.status_code, known.content) == (unknown.status_code, unknown.content)


def test_a_new_site_is_picked_up_after_the_cache(browser, cast):
    browser.send(page_view(domain="new.example", url="https://new.example/"))
    Site.objects.create(domain="new.example")
    forget_cached_sites()  # the production cache lives 10 seconds
    browser.send(page_view(domain="new.example", url="https://new.example/"))
    assert Event.objects.filter(site__domain="new.example").count() == 1


# --- Malformed, oversized, floods ------------------------------------------------------

MALFORMED = [
    ("not JSON", "hello"),
    ("empty", ""),
    ("array", "[1, 2]"),
    ("string", '"pageview"'),
    ("deep nesting", "[" * 1000),
    ("NaN", '{"domain": "example.com", "url": "https://example.com/", "screen": NaN}'),
    ("huge number", '{"domain": "example.com", "url": "https://example.com/", "screen": 1e999999}'),
    ("lone surrogate", '{"domain": "example.com", "url": "https://example.com/\\ud800"}'),
    ("NUL", '{"domain": "example.com", "url": "https://example.com/\\u0000"}'),
    ("no domain", '{"url": "https://example.com/"}'),
    ("no url", '{"domain": "example.com"}'),
    ("domain not a string", '{"domain": ["example.com"], "url": "https://example.com/"}'),
    ("url not a string", '{"domain": "example.com", "url": ["https://example.com/"]}'),
    ("nested props", '{"domain": "example.com", "url": "https://example.com/", "name": "x", "props": {"a": {"b": 1}}}'),
    ("name too long", json.dumps(page_view(name="x" * 121))),
    ("invalid UTF-8", b'{"domain": "example.com", "url": "https://example.com/\xff"}'),
]


@pytest.mark.parametrize("raw", [m[1] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_unparseable_bodies_are_400_in_the_envelope(browser, raw):
    response = browser.send(None, raw=raw)
    assert response.status_code == 400
    assert response.json()["error"]["code"] in {"INVALID_REQUEST", "INVALID_JSON"}
    assert Event.objects.count() == 0


def _padded(size):
    body = page_view(padding="")
    body["padding"] = "x" * (size - len(json.dumps(body)))
    raw = json.dumps(body)
    assert len(raw) == size
    return raw


def test_body_at_the_limit_is_accepted(browser):
    assert browser.send(None, raw=_padded(MAX_COLLECTOR_BODY)).status_code == 202
    assert Event.objects.count() == 1


def test_body_over_the_limit_is_413(browser):
    response = browser.send(None, raw=_padded(MAX_COLLECTOR_BODY + 1))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert response["Access-Control-Allow-Origin"] == "*"
    assert Event.objects.count() == 0


def test_floods_from_one_ip_get_429(browser, settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "collector": 3}
    statuses = [browser.send(page_view()).status_code for _ in range(4)]
    assert statuses == [202, 202, 202, 429]
    limited = browser.send(page_view())
    assert limited.json()["error"]["code"] == "RATE_LIMITED"
    assert int(limited["Retry-After"]) >= 1
    assert limited["X-RateLimit-Limit"] == "3"
    assert Event.objects.count() == 3
    assert Browser(ip=GERMAN_IP).send(page_view()).status_code == 202  # other IPs are not affected


# --- CORS --------------------------------------------------------------------------------


def test_collector_is_open_to_every_origin_without_credentials(browser):
    response = browser.send(page_view(), headers={"HTTP_ORIGIN": "https://example.com"})
    assert response["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in response


def test_collector_answers_preflight(cast):
    response = APIClient().options(
        COLLECT,
        HTTP_ORIGIN="https://example.com",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="content-type",
    )
    assert response.status_code == 204
    assert response["Access-Control-Allow-Origin"] == "*"
    assert "POST" in response["Access-Control-Allow-Methods"]
    assert "content-type" in response["Access-Control-Allow-Headers"].lower()
    assert "Access-Control-Allow-Credentials" not in response


@pytest.mark.parametrize(
    "method, path",
    [
        ("post", "/api/v1/events"),
        ("post", "/api/v1/events/purchase"),
        ("get", "/api/v1/analytics"),
        ("options", "/api/v1/events"),
        ("options", "/api/v1/analytics"),
        ("get", "/api/v1/schema"),
        ("get", "/api/v1/nowhere"),
    ],
)
def test_no_other_api_endpoint_has_cors(api, cast, method, path):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {cast.key}")
    response = getattr(client, method)(path, HTTP_ORIGIN="https://evil.org")
    assert not any(header.lower().startswith("access-control-") for header in response.headers)


# --- Privacy ----------------------------------------------------------------------------


def _text_values():
    for model in apps.get_models():
        text_types = (models.CharField, models.TextField, models.JSONField)
        text_fields = [f.attname for f in model._meta.concrete_fields if isinstance(f, text_types)]
        if text_fields:
            for row in model.objects.values_list(*text_fields):
                yield from (json.dumps(v) if not isinstance(v, str) else v for v in row)


@pytest.mark.parametrize("ip", [PUBLIC_IP, "2a00:1450:4001::1"])
def test_no_ip_is_stored_anywhere(cast, settings, ip):
    settings.TRUSTED_PROXIES = ["127.0.0.1"]
    Browser(ip=ip).send(page_view(referrer="https://www.google.com/"))
    Browser(ip=ip).send(page_view(name="signup", props={"plan": "pro"}))
    Browser(ip="127.0.0.1").send(page_view(), headers={"HTTP_X_FORWARDED_FOR": ip})
    assert Event.objects.count() == 3
    assert set(Event.objects.values_list("country", flat=True)) == {"GB" if ip == PUBLIC_IP else "IE"}
    assert [value for value in _text_values() if ip in value] == []
    if not settings.REDIS_URL:  # the rate-limit counters are keyed by a hash of the IP
        with open(settings.RATELIMIT_STORE_PATH, "rb") as store:
            assert ip.encode() not in store.read()


def test_x_forwarded_for_is_ignored_unless_the_proxy_is_trusted(cast, settings):
    proxy = Browser(ip="127.0.0.1")
    proxy.send(page_view(), headers={"HTTP_X_FORWARDED_FOR": GERMAN_IP})
    settings.TRUSTED_PROXIES = ["127.0.0.1/32"]
    proxy.send(page_view(), headers={"HTTP_X_FORWARDED_FOR": f"{GERMAN_IP}, 127.0.0.1"})
    assert list(Event.objects.order_by("id").values_list("country", flat=True)) == ["", "DE"]


def test_same_person_on_another_site_is_another_visitor(cast):
    here = collect(hit()).event
    there = collect(hit(domain="outsider.org", url="https://outsider.org/")).event
    assert here.visitor != there.visitor


# --- Sessions -----------------------------------------------------------------------------


def test_events_under_30_minutes_apart_share_a_session(cast):
    start = timezone.now().replace(hour=10, minute=0)
    first = collect(hit(), now=start).event
    second = collect(hit(url="https://example.com/pricing"), now=start + timedelta(minutes=29)).event
    signup = collect(hit(name="signup"), now=start + timedelta(minutes=50)).event
    later = collect(hit(), now=start + timedelta(minutes=81)).event
    assert first.session == second.session == signup.session
    assert later.session != first.session
    assert first.visitor == later.visitor
    other = collect(hit(user_agent=IPHONE), now=start + timedelta(minutes=1)).event
    assert other.session not in {first.session, later.session}


def test_a_gap_of_exactly_30_minutes_starts_a_new_session(cast):
    start = timezone.now().replace(hour=10, minute=0)
    first = collect(hit(), now=start).event
    second = collect(hit(), now=start + timedelta(minutes=30)).event
    assert first.session != second.session


def test_sessions_are_64_bit_and_countable_with_group_by(cast):
    start = timezone.now().replace(hour=8, minute=0)
    for minutes in (0, 5, 10, 60, 65, 200):
        collect(hit(), now=start + timedelta(minutes=minutes))
    sessions = Event.objects.values("session").annotate(n=models.Count("id")).order_by("session")
    assert sorted(row["n"] for row in sessions) == [1, 2, 3]
    assert all(0 <= row["session"] < 2**63 for row in sessions)


def test_server_events_with_a_visitor_get_sessions(api):
    body = {"event_name": "signup", "visitor_id": "user-1", "timestamp": "2024-01-15T10:00:00Z"}
    api.post("/api/v1/events", body)
    api.post("/api/v1/events", {**body, "timestamp": "2024-01-15T10:20:00Z"})
    api.post(
        "/api/v1/events/purchase",
        {"price": 100, "currency": "EUR", "product_name": "x", "visitor_id": "user-1", "timestamp": "2024-01-15T12:00:00Z"},
    )
    api.post("/api/v1/events", {"event_name": "anonymous"})
    rows = list(Event.objects.order_by("occurred_at").values_list("session", flat=True))
    assert rows[0] == rows[1] and rows[2] != rows[0] and rows[3] is None


# --- Cost -----------------------------------------------------------------------------------


def test_a_page_view_costs_one_statement_once_warm(browser, django_assert_num_queries):
    browser.send(page_view())  # warms the site and salt caches
    # PostgreSQL: one INSERT that also finds the session; SQLite: the session lookup, then the INSERT.
    with django_assert_num_queries(1 if connection.vendor == "postgresql" else 2):
        assert browser.send(page_view(url="https://example.com/next")).status_code == 202


def test_bots_cost_no_query(browser, django_assert_num_queries):
    with django_assert_num_queries(0):
        assert Browser(user_agent=GOOGLEBOT).send(page_view()).status_code == 202


# --- The script ------------------------------------------------------------------------------


def test_tracking_script_is_served_cacheable_and_cross_origin(client):
    response = client.get("/js/script.js", HTTP_ACCEPT_ENCODING="gzip, br")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/javascript")
    assert response["Content-Encoding"] == "gzip"
    assert len(response.content) < 2048, "the tracking script must stay under 2 KB gzipped"
    assert response["Cache-Control"] == "public, max-age=86400"
    assert response["Access-Control-Allow-Origin"] == "*"
    plain = client.get("/js/script.js")
    assert b"api/v1/collect" in plain.content and "Content-Encoding" not in plain
    again = client.get("/js/script.js", HTTP_IF_NONE_MATCH=plain["ETag"])
    assert again.status_code == 304


def test_simultaneous_first_hits_of_a_visitor_share_a_session(cast):
    # A page view and a custom event fired with it, handled by two workers that cannot see each
    # other: rows of one statement do not see each other either.
    from events.ingest import store_rows

    now = timezone.now().replace(minute=10)
    rows = [{"site_id": cast.site.pk, "kind": int(Kind.PAGEVIEW), "name": "pageview", "occurred_at": at, "received_at": now,
             "visitor": visitor, "session": None, "metadata": {}}
            for visitor, at in ((42, now), (42, now + timedelta(milliseconds=3)), (43, now))]  # fmt: skip
    first, second, other = (Event.objects.get(pk=pk) for pk in store_rows(rows))
    assert first.session == second.session is not None
    assert other.session != first.session


@pytest.mark.parametrize("query", ["utm_source=%00", "ref=a%00b", "utm_medium=x%1Fy"])
def test_control_characters_in_decoded_tags_are_dropped_not_an_oracle(browser, query):
    # A decoded %00 must not reach PostgreSQL's INSERT: a 503 for a known site beside a 202 for
    # an unknown one would tell anyone whether a site exists.
    for domain in ("example.com", "unknown.example"):
        response = browser.send({"domain": domain, "url": f"https://{domain}/?{query}"})
        assert response.status_code == 202, (domain, response.content)
    event = Event.objects.get()
    assert "\x00" not in event.utm_source + event.utm_medium + event.source


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL refuses a NUL in text; SQLite stores it")
@pytest.mark.django_db(transaction=True)  # autocommit as in production: the failed INSERT aborts no test transaction
def test_a_value_the_database_refuses_drops_the_hit(cast):
    # The safety net behind the parsers: a DataError at the INSERT is a drop (and so a 202),
    # never a 5xx that would tell a known site from an unknown one.
    outcome = collect(hit(name="sign\x00up"))
    assert outcome.dropped == DropReason.INVALID
    assert not Event.objects.exists()
