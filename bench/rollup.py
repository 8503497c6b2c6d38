"""Rollup build throughput beside a plain GROUPING SETS statement, in one run on one database.

    python -m bench rollup [--db scale_10m] [--jobs 2] [--rounds 1]

The database must have been filled by ``python -m bench generate``. Each round times, in
turn (the order swapped every other round, so a slow stretch of a shared machine does not
fall on one side):

- ours: ``manage.py rebuild_rollups --jobs N`` (every site, every bucket, stored);
- plain: one ``CREATE TEMP TABLE … AS SELECT … GROUP BY GROUPING SETS`` over every event
  computing nearly the same aggregates per site and UTC day — page views, events, purchases,
  revenue and ``count(DISTINCT visitor)`` for every event dimension, the metadata keys and the
  rolled pairs — but no visits, no mergeable visitor sets and no time zones.

It prints both as events/s (medians over the rounds), their ratio and the load average.
Targets (issue 24): ours ≥ plain; 10M events rebuilt in ≤ 5 minutes.
"""

import argparse
import os
import statistics
import sys
import time

from bench.common import load_average, machine

TARGET_SECONDS_PER_10M = 300


def plain_statement(metadata_keys: list[str]) -> str:
    from analytics.query import DIMENSIONS
    from analytics.rollups import PAIRS

    columns = {d.name: f"e.{d.column}" for d in DIMENSIONS.values() if d.column}
    columns.update({f"metadata.{k}": f"coalesce(e.metadata ->> '{k}', '')" for k in metadata_keys})
    sets = [()] + [(name,) for name in columns]
    for a, b in PAIRS:
        for second in [f"metadata.{k}" for k in metadata_keys] if b == "metadata.*" else [b]:
            sets.append((a, second))
    select = ", ".join(f'{expr} AS "{name}"' for name, expr in columns.items())
    grouping = ", ".join("(" + ", ".join(["site_id", "day", *(f'"{n}"' for n in s)]) + ")" for s in sets)
    return f"""
        CREATE TEMP TABLE bench_plain_rollups AS
        SELECT site_id, day, {", ".join(f'"{n}"' for n in columns)},
               count(*) FILTER (WHERE kind = 1) AS page_views, count(*) FILTER (WHERE kind IN (2, 3)) AS events,
               count(*) FILTER (WHERE kind = 3) AS purchases,
               sum(price * coalesce(quantity, 1)) FILTER (WHERE kind = 3) AS revenue,
               count(DISTINCT visitor) AS visitors
        FROM (SELECT e.site_id, (e.occurred_at AT TIME ZONE 'UTC')::date AS day, e.kind, e.visitor, e.price, e.quantity,
                     {select}
              FROM events_event AS e) AS e
        GROUP BY GROUPING SETS ({grouping})"""


def time_plain(sql: str) -> tuple[float, int]:
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT set_config('jit', 'off', true), set_config('work_mem', '256MB', true)")  # as our builds
        started = time.perf_counter()
        cursor.execute(sql)
        elapsed = time.perf_counter() - started
        cursor.execute("SELECT count(*) FROM bench_plain_rollups")
        rows = cursor.fetchone()[0]
        cursor.execute("DROP TABLE bench_plain_rollups")
    return elapsed, rows


def time_ours(jobs: int) -> tuple[float, int]:
    from analytics import rollups
    from infinity.progress import Progress

    started = time.perf_counter()
    with Progress("rebuild", unit="bucket") as progress:
        built = rollups.rebuild(jobs=jobs, progress=progress)
    return time.perf_counter() - started, built


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench rollup", description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", help="PostgreSQL database name on 127.0.0.1 (or a URL); default: DATABASE_URL")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes for our rebuild (default: CPUs)")
    parser.add_argument("--rounds", type=int, default=1, help="times each side is measured (medians are printed)")
    args = parser.parse_args(argv)
    if args.jobs < 1 or args.rounds < 1:
        raise SystemExit("--jobs and --rounds must be at least 1")

    from bench.common import prepare_database

    prepare_database(args.db, default="bench_1m")
    from django.db import connection

    from analytics import storage
    from events.models import Event, Kind

    if connection.vendor != "postgresql":
        raise SystemExit("bench rollup compares with a PostgreSQL GROUPING SETS statement: pass a PostgreSQL --db")
    events = Event.objects.count()
    if not events:
        raise SystemExit("no events: fill the database with python -m bench generate first")
    keys = storage.metadata_keys(Event.objects.filter(kind__in=[Kind.CUSTOM, Kind.PURCHASE]))[:20]
    sql = plain_statement(keys)
    print(f"machine: {machine()}")
    print(f"{connection.settings_dict['NAME']}: {events:,} events; ours with --jobs {args.jobs}, {args.rounds} round(s)")
    ours, plain = [], []
    for i in range(args.rounds):
        for side in ("plain", "ours") if i % 2 == 0 else ("ours", "plain"):
            before = load_average()
            if side == "plain":
                seconds, rows = time_plain(sql)
                plain.append(seconds)
                what = f"{rows:,} grouped rows"
            else:
                seconds, built = time_ours(args.jobs)
                ours.append(seconds)
                what = f"{built:,} buckets"
            print(f"  round {i + 1} {side:<5} {seconds:8.1f} s  {events / seconds:>10,.0f} events/s  ({what}; "
                  f"load average {before} before, {load_average()} after)", flush=True)  # fmt: skip
    ours_s, plain_s = statistics.median(ours), statistics.median(plain)
    ratio = plain_s / ours_s
    per_10m = ours_s * 10_000_000 / events
    print(f"\nours  {events / ours_s:>10,.0f} events/s (median {ours_s:.1f} s)")
    print(f"plain {events / plain_s:>10,.0f} events/s (median {plain_s:.1f} s)")
    print(f"ours / plain = {ratio:.2f}  target ≥ 1.00  {'ok' if ratio >= 1 else 'MISSED'}")
    print(f"10M events at this rate: {per_10m / 60:.1f} min  target ≤ {TARGET_SECONDS_PER_10M / 60:.0f} min  "
          f"{'ok' if per_10m <= TARGET_SECONDS_PER_10M else 'MISSED'}")  # fmt: skip
    return 0 if ratio >= 1 and per_10m <= TARGET_SECONDS_PER_10M else 1


if __name__ == "__main__":
    sys.exit(main())
