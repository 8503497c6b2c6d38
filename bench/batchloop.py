"""In-process batch ingestion: CPU of ``POST /api/v1/events/batch`` without a server or a network.

    python -m bench batchloop [--db bench_batchloop] [--batches 40] [--size 500] [--callgrind]

Posts ``--batches`` batches of ``bench.batch`` items through Django's test client (after two
warm-up batches) and prints this process's CPU per batch and that of its PostgreSQL backend.
Both exclude other work on a shared machine, which the server benchmark's CPU figures include.

With ``--callgrind`` the batches are posted inside one ``functools.reduce`` call, so that
valgrind counts the instructions of exactly those requests, independent of the machine's load::

    valgrind --tool=callgrind --collect-atstart=no --toggle-collect=functools_reduce \\
        python -m bench batchloop --batches 5 --callgrind

Another checkout is measured with its own code and virtualenv by running this file from its
root: ``cd DIR && DIR/.venv/bin/python /path/to/bench/batchloop.py …``.
"""

import argparse
import functools
import json
import os
import random
import sys
import time
from datetime import UTC, datetime


def backend_cpu(connection) -> float:
    """CPU seconds of this connection's PostgreSQL backend (Linux /proc; 0 elsewhere)."""
    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        (pid,) = cur.fetchone()
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench batchloop", description=__doc__.split("\n")[0])
    parser.add_argument("--db", default=None, help="PostgreSQL database (default: DATABASE_URL or bench_batchloop)")
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--size", type=int, default=500)
    parser.add_argument("--callgrind", action="store_true", help="post the batches inside functools.reduce")
    args = parser.parse_args(argv)
    os.environ.setdefault("SECRET_KEY", "bench-batchloop-" + "x" * 40)
    os.environ.setdefault("RATELIMIT_KEY_PREFIX", f"bench:batchloop:{os.getpid()}")
    os.environ.setdefault("DEBUG", "false")
    os.environ.setdefault("LOG_LEVEL", "ERROR")

    from bench.batch import make_items
    from bench.common import bench_site_and_key, prepare_database

    prepare_database(args.db, default="bench_batchloop")
    from django.db import connection
    from django.test import Client

    _, raw = bench_site_and_key("batchloop.bench.example.com")
    rng = random.Random(1)
    bodies = [json.dumps({"events": make_items(rng, args.size, "loop", datetime.now(UTC))}) for _ in range(args.batches + 2)]
    client = Client()

    def post(_, body):
        response = client.post("/api/v1/events/batch", data=body, content_type="application/json",
                               HTTP_AUTHORIZATION=f"Bearer {raw}", HTTP_HOST="127.0.0.1")  # fmt: skip
        answer = json.loads(response.content)
        if response.status_code != 200 or answer["accepted"] != args.size:
            raise SystemExit(f"batch not fully accepted: {response.status_code} {response.content[:300]!r}")

    for body in bodies[:2]:
        post(None, body)
    database, started = backend_cpu(connection), time.process_time()
    if args.callgrind:
        functools.reduce(post, bodies[2:], None)
    else:
        for body in bodies[2:]:
            post(None, body)
    python, database = time.process_time() - started, backend_cpu(connection) - database
    print(f"{args.batches} batches of {args.size}: {python / args.batches * 1000:.1f} ms CPU per batch in this process, "
          f"{database / args.batches * 1000:.1f} ms in its PostgreSQL backend")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.getcwd())
    sys.exit(main())
