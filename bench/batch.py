"""Batch ingestion benchmark: ``POST /api/v1/events/batch`` beside a raw COPY of the same rows.

    python -m bench batch [--db bench_ingest] [--duration 20] [--connections 4] [--size 500]
                          [--server gunicorn:gthread] [--workers 2] [--threads 8] [--rounds 3]
                          [--baseline DIR] [--keys]

Builds batches of ``--size`` items (90 % custom events with metadata, 10 % purchases, 5,000
visitors, timestamps within the last hour), posts them for ``--duration`` seconds from
``--connections`` clients, and counts accepted events. After each of ``--rounds`` slices
(default 3) it COPYs exactly as many rows as the slice accepted — the rows the endpoint stored
for those items (hashed visitor, session, metadata…) — into the same table (same indexes and
constraints), one COPY per slice, timing them; taking the two in turns keeps both sides of
the ratio on the same stretch of the machine. Prints both
rates and their ratio (target ≥ 45 %), and the CPU per 1,000 events on each side: the
server's, PostgreSQL's and Redis's processes (``bench/cpu.py``) and the load client during
the endpoint's slices; this process (encoding and sending, the rows built before) and
PostgreSQL's during the COPYs.

With ``--keys`` a second side takes its slices in turn with the first on the same server: the
same batches with an ``idempotency_key`` on every item, unique across the run (never a replay),
each slice followed by its own COPY; both ratios are printed, and the keyed side's events/s
as a share of the unkeyed one's.

With ``--baseline DIR`` a server started from the checkout in DIR (with its own ``.venv``, the
same database and arguments) takes its slices in turn with this one's, each followed by its
COPY; both are reported, and this checkout's events/s as a share of the baseline's (target
≥ 90 %).
"""

import argparse
import itertools
import json
import random
import sys
import time
import uuid
from contextlib import nullcontext
from datetime import UTC, datetime, timedelta

from bench import cpu
from bench.client import LoadResult, build_request, run_load
from bench.common import bench_site_and_key, key_from_checkout, machine, ms, percent, prepare_database, server_env
from bench.servers import checkout, running_server

TARGET_RATIO = 0.45
TARGET_VS_BASELINE = 0.90
SITE = "batch.bench.example.com"
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


KEY_PLACEHOLDER = b"#" * 12


def numbered(requests: list):
    """Requests in turn, each placeholder of an idempotency key replaced by the request's number
    in the whole run (slices restart ``seq``): no key is ever sent twice."""
    sent = itertools.count()

    def make(seq):
        n = next(sent)
        return requests[n % len(requests)].replace(KEY_PLACEHOLDER, b"%012d" % n)

    return make


class Side:
    """One server's share of the run: its endpoint slices and the COPYs of as many rows."""

    def __init__(self, label: str, base: str, requests: list):
        self.label, self.base, self.requests = label, base, requests
        self.make = numbered(requests)
        self.result, self.stored, self.copy_seconds, self.copy_client = LoadResult(), 0, 0.0, 0.0
        self.endpoint_cpu, self.copy_cpu = dict.fromkeys(cpu.GROUPS, 0.0), dict.fromkeys(cpu.GROUPS, 0.0)

    def slice(self, site, items, *, connections: int, duration: float) -> None:
        """A slice of the endpoint, then a COPY of as many rows as it accepted."""
        from django.db import connection

        from events.models import Event

        before = Event.objects.filter(site=site).count()
        cpu.close_and_reap(connection)  # the last COPY's backend, out of this slice's count
        snap = cpu.snapshot(self.base)
        part = run_load(self.base, self.make, connections=connections, duration=duration, keep_bodies=True)
        cpu.add_used(self.endpoint_cpu, snap, cpu.snapshot(self.base))
        self.stored += Event.objects.filter(site=site).count() - before
        snap = cpu.snapshot(self.base)
        seconds, own = copy_rows(site, items, accepted_items(part))
        cpu.add_used(self.copy_cpu, snap, cpu.snapshot(self.base))
        self.copy_seconds += seconds
        self.copy_client += own
        self.result.add(part)

    @property
    def accepted(self) -> int:
        return accepted_items(self.result)

    @property
    def rate(self) -> float:
        return self.accepted / self.result.duration if self.result.duration else 0.0

    @property
    def ratio(self) -> float:
        """The endpoint's events/s as a share of COPY's rows/s."""
        return self.rate * self.copy_seconds / self.accepted if self.accepted else 0.0

    def report(self, rounds: int) -> list[tuple[str, bool]]:
        result, accepted = self.result, self.accepted
        copy_rate = accepted / self.copy_seconds if self.copy_seconds else 0.0
        print(f"{self.label}")
        print(f"  batch endpoint: {self.rate:>10,.0f} events/s  ({result.completed:,} batches, {accepted:,} events in "
              f"{result.duration:.1f} s; p50 {ms(result.percentile(50))}, p99 {ms(result.percentile(99))} per batch; "
              f"errors {result.errors}; stored {self.stored:,})")  # fmt: skip
        print(f"  raw COPY:       {copy_rate:>10,.0f} rows/s    ({accepted:,} rows in {self.copy_seconds:.2f} s, "
              f"{rounds} COPYs of one transaction each, after each slice)")  # fmt: skip
        if accepted:
            per = {g: 1e6 * v / accepted for g, v in self.endpoint_cpu.items()}
            print(f"  CPU per 1,000 events, endpoint: server {per['server']:.1f} ms, PostgreSQL {per['postgres']:.1f} ms, "
                  f"Redis {per['redis']:.1f} ms, load client {1e6 * result.client_cpu / accepted:.1f} ms")  # fmt: skip
            per = {g: 1e6 * v / accepted for g, v in self.copy_cpu.items()}
            print(f"  CPU per 1,000 rows, COPY:       client {1e6 * self.copy_client / accepted:.1f} ms (the rows built "
                  f"before), PostgreSQL {per['postgres']:.1f} ms")  # fmt: skip
        return [
            (f"{self.label}: ratio {percent(self.ratio)} (target ≥ {TARGET_RATIO:.0%})", self.ratio >= TARGET_RATIO),
            (f"errors {result.errors}", result.errors == 0),
            (f"stored == accepted: {self.stored == accepted}", self.stored == accepted),
        ]


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
    parser.add_argument("--baseline", metavar="DIR", help="also drive a server of the checkout in DIR, in turns with this one")
    parser.add_argument("--keys", action="store_true", help="an idempotency_key on every item, unique across the run")
    args = parser.parse_args(argv)
    if not 0 < args.duration <= 600 or not 0 < args.connections <= 64 or not 0 < args.size <= 500 or not 1 <= args.rounds <= 30:
        raise SystemExit("--duration in (0, 600], --connections in (0, 64], --size in (0, 500], --rounds in [1, 30]")
    baseline_root = checkout(args.baseline) if args.baseline else None

    prepare_database(args.db, default="bench_ingest")
    from django.db import connection

    site, raw_key = bench_site_and_key(SITE)
    baseline_key = key_from_checkout(baseline_root, SITE) if baseline_root else None
    run = f"bench-batch-{uuid.uuid4().hex[:10]}"
    items = make_items(random.Random(4), args.size * 40, run, datetime.now(UTC))
    bodies = [json.dumps({"events": items[i : i + args.size]}).encode() for i in range(0, len(items), args.size)]
    keyed = [{**item, "idempotency_key": f"{run}-{i}-{KEY_PLACEHOLDER.decode()}"} for i, item in enumerate(items)]
    keyed_bodies = [json.dumps({"events": keyed[i : i + args.size]}).encode() for i in range(0, len(keyed), args.size)]

    def requests(key, bodies=bodies):
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        return [build_request("POST", "/api/v1/events/batch", "127.0.0.1", headers, body) for body in bodies]

    print(f"machine: {machine()}")
    print(f"server: {args.server}, {args.workers} workers; PostgreSQL {connection.settings_dict['NAME']}; "
          f"{args.connections} connections x {args.duration:.0f} s; {args.size} items per batch "
          f"(~{len(bodies[0]) // 1024} KB){'; beside them with an idempotency_key per item' if args.keys else ''}")  # fmt: skip
    if baseline_root:
        print(f"baseline: {baseline_root} (its own code and .venv; same database, server and arguments), in turns")
    connection.close()
    launch = {"server": args.server, "workers": args.workers, "threads": args.threads, "env": server_env(RATE_LIMIT_EVENTS=10**9)}
    baseline_server = running_server(**launch, root=baseline_root) if baseline_root else nullcontext()
    with running_server(**launch) as base, baseline_server as old:
        sides = [Side("this checkout", base, requests(raw_key))]
        if args.keys:
            sides.append(Side("this checkout, idempotency_key on every item", base, requests(raw_key, keyed_bodies)))
        if old:
            sides.append(Side(f"baseline {baseline_root}", old, requests(baseline_key)))
        for side in sides:  # warm-up
            run_load(side.base, side.make, connections=args.connections, duration=2)
        # In turns, every other round in reverse order: each slice followed by a COPY of as many
        # rows, so that every side of every ratio shares the same stretch of a drifting machine.
        for turn in range(args.rounds):
            for side in sides if turn % 2 == 0 else reversed(sides):
                side.slice(site, items, connections=args.connections, duration=args.duration / args.rounds)
    verdicts = [verdict for side in sides for verdict in side.report(args.rounds)]
    if args.keys:
        plain, with_keys = sides[0], sides[1]
        share = with_keys.rate / plain.rate if plain.rate else 0.0
        print(f"with idempotency keys / without: {percent(share)} of the events/s ({with_keys.rate:,.0f} vs {plain.rate:,.0f})")
    if old:
        new, before = sides[0], sides[-1]
        ratio = new.rate / before.rate if before.rate else 0.0
        print(f"this checkout / baseline: {percent(ratio)} of the events/s ({new.rate:,.0f} vs {before.rate:,.0f}); "
              f"p99 per batch {ms(new.result.percentile(99))} vs {ms(before.result.percentile(99))}")  # fmt: skip
        verdicts.append((f"vs baseline {percent(ratio)} (target ≥ {TARGET_VS_BASELINE:.0%})", ratio >= TARGET_VS_BASELINE))
    print("; ".join(f"{text} {'ok' if good else 'MISSED'}" for text, good in verdicts))
    return 0 if all(good for _, good in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
