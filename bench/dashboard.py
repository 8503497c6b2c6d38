"""Dashboard benchmark: the busiest site's dashboard in headless Chromium, at 1M and 10M events.

    python -m bench dashboard [--dbs bench_dash_1m,bench_dash_10m] [--runs 20] [--workers 2] [--threads 8]
                              [--baseline DIR]

Each database must have been filled by ``python -m bench generate`` (the dashboard of its main
site, ``bench.example.com``, is opened). For every database the harness catches up the
rollups (what the every-minute timer does), signs a staff user in, starts gunicorn (gthread,
as ``scripts/serve`` runs it) with the static files collected (``manage.py collectstatic`` into
a temporary STATIC_ROOT, so they are served gzipped as in production), measures the bytes a
first visit transfers, and then, ``--runs`` times per database in alternating order:

- opens ``/sites/bench.example.com/`` (last 30 days, compared with the previous period) in a
  fresh browser context (nothing cached: a first visit) and times from navigation until every
  panel shows its numbers (the page's ``performance.now()`` when the last panel has rendered),
  and the slowest panel request of that load (Resource Timing);
- clicks the first row of the Sources report (a filter on the top source) and times from the
  click until every panel has re-rendered with the filter.

With ``--baseline DIR`` a server started from the checkout in DIR (its own code, ``.venv`` and
collected static files) is opened in turns with this one on each database, and both print.

Prints median and p95 of each, the requests of a page load, and the verdict. Targets (issue
21): load p95 ≤ 1 s at the largest database, p95(largest) / p95(smallest) ≤ 1.5; filter click
p95 ≤ 300 ms.
"""

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import load_average, machine, ms, server_env, times
from bench.env import ROOT
from bench.servers import checkout, running_server, venv_bin

MAIN_SITE = "bench.example.com"
TARGET_LOAD = 1.0
TARGET_GROWTH = 1.5
TARGET_FILTER = 0.3
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
READY = "document.documentElement !== null && document.documentElement.dataset.ready === 'true'"


def p95(values):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered) + 0.5) - 1))]


def prepare(db: str, *, catch_up: bool = True):
    """Point Django at ``db``, catch the rollups up, and sign a staff user in: (session key, events)."""
    from django.db import connections

    from bench.env import database_url
    from infinity.settings import database_from_url

    connections.close_all()
    connections.databases["default"].update(database_from_url(database_url(db)))
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.auth.models import User
    from django.contrib.sessions.backends.db import SessionStore
    from django.core.management import call_command

    from events.models import Event

    call_command("migrate", interactive=False, verbosity=0)
    if catch_up:
        started = time.perf_counter()
        call_command("rollup", site=MAIN_SITE, verbosity=0)
        print(f"{db}: manage.py rollup --site {MAIN_SITE} (catch up closed buckets) took {time.perf_counter() - started:.1f} s")
    user, _ = User.objects.get_or_create(username="bench-owner", defaults={"is_staff": True})
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    count = Event.objects.count()
    connections.close_all()
    return session.session_key, count


def collect_static(static_root: str, checkout: Path = ROOT) -> None:
    """``manage.py collectstatic`` of ``checkout`` into ``static_root``, as a production install serves them."""
    env = dict(os.environ, STATIC_ROOT=static_root, DEBUG="false")
    python = os.path.join(venv_bin(checkout), "python")
    subprocess.run([python, "manage.py", "collectstatic", "--no-input", "-v0"], cwd=checkout, env=env, check=True)


def first_visit_bytes(browser, base: str, session_key: str) -> tuple[int, int]:
    """(bytes on the wire, bytes decoded) of a first visit's responses once the network is idle."""
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    context.add_cookies([{"name": "sessionid", "value": session_key, "url": base}])
    page = context.new_page()
    try:
        page.goto(f"{base}/sites/{MAIN_SITE}/", wait_until="networkidle")
        page.wait_for_function(READY, timeout=60_000)
        return tuple(page.evaluate(
            "[...performance.getEntriesByType('navigation'), ...performance.getEntriesByType('resource')]"
            ".reduce((s, e) => [s[0] + e.encodedBodySize, s[1] + e.decodedBodySize], [0, 0])"
        ))  # fmt: skip
    finally:
        context.close()


def open_dashboard(browser, base: str, session_key: str) -> dict:
    """One first visit and one filter click; the timings in seconds."""
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    context.add_cookies([{"name": "sessionid", "value": session_key, "url": base}])
    page = context.new_page()
    try:
        page.goto(f"{base}/sites/{MAIN_SITE}/", wait_until="commit")
        page.wait_for_function(READY, timeout=60_000)
        load = page.evaluate("window.dashboardTimings.ready") / 1000
        panels = page.evaluate(
            "performance.getEntriesByType('resource').filter(e => e.name.includes('/panels/'))"
            ".map(e => [new URL(e.name).pathname.split('/').pop(), e.responseEnd - e.startTime])"
        )
        requests = page.evaluate("performance.getEntriesByType('resource').length") + 1  # + the page itself
        slowest = max(panels, key=lambda p: p[1])
        page.click('[data-panel="sources"] tbody tr:first-child th a')
        page.wait_for_function(READY + " && location.search.includes('filters=')", timeout=60_000)
        click = page.evaluate("window.dashboardTimings.render") / 1000
        return {"load": load, "slowest": slowest[1] / 1000, "slowest_panel": slowest[0], "click": click, "requests": requests}
    finally:
        context.close()


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench dashboard", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dbs", default="bench_dash_1m,bench_dash_10m", help="comma-separated databases filled by bench generate"
    )
    parser.add_argument("--runs", type=int, default=20, help="timed page loads (each with a filter click) per database")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--no-rollup", action="store_true", help="do not run manage.py rollup first")
    parser.add_argument("--baseline", metavar="DIR", help="also open the dashboard of a server of the checkout in DIR, in turns")
    args = parser.parse_args(argv)
    baseline = checkout(args.baseline) if args.baseline else None
    if not 0 < args.runs <= 500:
        raise SystemExit("--runs must be in (0, 500]")
    dbs = [db.strip() for db in args.dbs.split(",") if db.strip()]
    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("chromium is not installed (apt-get install chromium)")

    from bench import env

    os.environ["DATABASE_URL"] = env.database_url(dbs[0])
    env.setup_django()
    from playwright.sync_api import sync_playwright

    print(f"machine: {machine()}; load average before: {load_average()}")
    print(f"server: gunicorn gthread, {args.workers} workers x {args.threads} threads per database; Chromium headless,")
    print(f"  a fresh context per load; {args.runs} timed loads per database after 2 warm-up loads, databases in turn")
    if baseline:
        print(f"baseline: {baseline} (its own code, .venv and static files; same databases and arguments), in turns")
    checkouts = {"": ROOT, **({" (baseline)": baseline} if baseline else {})}
    sides = [db + suffix for db in dbs for suffix in checkouts]
    results = {side: [] for side in sides}
    found = {}
    with contextlib.ExitStack() as stack:
        static = {}
        for suffix, root in checkouts.items():
            static[suffix] = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-static-"))
            collect_static(static[suffix], root)
        servers = {}
        for db in dbs:
            session_key, count = prepare(db, catch_up=not args.no_rollup)
            found[db] = count
            for suffix, root in checkouts.items():
                server = server_env(
                    DATABASE_URL=env.database_url(db), SECURE_COOKIES="false", RATE_LIMIT_DASHBOARD=10**6,
                    STATIC_ROOT=static[suffix],
                )  # fmt: skip
                base = stack.enter_context(
                    running_server(
                        server="gunicorn:gthread",
                        workers=args.workers,
                        threads=args.threads,
                        env=server,
                        settings_module="infinity.settings",
                        ready_path="/login/",
                        root=root,
                    )  # fmt: skip
                )
                servers[db + suffix] = (base, session_key)
        playwright = stack.enter_context(sync_playwright())
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        stack.callback(browser.close)
        sizes = {}
        for side, (base, key) in servers.items():
            sizes[side] = first_visit_bytes(browser, base, key)
            for _ in range(2):
                open_dashboard(browser, base, key)
        for i in range(args.runs):
            for side in sides if i % 2 == 0 else reversed(sides):
                base, key = servers[side]
                results[side].append(open_dashboard(browser, base, key))

    print(f"load average after: {load_average()}")
    ok = True
    for side in sides:
        runs = results[side]
        loads, clicks, slow = [r["load"] for r in runs], [r["click"] for r in runs], [r["slowest"] for r in runs]
        panels = statistics.multimode(r["slowest_panel"] for r in runs)
        events = found[side.removesuffix(" (baseline)")]
        print(f"\n{side}: {events:,} events; {runs[0]['requests']} requests per page load (the page, static files, panels)")
        print(f"  a first visit transfers {sizes[side][0]:,} bytes of responses ({sizes[side][1]:,} decoded)")
        print(f"  navigation → every panel rendered   median {ms(statistics.median(loads)):>9}  p95 {ms(p95(loads)):>9}")
        print(f"  slowest panel request               median {ms(statistics.median(slow)):>9}  p95 {ms(p95(slow)):>9}"
              f"  (most often: {', '.join(panels)})")  # fmt: skip
        print(f"  filter click → re-rendered          median {ms(statistics.median(clicks)):>9}  p95 {ms(p95(clicks)):>9}")
    last, first = dbs[-1], dbs[0]
    load_p95 = p95([r["load"] for r in results[last]])
    click_p95 = max(p95([r["click"] for r in results[db]]) for db in dbs)
    print("\nsummary:")
    good = load_p95 <= TARGET_LOAD
    ok &= good
    print(f"  page load p95 at {last}: {ms(load_p95)} (target ≤ {ms(TARGET_LOAD)})  {'ok' if good else 'MISSED'}")
    if len(dbs) > 1:
        growth = load_p95 / p95([r["load"] for r in results[first]])
        good = growth <= TARGET_GROWTH
        ok &= good
        print(f"  growth p95({last}) / p95({first}): {times(growth)} (target ≤ {TARGET_GROWTH}x)  {'ok' if good else 'MISSED'}")
    good = click_p95 <= TARGET_FILTER
    ok &= good
    print(f"  filter click p95 (worst database): {ms(click_p95)} (target ≤ {ms(TARGET_FILTER)})  {'ok' if good else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
