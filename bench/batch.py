"""Batch ingestion benchmark: ``POST /api/v1/events/batch`` beside a raw COPY of the same rows.

    python -m bench batch [--db bench_ingest] [--duration 20] [--connections 4] [--size 500]
                          [--server gunicorn:gthread] [--workers 2] [--threads 8] [--rounds 3]

Builds batches of ``--size`` items (90 % custom events with metadata, 10 % purchases, 5,000
visitors, timestamps within the last hour), posts them for ``--duration`` seconds from
``--connections`` clients, and counts accepted events. After each of ``--rounds`` slices
(default 3) it COPYs exactly as many rows as the slice accepted — the rows the endpoint stored
for those items (hashed visitor, session, metadata…) — into the same table (same indexes and
constraints), one COPY per slice, timing them; taking the two in turns keeps both sides of
the ratio on the same stretch of the machine. Prints both
rates and their ratio (target ≥ 50 %), and the CPU per 1,000 events on each side: the
server's, PostgreSQL's and Redis's processes (``bench/cpu.py``) and the load client during
the endpoint's slices; this process (encoding and sending, the rows built before) and
PostgreSQL's during the COPYs.
"""

import argparse
import json
import random
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

from bench import cpu
from bench.client import LoadResult, build_request, run_load
from bench.common import bench_site_and_key, machine, ms, percent, prepare_database, server_env
from bench.servers import running_server

TARGET_RATIO = 0.50
PRODUCTS = [("Premium Plan", 2999), ("Business Plan", 9900), ("Starter Plan", 900)]
NAMES = ["signup", "download", "cta_click", "newsletter_subscribe", "invite_sent"]


def make_items(rng: random.Random, count: int, run: str, now: datetime) -> list[dict]:
    items = []
    for i in range(count):
        when = (now - timedelta(seconds=rng.randrange(3600))).strftime("%Y-%m-%dT%H:%M:%SZ")
        visitor = f"visitor-{rng.randrange(5000)}"
        if rng.random() < 0.1:
            product, price = rng.choice(PRODUCTS)
            items.append({"type": "purchase", "price": price, "currency": rng.choice(["USD", "EUR", "GBP"]),
                          "product_name": product, "quantity": rng.choice([1, 1, 1, 2]),
                          "metadata": {"run": run, "billing": "monthly"}, "visitor_id": visitor, "timestamp": when})  # fmt: skip
        else:
            items.append({"event_name": rng.choice(NAMES), "metadata": {"run": run, "plan": rng.choice(["free", "pro"]), "i": i},
                          "visitor_id": visitor, "timestamp": when})  # fmt: skip
    return items


def copy_rows(site, items: list[dict], total: int) -> tuple[float, float]:
    """COPY ``total`` rows (cycling through ``items``) as the endpoint would store them; the
    seconds it took and this process's CPU seconds in it."""
    from django.db import connection, transaction

    from events.ingest import PURCHASE_EVENT_NAME
    from events.models import Event, Kind
    from events.visitors import hash_caller_visitor

    columns = ["site_id", "kind", "name", "occurred_at", "received_at", "visitor", "session", "metadata",
               "price", "currency", "quantity", "product_name", "hostname", "path", "referrer", "source", "utm_source",
               "utm_medium", "utm_campaign", "utm_term", "utm_content", "country", "browser", "os", "device"]  # fmt: skip
    now = datetime.now(UTC)
    rows = []
    for n in range(total):
        item = items[n % len(items)]
        occurred = datetime.fromisoformat(item["timestamp"].replace("Z", "+00:00"))
        visitor = hash_caller_visitor(site_id=site.pk, visitor_id=item["visitor_id"])
        if item.get("type") == "purchase":
            kind, name = Kind.PURCHASE, PURCHASE_EVENT_NAME
            purchase = (item["price"], item["currency"], item["quantity"], item["product_name"])
        else:
            kind, name, purchase = Kind.CUSTOM, item["event_name"], (None, "", None, "")
        rows.append((site.pk, kind, name, occurred, now, visitor, random.getrandbits(62), json.dumps(item["metadata"]),
                     *purchase, *([""] * 13)))  # fmt: skip
    started, own = time.perf_counter(), time.process_time()  # the rows are ready: time the COPY alone
    with transaction.atomic(), connection.cursor() as cur:
        with cur.cursor.copy(f"COPY {Event._meta.db_table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    return time.perf_counter() - started, time.process_time() - own


def accepted_items(result) -> int:
    """Items the endpoint stored, summed over the 200 answers in ``result``'s bodies."""
    return sum(json.loads(body)["accepted"] for body in result.bodies if body.startswith(b'{"success"'))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench batch", description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", help="PostgreSQL database (name or URL); default DATABASE_URL or bench_ingest")
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--size", type=int, default=500, help="items per batch (≤ 500)")
    parser.add_argument("--server", default="gunicorn:gthread", help="default: what scripts/serve runs")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3, help="slices of the endpoint, each followed by its COPY")
    args = parser.parse_args(argv)
    if not 0 < args.duration <= 600 or not 0 < args.connections <= 64 or not 0 < args.size <= 500 or not 1 <= args.rounds <= 30:
        raise SystemExit("--duration in (0, 600], --connections in (0, 64], --size in (0, 500], --rounds in [1, 30]")

    prepare_database(args.db, default="bench_ingest")
    from django.db import connection

    from events.models import Event

    site, raw_key = bench_site_and_key("batch.bench.example.com")
    run = f"bench-batch-{uuid.uuid4().hex[:10]}"
    rng = random.Random(4)
    now = datetime.now(UTC)
    items = make_items(rng, args.size * 40, run, now)
    bodies = [json.dumps({"events": items[i : i + args.size]}).encode() for i in range(0, len(items), args.size)]
    headers = {"Authorization": f"Bearer {raw_key}", "Content-Type": "application/json"}
    requests = [build_request("POST", "/api/v1/events/batch", "127.0.0.1", headers, body) for body in bodies]
    print(f"machine: {machine()}")
    print(f"server: {args.server}, {args.workers} workers; PostgreSQL {connection.settings_dict['NAME']}; "
          f"{args.connections} connections x {args.duration:.0f} s; {args.size} items per batch "
          f"(~{len(bodies[0]) // 1024} KB)")  # fmt: skip
    connection.close()
    env = server_env(RATE_LIMIT_EVENTS=10**9)
    result, stored, copy_seconds = LoadResult(), 0, 0.0
    endpoint_cpu, copy_cpu, copy_client = dict.fromkeys(cpu.GROUPS, 0.0), dict.fromkeys(cpu.GROUPS, 0.0), 0.0
    with running_server(server=args.server, workers=args.workers, threads=args.threads, env=env) as base:
        run_load(base, lambda seq: requests[seq % len(requests)], connections=args.connections, duration=2)  # warm-up
        # In turns: a slice of the endpoint, then a COPY of as many rows, so both sides of the
        # ratio share the same stretch of a machine whose speed drifts (the server idles meanwhile).
        for _ in range(args.rounds):
            before = Event.objects.filter(site=site).count()
            cpu.close_and_reap(connection)  # the last slice's COPY backend, out of this slice's count
            snap = cpu.snapshot(base)
            part = run_load(base, lambda seq: requests[seq % len(requests)], connections=args.connections,
                            duration=args.duration / args.rounds, keep_bodies=True)  # fmt: skip
            cpu.add_used(endpoint_cpu, snap, cpu.snapshot(base))
            stored += Event.objects.filter(site=site).count() - before
            snap = cpu.snapshot(base)
            seconds, own = copy_rows(site, items, accepted_items(part))
            cpu.add_used(copy_cpu, snap, cpu.snapshot(base))
            copy_seconds += seconds
            copy_client += own
            result.add(part)
    accepted = accepted_items(result)
    batch_rate = accepted / result.duration
    copy_rate = accepted / copy_seconds
    print(f"batch endpoint: {batch_rate:>10,.0f} events/s  ({result.completed:,} batches, {accepted:,} events in "
          f"{result.duration:.1f} s; p50 {ms(result.percentile(50))}, p99 {ms(result.percentile(99))} per batch; "
          f"errors {result.errors}; stored {stored:,})")  # fmt: skip
    print(f"raw COPY:       {copy_rate:>10,.0f} rows/s    ({accepted:,} rows in {copy_seconds:.2f} s, "
          f"{args.rounds} COPYs of one transaction each, after each slice)")  # fmt: skip
    if accepted:
        per = {g: 1e6 * v / accepted for g, v in endpoint_cpu.items()}
        print(f"CPU per 1,000 events, endpoint: server {per['server']:.1f} ms, PostgreSQL {per['postgres']:.1f} ms, "
              f"Redis {per['redis']:.1f} ms, load client {1e6 * result.client_cpu / accepted:.1f} ms")  # fmt: skip
        per = {g: 1e6 * v / accepted for g, v in copy_cpu.items()}
        print(f"CPU per 1,000 rows, COPY:       client {1e6 * copy_client / accepted:.1f} ms (the rows built before), "
              f"PostgreSQL {per['postgres']:.1f} ms")  # fmt: skip
    ratio = batch_rate / copy_rate if copy_rate else 0.0
    good = ratio >= TARGET_RATIO and result.errors == 0 and stored == accepted
    print(f"ratio {percent(ratio)} (target ≥ {TARGET_RATIO:.0%}); errors {result.errors}; "
          f"stored == accepted: {stored == accepted} -> {'ok' if good else 'MISSED'}")  # fmt: skip
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
