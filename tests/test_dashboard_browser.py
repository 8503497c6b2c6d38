"""The dashboard in a real browser: Debian's chromium, driven by Playwright, against a live server.

Every number read off the page is checked against ``GET /api/v1/analytics`` with the query
the panel says it asked (``data-query``).
"""

import csv
import json
import os
import shutil
import threading
import uuid
from datetime import timedelta
from urllib.parse import parse_qsl, urlsplit

import pytest
from django.contrib.auth.models import User
from django.db import connections
from django.utils import timezone

from accounts.keys import create_api_key
from accounts.models import Membership, ShareLink, Site
from events.models import Event, Kind
from tests.conftest import Api
from tests.test_tracker_browser import CHROMIUM, CHROMIUM_ARGS, wait_for

pytestmark = pytest.mark.skipif(
    shutil.which("chromium") is None and os.environ.get("CI") != "true",
    reason="chromium is not installed (apt-get install chromium)",
)
READY = "document.documentElement.dataset.ready === 'true'"


@pytest.fixture(autouse=True)
def _own_ratelimit_cache(settings):
    """django-ratelimit's counters in a cache of this test's own: logins from 127.0.0.1 in other tests do not count."""
    settings.CACHES = {**settings.CACHES, "dashboard-test": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                                                            "LOCATION": uuid.uuid4().hex}}  # fmt: skip
    settings.RATELIMIT_USE_CACHE = "dashboard-test"


@pytest.fixture
def browser(monkeypatch):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    if CHROMIUM is None:
        pytest.fail("chromium is not installed, and CI requires it (.ci/run installs it: apt-get install chromium)")
    threads_before = threading.active_count()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()
        connections.close_all()
    wait_for(lambda: threading.active_count() <= threads_before, timeout=5)


def make_site():
    site = Site.objects.create(domain="example.com", name="Example")
    _, key = create_api_key(site=site, name="browser test")
    when = timezone.now() - timedelta(days=3)
    visits = [  # visitor, source, pages, country, browser
        (1, "Google", ["/", "/pricing", "/signup"], "DE", "Firefox"),
        (2, "Google", ["/"], "FR", "Chrome"),
        (3, "Google", ["/blog", "/"], "US", "Chrome"),
        (4, "", ["/"], "US", "Safari"),
        (5, "Hacker News", ["/blog"], "GB", "Firefox"),
    ]
    for visitor, source, pages, country, browser in visits:
        for i, path in enumerate(pages):
            Event.objects.create(site=site, kind=Kind.PAGEVIEW, name="pageview", path=path, visitor=visitor, session=visitor * 10,
                                 source=source, country=country, browser=browser, device="desktop",
                                 occurred_at=when + timedelta(minutes=visitor * 5 + i))  # fmt: skip
    Event.objects.create(site=site, kind=Kind.CUSTOM, name="signup", metadata={"plan": "pro"}, visitor=1, session=10,
                         occurred_at=when + timedelta(minutes=8), path="/signup", country="DE")  # fmt: skip
    return site, key


def login(page, base, username, password):
    page.goto(f"{base}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")


def api_answer(key, query: str) -> dict:
    return Api(key).get("/api/v1/analytics", dict(parse_qsl(query, keep_blank_values=True))).json()


def shown_cards(page) -> tuple[dict, str]:
    cards = page.eval_on_selector_all(
        ".stat-card[data-metric]", "els => els.map(e => [e.dataset.metric, e.querySelector('.stat-value').dataset.value])"
    )
    return dict(cards), page.get_attribute(".stat-cards", "data-query")


def check_cards_and_graph(page, key) -> dict:
    cards, query = shown_cards(page)
    answer = api_answer(key, query)
    assert cards == {m: str(answer["data"][m]) for m in cards}
    graph = json.loads(page.text_content("#graph-data"))
    assert graph["labels"] == [p["date"] for p in answer["series"]]
    for metric, values in graph["series"].items():
        assert values == [p[metric] for p in answer["series"]]
    return answer


def shown_rows(page, panel) -> tuple[list, str]:
    body = f'[data-panel="{panel}"] .report-body'
    rows = page.eval_on_selector_all(
        f"{body} tbody tr", "rows => rows.map(r => [r.dataset.value, r.querySelector('td').dataset.value])"
    )
    return rows, page.get_attribute(body, "data-query")


def test_a_site_owner_reads_and_drives_the_dashboard(transactional_db, live_server, browser, tmp_path):
    site, key = make_site()
    User.objects.create_user("owner", password="owner-pass-1", is_staff=True)
    context = browser.new_context(viewport={"width": 1440, "height": 900}, accept_downloads=True)
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))

    login(page, live_server.url, "owner", "owner-pass-1")
    page.wait_for_url(f"{live_server.url}/")
    page.wait_for_selector(".site-card .site-summary[data-query]")
    assert page.text_content(".site-domain") == "example.com"

    page.click(".site-link")
    page.wait_for_function(READY)
    check_cards_and_graph(page, key)
    rows, query = shown_rows(page, "sources")
    answer = api_answer(key, query)
    assert rows == [[r["value"] or "", str(r["unique_visitors"])] for r in answer["breakdown"]]
    assert rows[0] == ["Google", "3"]

    # A click on a source filters every panel by it.
    page.click('[data-panel="sources"] tr[data-value="Google"] a')
    page.wait_for_function(READY)
    assert "filters=source==Google" in page.url
    assert page.text_content(".chip").split() == ["Source", "is", "Google"]
    narrowed = check_cards_and_graph(page, key)
    assert narrowed["data"]["unique_visitors"] == 3
    pages, query = shown_rows(page, "pages")
    first = dict(parse_qsl(query))["metrics"].split(",")[0]
    assert pages == [[r["value"], str(r[first])] for r in api_answer(key, query)["breakdown"]]
    page.click(".chip a")  # removing the chip
    page.wait_for_function(READY)
    assert page.query_selector(".chip") is None and shown_cards(page)[0]["unique_visitors"] == "5"

    # The range from the keyboard, then the comparison from its menu.
    page.keyboard.press("w")
    page.wait_for_function(READY)
    assert "period=7d" in page.url and page.text_content(".period-label") == "Last 7 days"
    answer = check_cards_and_graph(page, key)
    assert len(answer["series"]) == 7
    page.click(".compare-menu summary")
    page.click('.compare-menu a:has-text("No comparison")')
    page.wait_for_function(READY)
    assert "compare=off" in page.url and page.query_selector(".change") is None
    page.click(".compare-menu summary")
    page.click('.compare-menu a:has-text("Year over year")')
    page.wait_for_function(READY)
    assert page.query_selector_all(".stat-card .change")
    assert dict(parse_qsl(page.get_attribute(".stat-cards", "data-query")))["compare"] == "year_over_year"
    start = timezone.localdate() - timedelta(days=6)
    assert page.get_attribute(".stat-cards", "data-comparison-start") == start.replace(year=start.year - 1).isoformat()

    # A card click plots its metric without a request.
    page.click('.stat-card[data-metric="page_views"]')
    assert "metric=page_views" in page.url and page.text_content(".legend-metric") == "Pageviews"

    # Details and its CSV.
    page.goto(f"{live_server.url}/sites/example.com/details/sources/")
    with page.expect_download() as download:
        page.click("text=Download CSV")
    path = tmp_path / "sources.csv"
    download.value.save_as(path)
    with open(path, newline="") as f:
        lines = list(csv.reader(f))
    query = page.get_attribute(".details-table", "data-query")
    answer = api_answer(key, query)
    assert lines[0][:2] == ["Source", "unique_visitors"]
    assert [line[:2] for line in lines[1:]] == [[r["value"] or "", str(r["unique_visitors"])] for r in answer["breakdown"]]

    # The shortcuts overlay.
    page.goto(f"{live_server.url}/sites/example.com/")
    page.wait_for_function(READY)
    page.keyboard.press("?")
    assert page.is_visible("#shortcuts")
    assert errors == []
    context.close()


def test_small_screens_and_the_dark_theme(transactional_db, live_server, browser):
    make_site()
    User.objects.create_user("owner", password="owner-pass-1", is_staff=True)
    context = browser.new_context(viewport={"width": 375, "height": 800}, color_scheme="dark")
    page = context.new_page()
    login(page, live_server.url, "owner", "owner-pass-1")
    page.goto(f"{live_server.url}/sites/example.com/?filters=source==Google")
    page.wait_for_function(READY)
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(15, 19, 32)"
    page.click("[data-theme-toggle]")  # system → light
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(246, 247, 251)"
    page.reload()
    page.wait_for_function(READY)
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(246, 247, 251)"  # remembered
    for path in (
        "/",
        "/sites/example.com/details/pages/",
        "/sites/example.com/share/",
        "/sites/new/",
        "/sites/example.com/setup/",
    ):
        page.goto(live_server.url + path)
        assert page.evaluate("document.documentElement.scrollWidth") <= 375, path
    context.close()


def test_shared_links_and_strangers(transactional_db, live_server, browser):
    site, key = make_site()
    other = Site.objects.create(domain="other.org")
    open_link = ShareLink.objects.create(site=site, name="open")
    locked = ShareLink(site=site, name="locked")
    locked.set_password("let me in")
    locked.save()
    revoked = ShareLink.objects.create(site=site, revoked_at=timezone.now())
    stranger = User.objects.create_user("stranger", password="stranger-pass-1")
    Membership.objects.create(user=stranger, site=other)

    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{live_server.url}/share/{open_link.token}/")
    page.wait_for_function(READY)
    check_cards_and_graph(page, key)
    assert page.query_selector("text=Sign out") is None and page.query_selector('a[href*="/admin/"]') is None

    assert page.goto(f"{live_server.url}/share/{revoked.token}/").status == 404
    page.goto(f"{live_server.url}/share/{locked.token}/")
    assert page.is_visible("text=protected by a password")
    page.fill("#id_password", "wrong")
    page.click("button[type=submit]")
    assert page.is_visible("text=That password is not right.")
    page.fill("#id_password", "let me in")
    page.click("button[type=submit]")
    page.wait_for_function(READY)
    assert urlsplit(page.url).path == f"/share/{locked.token}/"
    check_cards_and_graph(page, key)
    context.close()

    context = browser.new_context()
    page = context.new_page()
    login(page, live_server.url, "stranger", "stranger-pass-1")
    page.wait_for_url(f"{live_server.url}/sites/other.org/")
    assert page.goto(f"{live_server.url}/sites/example.com/").status == 404
    assert page.goto(f"{live_server.url}/sites/example.com/panels/stats").status == 404
    context.close()
