"""Ingestion benchmark: ``POST /api/v1/events`` under concurrent keep-alive clients.

    python -m bench ingest [--db bench_ingest] [--duration 30] [--connections 32] [--rounds 3]
                           [--server gunicorn:gthread|gunicorn|granian] [--workers 2] [--threads 8]
                           [--baseline DIR] [--no-bare] [--no-wrk] [--lean] [--parts] [--idempotency]

Starts the app (PostgreSQL from ``--db``/DATABASE_URL, Redis throttles from REDIS_URL, default
redis://127.0.0.1:6379/0, the events limit raised for the run), warms it up, then drives
``--connections`` clients for ``--duration`` seconds at each phase:

- ``events``: the reference event with a varying visitor and metadata (requests built before);
- with ``--baseline DIR``, the same requests at a server started from the checkout in DIR (with
  its own ``.venv``, the same database and arguments): the code before a change, beside it;
- ``/bench/bare``, a Django view through the same middleware, no DRF, no database, as a yardstick
  (``--no-bare`` leaves it out);
- with ``--lean``, the event endpoint without DRF (``bench/urls.py``);
- with ``--parts``, ``POST /events`` with one part of its work taken out or replaced
  (``bench.urls.PARTS``);
- with ``--idempotency``, the same requests each with an ``Idempotency-Key`` of its own (never a
  replay), and their events/s as a share of ``events``' (target ≥ 90 %).

Each phase runs ``--duration`` seconds in all, as ``--rounds`` slices taken in turn, the order
reversed every other round, so that all phases share the same stretch of a machine whose speed
drifts. It prints events/s, p50/p99 and errors per phase, the CPU each request cost the
server, PostgreSQL, Redis and the load client (``bench/cpu.py``), and checks that the rows
stored under each phase's event name equal its acknowledged (201) responses.
Targets: p99 ≤ 50 ms, 0 errors, stored = acknowledged; with ``--baseline``, events/s at least
90 % of the baseline's.
"""

import argparse
import itertools
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import nullcontext

from bench import cpu
from bench.client import LoadResult, build_request, run_load
from bench.common import (
    bench_site_and_key,
    commit_latency,
    key_from_checkout,
    load_average,
    machine,
    ms,
    percent,
    prepare_database,
    server_env,
)
from bench.servers import checkout, running_server

TARGET_P99 = 0.050
TARGET_VS_BASELINE = 0.90
TARGET_KEYED = 0.90
SITE = "ingest.bench.example.com"


def event_requests(raw_key: str, name: str, *, visitors: int, host: str = "127.0.0.1", path: str = "/api/v1/events"):
    """The reference event with a varying visitor, plan and sequence number, one cycle of
    ``3 * visitors`` requests built before the run: the load client shares the server's cores."""
    headers = {"Authorization": f"Bearer {raw_key}", "Content-Type": "application/json"}
    plans = ("free", "pro", "business")
    bodies = (
        {"event_name": name, "metadata": {"plan": plans[seq % 3], "seq": seq}, "visitor_id": f"visitor-{seq % visitors}"}
        for seq in range(3 * visitors)
    )
    payloads = [build_request("POST", path, host, headers, json.dumps(body).encode()) for body in bodies]
    return lambda seq: payloads[seq % len(payloads)]


def keyed_requests(raw_key: str, name: str, *, visitors: int, host: str = "127.0.0.1"):
    """``event_requests`` with an ``Idempotency-Key`` unique across the whole run (slices restart
    ``seq``), written into a fixed-width placeholder of the request built before."""
    headers = {"Authorization": f"Bearer {raw_key}", "Content-Type": "application/json"}
    placeholder = b"#" * 12
    plans = ("free", "pro", "business")
    payloads = [
        build_request("POST", "/api/v1/events", host, {**headers, "Idempotency-Key": f"{name}-{placeholder.decode()}"},
                      json.dumps({"event_name": name, "metadata": {"plan": plans[seq % 3], "seq": seq},
                                  "visitor_id": f"visitor-{seq % visitors}"}).encode())
        for seq in range(3 * visitors)
    ]  # fmt: skip
    sent = itertools.count()

    def make(seq):
        n = next(sent)
        return payloads[n % len(payloads)].replace(placeholder, b"%012d" % n, 1)

    return make


def bare_requests(host: str = "127.0.0.1"):
    body = json.dumps({"event_name": "user_signup", "metadata": {"plan": "pro", "seq": 0}, "visitor_id": "v"}).encode()
    payload = build_request("POST", "/bench/bare", host, {"Content-Type": "application/json"}, body)
    return lambda seq: payload


def wrk_rate(base: str, connections: int, duration: float) -> float | None:
    """The bare view's requests/s under wrk (C, barely loads the machine), as a cross-check of
    our Python client, which spends CPU the server could have used. None without wrk."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return None
    body = json.dumps({"event_name": "user_signup", "metadata": {"plan": "pro", "seq": 0}, "visitor_id": "v"})
    script = f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = {json.dumps(body)}\n'
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as lua:
        lua.write(script)
        lua.flush()
        out = subprocess.run([wrk, "-t2", f"-c{connections}", f"-d{int(duration)}s", "-s", lua.name, base + "/bench/bare"],
                             capture_output=True, text=True, timeout=duration + 30).stdout  # fmt: skip
    match = re.search(r"Requests/sec:\s+([0-9.]+)", out)
    return float(match.group(1)) if match else None


def line(label: str, result, unit: str) -> str:
    return (
        f"{label:<34} {result.rate:>9,.0f} {unit:<9} p50 {ms(result.percentile(50)):>9}  p99 {ms(result.percentile(99)):>9}  "
        f"errors {result.errors}  ({result.completed:,} in {result.duration:.1f} s; client CPU {result.client_cpu:.1f} s)"
    )


def interleaved(phases: dict, *, connections: int, duration: float, rounds: int):
    """Run each phase — ``name: (base URL, make_request)`` — for ``duration`` seconds in all, as
    ``rounds`` slices taken in turn, every other round in reverse order (a, b, b, a, a, b …), so
    that every phase shares each stretch of the machine. → ({phase: merged LoadResult},
    {phase: CPU seconds used per group over its slices})."""
    results = {name: LoadResult() for name in phases}
    used = {name: dict.fromkeys(cpu.GROUPS, 0.0) for name in phases}
    for turn in range(rounds):
        for name in phases if turn % 2 == 0 else reversed(phases):
            base, requests = phases[name]
            before = cpu.snapshot(base)
            results[name].add(run_load(base, requests, connections=connections, duration=duration / rounds))
            cpu.add_used(used[name], before, cpu.snapshot(base))
    return results, used


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench ingest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", help="PostgreSQL database (name or URL); default DATABASE_URL or bench_ingest")
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--server", default="gunicorn:gthread", help="default: what scripts/serve runs")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--visitors", type=int, default=20000, help="distinct visitor_ids cycled through")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--baseline", metavar="DIR", help="also drive a server of the checkout in DIR, in turns with this one")
    parser.add_argument("--no-bare", dest="bare", action="store_false", help="leave out the bare Django view (/bench/bare)")
    parser.add_argument("--no-wrk", action="store_true", help="skip the wrk cross-check of the bare view")
    parser.add_argument("--lean", action="store_true", help="also drive the event view without DRF (bench.urls), as long")
    parser.add_argument("--parts", action="store_true", help="also drive POST /events with one part taken out (bench.urls.PARTS)")
    parser.add_argument("--idempotency", action="store_true",
                        help="also drive POST /events with an Idempotency-Key on every request, as long")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=3, help="slices each phase's duration is run in, taken in turn")
    args = parser.parse_args(argv)
    if not 0 < args.duration <= 600 or not 0 < args.connections <= 256 or not 1 <= args.rounds <= 30:
        raise SystemExit("--duration must be in (0, 600] s, --connections in (0, 256] and --rounds in [1, 30]")
    baseline_root = checkout(args.baseline) if args.baseline else None

    prepare_database(args.db, default="bench_ingest")
    from django.db import connection

    from bench.urls import PARTS
    from events.models import Event

    site, raw_key = bench_site_and_key(SITE)
    baseline_key = key_from_checkout(baseline_root, SITE) if baseline_root else None
    run = f"bench-ingest-{uuid.uuid4().hex[:10]}"
    env = server_env(RATE_LIMIT_EVENTS=10**9, RATE_LIMIT_ANON=10**9)
    print(f"machine: {machine()}")
    print(f"server: {args.server}, {args.workers} workers"
          + (f" x {args.threads} threads" if args.server != "gunicorn" else "")
          + f"; PostgreSQL {connection.settings_dict['NAME']} ({Event.objects.filter(site=site).count():,} events of this site); "
          + f"Redis throttles; {args.connections} connections x {args.duration:.0f} s")  # fmt: skip
    if baseline_root:
        print(f"baseline: {baseline_root} (its own code and .venv; same database, server and arguments), in turns")
    print(f"PostgreSQL commit latency (one-row INSERT, median of 50): {ms(commit_latency())}; load average {load_average()}")
    connection.close()  # the harness holds no connection while measuring

    def events(base, key, name, path="/api/v1/events"):
        return base, event_requests(key, name, visitors=args.visitors, path=path)

    launch = {"server": args.server, "workers": args.workers, "threads": args.threads, "env": env}
    baseline_server = running_server(**launch, root=baseline_root) if baseline_root else nullcontext()
    with running_server(**launch) as base, baseline_server as old:
        phases = {"events": events(base, raw_key, run)}
        labels = {"events": "POST /api/v1/events"}
        if old:
            phases["baseline"] = events(old, baseline_key, f"{run}-baseline")
            labels["baseline"] = "baseline: POST /api/v1/events"
        if args.bare:
            phases["bare"] = (base, bare_requests())
            labels["bare"] = "bare Django view"
        if args.lean:
            phases["lean"] = events(base, raw_key, f"{run}-lean", "/api/v1/bench/lean-event")
            labels["lean"] = "no DRF (bench only)"
        if args.idempotency:
            phases["keyed"] = (base, keyed_requests(raw_key, f"{run}-keyed", visitors=args.visitors))
            labels["keyed"] = "POST /api/v1/events + Idempotency-Key"
        for part in PARTS if args.parts else ():
            phases[part] = events(base, raw_key, f"{run}-{part}", f"/api/v1/bench/event-{part}")
            labels[part] = f"{part} (bench only)"
        warmups = [events(base, raw_key, f"{run}-warmup")] + ([events(old, baseline_key, f"{run}-warmup")] if old else [])
        if args.idempotency:
            warmups.append((base, keyed_requests(raw_key, f"{run}-warmup-keyed", visitors=args.visitors)))
        for server_base, requests in warmups + ([(base, bare_requests())] if args.bare else []):
            run_load(server_base, requests, connections=args.connections, duration=args.warmup / 2)
        started = time.time()
        results, used = interleaved(phases, connections=args.connections, duration=args.duration, rounds=args.rounds)
        bare_wrk = wrk_rate(base, args.connections, args.duration) if args.bare and not args.no_wrk else None
    for name, label in labels.items():
        print(line(label, results[name], "req/s" if name == "bare" else "events/s"))
    for name, label in labels.items():
        result = results[name]
        share = cpu.per_request(dict.fromkeys(cpu.GROUPS, 0.0), used[name], result.completed)
        client = 1000 * result.client_cpu / result.completed if result.completed else 0.0
        total = sum(share.values()) + client
        print(f"CPU per request, {label + ':':<31} server {share['server']:.2f} ms, PostgreSQL {share['postgres']:.2f} ms, "
              f"Redis {share['redis']:.2f} ms, load client {client:.2f} ms; total {total:.2f} ms")  # fmt: skip

    names = {"events": run, "baseline": f"{run}-baseline", "lean": f"{run}-lean", "keyed": f"{run}-keyed"}
    names.update({part: f"{run}-{part}" for part, view in PARTS.items() if view.stores_rows})
    verdicts = []
    for phase, name in names.items():
        if phase in results:
            stored, statuses = Event.objects.filter(site=site, name=name).count(), results[phase].statuses
            acknowledged = statuses.get(201, 0)
            print(f"{labels[phase]}: stored rows {stored:,} vs acknowledged {acknowledged:,}: "
                  f"{'equal' if stored == acknowledged else 'MISMATCH'} (statuses {dict(sorted(statuses.items()))})")  # fmt: skip
            if phase in ("events", "baseline", "keyed"):
                verdicts.append((f"{phase}: stored == acknowledged", stored == acknowledged))
    ingest = results["events"]
    if args.bare:
        bare = results["bare"]
        print(f"POST /events: {percent(ingest.rate / bare.rate if bare.rate else 0.0)} of the bare view"
              + (f" ({percent(ingest.rate / bare_wrk)} of it under wrk: {bare_wrk:,.0f} req/s)" if bare_wrk else ""))  # fmt: skip
    if args.parts or args.lean:
        yardstick = "bare" if args.bare else "events"
        others = [name for name in phases if name in PARTS or name == "lean"] + (["events"] if args.bare else [])
        shares = ", ".join(f"{labels[name]} {percent(results[name].rate / results[yardstick].rate)}" for name in others)
        print(f"as a share of the {labels[yardstick]}: {shares}")
    verdicts += [
        (f"p99 {ms(ingest.percentile(99))} (target ≤ {ms(TARGET_P99)})", ingest.percentile(99) <= TARGET_P99),
        (f"errors {ingest.errors} (target 0)", ingest.errors == 0),
    ]
    if args.idempotency:
        keyed = results["keyed"]
        ratio = keyed.rate / ingest.rate if ingest.rate else 0.0
        print(f"with Idempotency-Key / without: {percent(ratio)} of the events/s ({keyed.rate:,.0f} vs {ingest.rate:,.0f}); "
              f"p99 {ms(keyed.percentile(99))} vs {ms(ingest.percentile(99))}; errors {keyed.errors}")  # fmt: skip
        verdicts.append((f"keyed {percent(ratio)} of unkeyed (target ≥ {TARGET_KEYED:.0%})", ratio >= TARGET_KEYED))
    if old:
        before = results["baseline"]
        ratio = ingest.rate / before.rate if before.rate else 0.0
        print(f"this checkout / baseline: {percent(ratio)} of the events/s ({ingest.rate:,.0f} vs {before.rate:,.0f}); "
              f"p99 {ms(ingest.percentile(99))} vs {ms(before.percentile(99))}; "
              f"errors {ingest.errors} vs {before.errors}")  # fmt: skip
        verdicts.append((f"vs baseline {percent(ratio)} (target ≥ {TARGET_VS_BASELINE:.0%})", ratio >= TARGET_VS_BASELINE))
    print("; ".join(f"{text} {'ok' if good else 'MISSED'}" for text, good in verdicts))
    print(f"run {run}, started {time.strftime('%H:%M:%S', time.gmtime(started))} UTC; "
          f"after it: commit latency {ms(commit_latency())}; load average {load_average()}")  # fmt: skip
    return 0 if all(good for _, good in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
