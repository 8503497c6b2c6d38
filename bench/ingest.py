"""Ingestion benchmark: ``POST /api/v1/events`` against a bare Django view, in one run.

    python -m bench ingest [--db bench_ingest] [--duration 30] [--connections 32]
                           [--server gunicorn:gthread|gunicorn|granian] [--workers 2] [--threads 8] [--lean] [--rounds 3]

Starts the app (PostgreSQL from ``--db``/DATABASE_URL, Redis throttles from REDIS_URL,
default redis://127.0.0.1:6379/0, the events limit raised for the run), warms it up, then
drives ``--connections`` concurrent keep-alive clients for ``--duration`` seconds at:
1. ``/bench/bare`` — a Django view through the same middleware, no DRF, no database;
2. ``/api/v1/events`` — the reference event with a varying visitor and metadata (requests built before the run);
3. with ``--lean``, ``/api/v1/bench/lean-event``: the same work without DRF (``bench/urls.py``), not a target;
4. with ``--parts``, ``POST /events`` with one part of its work taken out or replaced
   (``bench.urls.PARTS``: without the write, the group commit over a sleep instead of
   PostgreSQL, without the Redis round trip), each as long: what each part costs the ratio.
Each phase runs ``--duration`` seconds in all, as ``--rounds`` slices taken in turn (default
3 × 10 s: bare, events, bare, events, …), so both sides of the ratio share the same stretch of
the machine. It prints requests/s, p50/p99 and errors for both, the CPU each request cost the server,
PostgreSQL, Redis and the load client (``bench/cpu.py``), the ratio, and checks that the rows
stored under the run's event name equal the acknowledged (201) responses.
Targets (issue 4): ≥ 60 % of the baseline, p99 ≤ 50 ms, 0 errors.
"""

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

from bench import cpu
from bench.client import LoadResult, build_request, run_load
from bench.common import (
    bench_site_and_key,
    commit_latency,
    load_average,
    machine,
    ms,
    percent,
    prepare_database,
    server_env,
)
from bench.servers import running_server

TARGET_RATIO = 0.60
TARGET_P99 = 0.050


def event_requests(raw_key: str, name: str, *, visitors: int, host: str = "127.0.0.1", path: str = "/api/v1/events"):
    """The reference event with a varying visitor, plan and sequence number, built before the run
    (one cycle of ``3 * visitors`` requests, 0.46 s for the default 20,000 visitors) as the bare
    view's constant request is: the load client shares the server's two cores, and encoding a
    body per request cost it 4.7 µs (timeit), charged to the ingest side."""
    headers = {"Authorization": f"Bearer {raw_key}", "Content-Type": "application/json"}
    plans = ("free", "pro", "business")
    bodies = (
        {"event_name": name, "metadata": {"plan": plans[seq % 3], "seq": seq}, "visitor_id": f"visitor-{seq % visitors}"}
        for seq in range(3 * visitors)
    )
    payloads = [build_request("POST", path, host, headers, json.dumps(body).encode()) for body in bodies]
    return lambda seq: payloads[seq % len(payloads)]


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


def interleaved(base, phases: dict, *, connections: int, duration: float, rounds: int):
    """Run each phase for ``duration`` seconds in all, as ``rounds`` slices taken in turn
    (bare, events, bare, events, …), so that both sides of the ratio share the same stretch of
    the machine: this VM's speed drifts by tens of percent within minutes, and back-to-back
    30 s phases moved the ratio between runs by as much. → ({phase: merged LoadResult},
    {phase: CPU seconds used per group over its slices})."""
    results = {name: LoadResult() for name in phases}
    used = {name: dict.fromkeys(cpu.GROUPS, 0.0) for name in phases}
    for _ in range(rounds):
        for name, requests in phases.items():
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
    parser.add_argument("--no-wrk", action="store_true", help="skip the wrk cross-check of the baseline")
    parser.add_argument("--lean", action="store_true", help="also drive the event view without DRF (bench.urls), as long")
    parser.add_argument("--parts", action="store_true", help="also drive POST /events with one part taken out (bench.urls.PARTS)")
    parser.add_argument("--rounds", type=int, default=3, help="slices each phase's duration is run in, taken in turn")
    args = parser.parse_args(argv)
    if not 0 < args.duration <= 600 or not 0 < args.connections <= 256 or not 1 <= args.rounds <= 30:
        raise SystemExit("--duration must be in (0, 600] s, --connections in (0, 256] and --rounds in [1, 30]")

    prepare_database(args.db, default="bench_ingest")
    from django.db import connection

    from bench.urls import PARTS
    from events.models import Event

    site, raw_key = bench_site_and_key("ingest.bench.example.com")
    run = f"bench-ingest-{uuid.uuid4().hex[:10]}"
    env = server_env(RATE_LIMIT_EVENTS=10**9, RATE_LIMIT_ANON=10**9)
    print(f"machine: {machine()}")
    print(f"server: {args.server}, {args.workers} workers"
          + (f" x {args.threads} threads" if args.server != "gunicorn" else "")
          + f"; PostgreSQL {connection.settings_dict['NAME']} ({Event.objects.filter(site=site).count():,} events of this site); "
          + f"Redis throttles; {args.connections} connections x {args.duration:.0f} s")  # fmt: skip
    print(f"PostgreSQL commit latency (one-row INSERT, median of 50): {ms(commit_latency())}; load average {load_average()}")
    connection.close()  # the harness holds no connection while measuring
    with running_server(server=args.server, workers=args.workers, threads=args.threads, env=env) as base:
        run_load(base, bare_requests(), connections=args.connections, duration=args.warmup / 2)
        run_load(base, event_requests(raw_key, f"{run}-warmup", visitors=args.visitors), connections=args.connections,
                 duration=args.warmup / 2)  # fmt: skip
        phases = {"bare": bare_requests(), "events": event_requests(raw_key, run, visitors=args.visitors)}
        if args.lean:
            phases["lean"] = event_requests(raw_key, f"{run}-lean", visitors=args.visitors, path="/api/v1/bench/lean-event")
        for part in PARTS if args.parts else ():
            phases[part] = event_requests(raw_key, f"{run}-{part}", visitors=args.visitors, path=f"/api/v1/bench/event-{part}")
        started = time.time()
        results, used = interleaved(base, phases, connections=args.connections, duration=args.duration, rounds=args.rounds)
        baseline_wrk = None if args.no_wrk else wrk_rate(base, args.connections, args.duration)
    baseline, ingest, lean = results["bare"], results["events"], results.get("lean")
    stored = Event.objects.filter(site=site, name=run).count()
    acknowledged = ingest.statuses.get(201, 0)
    ratio = ingest.rate / baseline.rate if baseline.rate else 0.0
    print(line("baseline: bare Django view", baseline, "req/s"))
    print(line("ingest: POST /api/v1/events", ingest, "events/s"))
    labels = {"bare": "bare view", "events": "POST /events"}
    if args.lean:
        print(line("no DRF (bench only): lean-event", lean, "events/s"))
        labels["lean"] = "no DRF"
    for part in PARTS if args.parts else ():
        print(line(f"{part} (bench only)", results[part], "events/s"))
        labels[part] = part
    for name, label in labels.items():
        result = results[name]
        share = cpu.per_request(dict.fromkeys(cpu.GROUPS, 0.0), used[name], result.completed)
        client = 1000 * result.client_cpu / result.completed if result.completed else 0.0
        total = sum(share.values()) + client
        print(f"CPU per request, {label + ':':<16} server {share['server']:.2f} ms, PostgreSQL {share['postgres']:.2f} ms, "
              f"Redis {share['redis']:.2f} ms, load client {client:.2f} ms; total {total:.2f} ms")  # fmt: skip
    if args.lean:
        lean_stored = Event.objects.filter(site=site, name=f"{run}-lean").count()
        print(f"without DRF: {percent(lean.rate / baseline.rate)} of the bare view (the endpoint: {percent(ratio)}); "
              f"stored {lean_stored:,} vs acknowledged {lean.statuses.get(201, 0):,}")  # fmt: skip
    if args.parts:
        stored_parts = [
            f"{part} stored {Event.objects.filter(site=site, name=f'{run}-{part}').count():,}"
            f" vs acknowledged {results[part].statuses.get(201, 0):,}"
            for part, view in PARTS.items()
            if view.stores_rows
        ]
        print("POST /events with one part changed, as a share of the bare view: "
              + ", ".join(f"{part} {percent(results[part].rate / baseline.rate)}" for part in PARTS)
              + f" (the endpoint: {percent(ratio)}); " + "; ".join(stored_parts))  # fmt: skip
    if baseline_wrk:
        print(f"cross-check: the bare view under wrk: {baseline_wrk:,.0f} req/s -> ratio {percent(ingest.rate / baseline_wrk)}")
    verdict = "equal" if stored == acknowledged else "MISMATCH"
    started_at = time.strftime("%H:%M:%S", time.gmtime(started))
    print(f"stored rows {stored:,} vs acknowledged {acknowledged:,}: {verdict} "
          f"(statuses {dict(sorted(ingest.statuses.items()))}, run {run}, started {started_at} UTC)")  # fmt: skip
    verdicts = [
        (f"ratio {percent(ratio)} (target ≥ {TARGET_RATIO:.0%})", ratio >= TARGET_RATIO),
        (f"p99 {ms(ingest.percentile(99))} (target ≤ {ms(TARGET_P99)})", ingest.percentile(99) <= TARGET_P99),
        (f"errors {ingest.errors} (target 0)", ingest.errors == 0),
        ("stored == acknowledged", stored == acknowledged),
    ]
    print("; ".join(f"{text} {'ok' if good else 'MISSED'}" for text, good in verdicts))
    print(f"after the run: commit latency {ms(commit_latency())}; load average {load_average()}")
    return 0 if all(good for _, good in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
