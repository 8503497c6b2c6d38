"""Query benchmark over HTTP: eight analytics questions at N = 1M and N = 10M, plus freshness.

    python -m bench query [--dbs bench_1m,bench_10m] [--runs 40] [--rounds 4] [--server gunicorn] [--workers 2]

Each database must have been filled by ``python -m bench generate`` (the queries read its
main site, bench.example.com). The harness starts the app for every database at once, each
with a fresh key, warms each query up, then times ``--runs`` sequential requests of each, as
``--rounds`` slices (default 4) taken from the databases in turn, so that a slow stretch of this
machine does not fall on one side of the growth ratio; it prints the median and p95 and, with
two databases, p95(second)/p95(first). Queries (dates in the
site's timezone, relative to today):

- totals:   30 days, page_views,unique_visitors,events
- series:   90 days, interval=day, page_views,unique_visitors
- pages:    30 days, breakdown=page&limit=10
- sources:  30 days, breakdown=source, filters=country==DE
- plans:    30 days, breakdown=metadata.plan, filters=event_name==signup, metrics=events
- today:    today by hour with visits and bounce rate, today's top 10 pages, and the last 24
            hours by hour (``hours=24``): the current hours are not rolled up yet, so these read
            raw events beside the rollups, as a dashboard opened now does

Freshness: posts an event with a unique name, then polls the analytics API (filtered on
that name, today) until it is counted, printing the delay.
Targets (issue 4, N = 10M): totals and series p95 ≤ 50 ms; breakdowns, filtered and
today's queries p95 ≤ 150 ms; p95(10M)/p95(1M) ≤ 1.5; freshness ≤ 1 s.
"""

import argparse
import contextlib
import json
import sys
import time
import urllib.parse
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta

from bench.client import LoadResult, build_request, median, run_load
from bench.common import machine, ms, server_env, times
from bench.servers import running_server

QUERIES = [  # name, days, params, p95 target (s)
    ("totals 30d", 30, {"metrics": "page_views,unique_visitors,events"}, 0.050),
    ("series 90d by day", 90, {"metrics": "page_views,unique_visitors", "interval": "day"}, 0.050),
    ("top 10 pages", 30, {"metrics": "page_views,unique_visitors", "breakdown": "page", "limit": "10"}, 0.150),
    ("sources where country==DE", 30,
     {"metrics": "unique_visitors,page_views", "breakdown": "source", "filters": "country==DE"}, 0.150),
    ("metadata.plan of signup", 30,
     {"metrics": "events,unique_visitors", "breakdown": "metadata.plan", "filters": "event_name==signup"}, 0.150),
    # What a dashboard opens first: the current day, whose latest hours are read from raw events.
    ("today by hour", 1, {"metrics": "page_views,unique_visitors,visits,bounce_rate", "interval": "hour"}, 0.150),
    ("today top 10 pages", 1, {"metrics": "page_views,unique_visitors", "breakdown": "page", "limit": "10"}, 0.150),
    ("last 24 hours by hour", None, {"metrics": "page_views,unique_visitors,visits", "interval": "hour", "hours": "24"}, 0.150),
]  # fmt: skip
TARGET_GROWTH = 1.5
TARGET_FRESHNESS = 1.0
MAIN_SITE = "bench.example.com"


def query_path(days: int | None, params: dict, today) -> str:
    """The request of ``days`` days up to ``today``, or of ``params``' own ``hours`` (days None)."""
    full = dict(params) if days is None else {
        "start_date": (today - timedelta(days=days - 1)).isoformat(), "end_date": today.isoformat(), **params}  # fmt: skip
    return "/api/v1/analytics?" + urllib.parse.urlencode(full)


def site_and_key(db: str, *, catch_up: bool = True):
    """Connect Django to ``db`` and make a fresh key for the main site there."""
    from django.db import connections

    from bench.env import database_url
    from bench.generate import MAIN_SITE as GENERATED_MAIN

    connections.close_all()
    settings_dict = connections.databases["default"]
    from infinity.settings import database_from_url

    settings_dict.update(database_from_url(database_url(db)))
    from django.core.management import call_command, get_commands

    from accounts.keys import create_api_key
    from accounts.models import Site

    call_command("migrate", interactive=False, verbosity=0)
    if catch_up and "rollup" in get_commands():  # what the every-minute timer does in production
        started = time.perf_counter()
        call_command("rollup", site=GENERATED_MAIN, verbosity=0)
        elapsed = time.perf_counter() - started
        print(f"{db}: manage.py rollup --site {GENERATED_MAIN} (catch up closed buckets) took {elapsed:.1f} s")
    site = Site.objects.get(domain=GENERATED_MAIN)
    _, raw = create_api_key(site=site, name="bench-query")
    from events.models import Event

    count = Event.objects.count()
    connections.close_all()
    return site, raw, count


def measure(servers: dict, runs: int, rounds: int, today, queries=QUERIES) -> dict:
    """Time each query on every database's server: ``runs`` requests each, taken as ``rounds``
    slices in turn (query by query, the databases in alternating order), so that a slow stretch
    of the machine falls on both sides of p95(10M) / p95(1M) alike. → {db: {name: (result, sample)}}."""
    out = {db: {} for db in servers}
    for name, days, params, _target in queries:
        path = query_path(days, params, today)
        requests = {}
        for db, (base, raw_key) in servers.items():
            headers = {"Authorization": f"Bearer {raw_key}"}
            requests[db] = build_request("GET", path, "127.0.0.1", headers)
            with urllib.request.urlopen(urllib.request.Request(base + path, headers=headers), timeout=60) as response:
                sample = json.loads(response.read())
            run_load(base, lambda seq, r=requests[db]: r, connections=1, duration=60, max_requests=3)  # warm-up
            out[db][name] = (LoadResult(), sample)
        order = list(servers)
        for i in range(rounds):
            count = runs // rounds + (1 if i < runs % rounds else 0)
            for db in order if i % 2 == 0 else reversed(order):
                base = servers[db][0]
                part = run_load(base, lambda seq, r=requests[db]: r, connections=1, duration=120, max_requests=count)
                out[db][name][0].add(part)
    return out


def freshness(base, raw_key, *, timeout=10.0) -> float:
    """Seconds from an acknowledged POST /events to the analytics API counting it."""
    name = f"fresh-{uuid.uuid4().hex[:12]}"
    headers = {"Authorization": f"Bearer {raw_key}", "Content-Type": "application/json"}
    today = datetime.now(UTC).date().isoformat()
    query = (
        base
        + "/api/v1/analytics?"
        + urllib.parse.urlencode({"start_date": today, "end_date": today, "metrics": "events", "filters": f"event_name=={name}"})
    )
    body = json.dumps({"event_name": name, "visitor_id": "freshness"}).encode()
    post = urllib.request.Request(base + "/api/v1/events", data=body, headers=headers, method="POST")
    with urllib.request.urlopen(post, timeout=10) as response:
        assert response.status == 201
    acknowledged = time.perf_counter()
    while time.perf_counter() - acknowledged < timeout:
        with urllib.request.urlopen(urllib.request.Request(query, headers=headers), timeout=10) as response:
            if json.loads(response.read())["data"]["events"] >= 1:
                return time.perf_counter() - acknowledged
        time.sleep(0.01)
    return float("inf")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench query", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dbs", default="bench_1m,bench_10m", help="comma-separated databases filled by bench generate")
    parser.add_argument("--runs", type=int, default=40, help="timed requests per query")
    parser.add_argument("--server", default="gunicorn")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=4, help="slices per query, the databases taken in turn")
    parser.add_argument("--no-rollup", action="store_true", help="do not run manage.py rollup first (e.g. a rebuild is running)")
    parser.add_argument("--only", help="comma-separated query names (prefixes) to run, e.g. totals,top")
    args = parser.parse_args(argv)
    queries = [q for q in QUERIES if not args.only or any(q[0].startswith(p.strip()) for p in args.only.split(","))]
    if not queries:
        raise SystemExit(f"--only matched no query; names: {', '.join(q[0] for q in QUERIES)}")
    if not 0 < args.runs <= 1000:
        raise SystemExit("--runs must be in (0, 1000]")
    if not 0 < args.rounds <= args.runs:
        raise SystemExit("--rounds must be in (0, --runs]")
    dbs = [db.strip() for db in args.dbs.split(",") if db.strip()]

    import os

    from bench import env

    os.environ["DATABASE_URL"] = env.database_url(dbs[0])
    env.setup_django()
    print(f"machine: {machine()}")
    print(
        f"server: {args.server}, {args.workers} workers, one per database, all running; 1 client,"
        f" {args.runs} timed runs per query after 3 warm-up runs, as {args.rounds} slices with the databases in turn"
    )
    today = datetime.now(UTC).date()
    with contextlib.ExitStack() as stack:
        servers, found = {}, {}  # db → (base URL, raw key), (site, events in the database)
        for db in dbs:
            site, raw, count = site_and_key(db, catch_up=not args.no_rollup)
            server = server_env(DATABASE_URL=env.database_url(db), RATE_LIMIT_ANALYTICS=10**9, RATE_LIMIT_EVENTS=10**9)
            base = stack.enter_context(running_server(server=args.server, workers=args.workers, threads=args.threads, env=server))
            servers[db], found[db] = (base, raw), (site, count)
        measured = measure(servers, args.runs, args.rounds, today, queries)
        fresh = {db: freshness(base, raw) for db, (base, raw) in servers.items()}
    for db in dbs:
        site, count = found[db]
        print(f"\n{db}: {count:,} events in the database ({site.domain} is site {site.pk})")
        for name, (result, sample) in measured[db].items():
            first = {k: v for k, v in sample.get("data", {}).items()}
            print(f"  {name:<28} median {ms(median(result.latencies)):>9}  p95 {ms(result.percentile(95)):>9}  "
                  f"errors {result.errors}  data {json.dumps(first)[:80]}")  # fmt: skip
        print(f"  freshness: an acknowledged event was counted after {ms(fresh[db])} (target ≤ {TARGET_FRESHNESS:.0f} s)")

    ok = True
    last = dbs[-1]
    print(f"\nsummary (p95; targets at {last}):")
    width = max(14, *(len(db) + 2 for db in dbs))
    header = f"  {'query':<28}" + "".join(f"{db:>{width}}" for db in dbs) + ("   growth" if len(dbs) > 1 else "")
    print(header)
    for name, _days, _params, target in queries:
        p95s = [measured[db][name][0].percentile(95) for db in dbs]
        errors = sum(measured[db][name][0].errors for db in dbs)
        growth = p95s[-1] / p95s[0] if len(dbs) > 1 and p95s[0] else None
        good = p95s[-1] <= target and errors == 0 and (growth is None or growth <= TARGET_GROWTH)
        ok &= good
        text = f"  {name:<28}" + "".join(f"{ms(p):>{width}}" for p in p95s)
        if growth is not None:
            text += f"   {times(growth):>6}"
        print(
            text
            + f"   target ≤ {ms(target)}"
            + (f", ≤ {TARGET_GROWTH}x" if growth is not None else "")
            + f"  {'ok' if good else 'MISSED'}"
        )
    fresh_ok = all(fresh[db] <= TARGET_FRESHNESS for db in dbs)
    print("  freshness " + ", ".join(f"{db} {ms(fresh[db])}" for db in dbs) + f"  {'ok' if fresh_ok else 'MISSED'}")
    return 0 if ok and fresh_ok else 1


if __name__ == "__main__":
    sys.exit(main())
