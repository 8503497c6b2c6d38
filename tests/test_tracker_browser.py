"""A real browser: Debian's chromium, driven by Playwright, on a small site carrying the snippet.

The test site is served from a second local port (another origin, so the collector's CORS
is exercised for real). The collector sits behind a pretend reverse proxy: Playwright adds
an X-Forwarded-For with a public IP to the collector requests and TRUSTED_PROXIES believes
it, so the country is enriched as in production.
"""

import os
import shutil
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.db import connections

from accounts.keys import create_api_key
from accounts.models import Site
from events.models import Event, Kind
from tests.conftest import Api

CHROMIUM = shutil.which("chromium")
PUBLIC_IP = "81.2.69.142"  # registered in GB
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--headless",
]

# Skipped only on a developer machine without chromium; in CI (CI=true) a missing browser fails.
pytestmark = pytest.mark.skipif(
    CHROMIUM is None and os.environ.get("CI") != "true", reason="chromium is not installed (apt-get install chromium)"
)

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<script>
window.infinity = window.infinity || function () {{ (window.infinity.q = window.infinity.q || []).push(arguments) }};
</script>
{early}
<script defer data-domain="localhost" data-local src="{collector}/js/script.js"></script>
</head><body><h1>{title}</h1>{body}</body></html>"""

BODIES = {
    "/": ("Home", '<a id="about" href="/about">About</a>', ""),
    "/about": ("About", '<a id="app" href="/app">Open the app</a>', ""),
    "/app": (
        "App",
        "<button id=\"settings\" onclick=\"history.pushState({}, '', '/app/settings')\">Settings</button>"
        '<button id="same" onclick="history.replaceState({}, \'\', location.pathname)">Same page</button>'
        "<button id=\"signup\" onclick=\"infinity('signup', {plan: 'premium'})\">Sign up</button>",
        # Called before the script has loaded: the queue must keep it.
        "<script>infinity('app_opened')</script>",
    ),
}


def serve_site(collector_url):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            path = self.path.split("?")[0]
            key = "/app" if path.startswith("/app") else path
            title, body, early = BODIES.get(key, BODIES["/"])
            html = PAGE.format(title=title, body=body, early=early, collector=collector_url).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(html)))
            self.end_headers()
            self.wfile.write(html)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def site_server(live_server):
    server = serve_site(live_server.url)
    yield f"http://localhost:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def chromium(monkeypatch, site_server):
    # Playwright's sync API runs an event loop in this thread; our DB access here is plain sync code.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    if CHROMIUM is None:  # only under CI=true (skipped otherwise): say so, not Playwright's "playwright install"
        pytest.fail("chromium is not installed, and CI requires it (.ci/run installs it: apt-get install chromium)")
    threads_before = threading.active_count()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()
        # While Playwright's loop is current, Django hands this thread a connection of its
        # own (asgiref context); close it here or the test database cannot be dropped.
        connections.close_all()
    # The live server's request threads close their DB connections once the browser's
    # keep-alive sockets are gone; wait for that so the test database can be dropped.
    wait_for(lambda: threading.active_count() <= threads_before, timeout=5)


def wait_for(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    return predicate()


def test_pages_in_chromium_show_up_in_analytics(transactional_db, settings, live_server, site_server, chromium):
    settings.TRUSTED_PROXIES = ["127.0.0.1/32", "::1/128"]
    site = Site.objects.create(domain="localhost", name="Test site")
    _, key = create_api_key(site=site, name="browser test")
    collect_url = f"{live_server.url}/api/v1/collect"

    # A default headless browser announces itself: dropped as a bot.
    headless = chromium.new_page()
    headless.goto(f"{site_server}/headless")
    headless.wait_for_load_state("networkidle")
    headless.close()

    user_agent = chromium.new_page().evaluate("navigator.userAgent").replace("HeadlessChrome", "Chrome")
    context = chromium.new_context(user_agent=user_agent)
    context.set_default_timeout(15_000)

    def behind_proxy(route, request):
        route.continue_(headers={**request.headers, "x-forwarded-for": PUBLIC_IP})

    context.route(collect_url, behind_proxy)
    page = context.new_page()
    sent = []
    page.on("request", lambda r: sent.append(r.post_data) if r.url == collect_url else None)

    def sends(action):
        """Run a page action and wait until the collector has answered the tracker's request for
        it: rows are then stored in the order the actions happened, whatever the server's load."""
        with page.expect_response(collect_url):
            action()

    sends(lambda: page.goto(f"{site_server}/?utm_medium=cpc&secret=1", referer="https://www.google.com/search?q=infinity"))
    sends(lambda: page.click("#about"))
    with page.expect_response(lambda r: r.url == collect_url and '"name":"pageview"' in (r.request.post_data or "")):
        page.click("#app")
    sends(lambda: page.click("#settings"))  # pushState: a page view without a page load
    page.click("#same")  # replaceState to the same path: no second page view
    sends(lambda: page.click("#signup"))
    sends(lambda: page.go_back())  # popstate back to /app
    assert page.url.endswith("/app")
    assert len(sent) == 7  # 5 page views, the queued app_opened and signup

    # Opt-out: the site owner's localStorage flag silences the script in this browser.
    page.evaluate("localStorage.setItem('infinity_ignore', 'true')")
    page.goto(f"{site_server}/opted-out")
    page.wait_for_load_state("networkidle")
    assert page.evaluate("typeof window.infinity") == "function"  # the script ran, and sent nothing
    assert len(sent) == 7

    assert wait_for(lambda: Event.objects.filter(site=site).count() >= 7)
    context.close()

    analytics = Api(key).get("/api/v1/analytics", {"metrics": "page_views,unique_visitors,events"})
    assert analytics.status_code == 200
    assert analytics.json()["data"] == {"page_views": 5, "unique_visitors": 1, "events": 2}

    rows = list(Event.objects.filter(site=site).order_by("id"))
    assert [(e.name, e.path) for e in rows if e.kind == Kind.PAGEVIEW] == [
        ("pageview", "/?utm_medium=cpc"),
        ("pageview", "/about"),
        ("pageview", "/app"),
        ("pageview", "/app/settings"),
        ("pageview", "/app"),
    ]
    custom = {e.name: e.metadata for e in rows if e.kind == Kind.CUSTOM}
    assert custom == {"app_opened": {}, "signup": {"plan": "premium"}}
    first = rows[0]
    assert first.source == "Google" and first.referrer == "https://www.google.com/search"
    assert first.utm_medium == "cpc"
    environment = {(e.browser, e.os, e.device, e.country, e.hostname) for e in rows}
    assert environment == {("Chrome", "Linux", "desktop", "GB", "localhost")}
    assert [e.source for e in rows[1:]] == [""] * (len(rows) - 1)  # same-site navigation is no source
    assert len({e.visitor for e in rows}) == 1 and len({e.session for e in rows}) == 1
    assert not Event.objects.filter(path__in=["/headless", "/opted-out"]).exists()
