"""Export and import benchmark: ``GET /api/v1/export`` of a whole site, the worker's memory
meanwhile, then ``manage.py import_events`` of the file into an empty database.

    python -m bench export [--db bench_10m] [--site bench.example.com] [--format ndjson|csv]
                           [--import-into DB] [--keep FILE]

Starts the server (one gunicorn worker, the production settings' way) on ``--db``, gives the
site a ``data:manage`` key, downloads its every event through one request while sampling the
worker's resident memory (``VmRSS``, every 0.2 s), and prints events/s and the RSS before the
request, its peak and the growth. Target: growth ≤ 50 MB whatever the number of events.

With ``--import-into DB`` (a PostgreSQL database, created empty; dropped afterwards unless it
held tables) the file is imported into a site of the same domain there with
``manage.py import_events``, twice: records/s of the import and of the re-run that finds every
event present.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import date
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from bench.common import machine, prepare_database, server_env
from bench.env import ROOT
from bench.servers import running_server

TARGET_GROWTH_MB = 50


def worker_pids(base: str) -> list[int]:
    """The gunicorn workers serving ``base``: processes with its bind address whose parent has it too."""
    bind = f"127.0.0.1:{urlsplit(base).port}".encode()
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if bind not in f.read():
                    continue
            with open(f"/proc/{pid}/stat") as f:
                found[int(pid)] = int(f.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
    return [pid for pid, parent in found.items() if parent in found]


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def download(base: str, key: str, params: dict, out: Path) -> tuple[int, float]:
    """Stream the export into ``out``; (events, seconds)."""
    request = urllib.request.Request(f"{base}/api/v1/export?{urlencode(params)}", headers={"Authorization": f"Bearer {key}"})
    started, lines = time.perf_counter(), 0
    with urllib.request.urlopen(request, timeout=3600) as response, open(out, "wb") as f:
        if response.status != 200:
            raise SystemExit(f"export answered {response.status}: {response.read()[:500]!r}")
        while block := response.read(1 << 20):
            lines += block.count(b"\n")
            f.write(block)
    return lines - (params["format"] == "csv"), time.perf_counter() - started


def run_manage(args: list[str], database_url: str) -> str:
    env = {**os.environ, "DATABASE_URL": database_url, "DJANGO_SETTINGS_MODULE": "infinity.settings", "DEBUG": "false",
           "PYTHONPATH": str(ROOT)}  # fmt: skip
    done = subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"manage.py {' '.join(args)} failed: {done.stderr[-2000:]}")
    return done.stdout.strip()


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", help="PostgreSQL database (name or URL); default DATABASE_URL or bench_10m")
    parser.add_argument("--site", default="bench.example.com")
    parser.add_argument("--format", choices=["ndjson", "csv"], default="ndjson")
    parser.add_argument("--import-into", metavar="DB", help="also import the file into this new PostgreSQL database")
    parser.add_argument("--keep", metavar="FILE", help="keep the exported file here")
    args = parser.parse_args(argv)

    url = prepare_database(args.db, default="bench_10m")
    from django.db import connection

    from accounts.keys import create_api_key
    from accounts.models import ALL_SCOPES, Site
    from events.models import Event

    site = Site.objects.filter(domain=args.site).first()
    if site is None:
        raise SystemExit(f"no site {args.site!r} in {url}")
    _, key = create_api_key(site=site, name="bench export", scopes=list(ALL_SCOPES))
    total = Event.objects.filter(site=site).count()
    print(f"machine: {machine()}")
    print(f"PostgreSQL {connection.settings_dict['NAME']}: {total:,} events of {args.site}; one gthread worker")
    connection.close()
    params = {"start_date": "1970-01-01", "end_date": date.today().replace(year=date.today().year + 1).isoformat(),
              "format": args.format}  # fmt: skip
    out = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-export-")) / f"events.{args.format}"
    env = server_env(RATE_LIMIT_ANALYTICS=10**9)
    with running_server(server="gunicorn:gthread", workers=1, threads=4, env=env, settings_module="infinity.settings",
                        ready_path="/api/v1/health?live") as base:  # fmt: skip
        (pid,) = worker_pids(base)
        before, samples, done = rss_kb(pid), [], threading.Event()

        def sample():
            while not done.is_set():
                samples.append(rss_kb(pid))
                done.wait(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        events, seconds = download(base, key, params, out)
        done.set()
        sampler.join()
    peak = max(samples + [before])
    growth = (peak - before) / 1024
    print(f"export: {events:,} events, {out.stat().st_size / 1e6:,.0f} MB of {args.format} in {seconds:.1f} s = "
          f"{events / seconds:,.0f} events/s")  # fmt: skip
    print(f"worker RSS: {before / 1024:.0f} MB before, peak {peak / 1024:.0f} MB during ({len(samples)} samples): "
          f"growth {growth:.1f} MB (target ≤ {TARGET_GROWTH_MB} MB)")  # fmt: skip
    verdicts = [("all events exported", events == total), (f"RSS growth {growth:.1f} MB", growth <= TARGET_GROWTH_MB)]
    if args.import_into:
        target = prepare_database(args.import_into, default=args.import_into, migrate=False)
        run_manage(["migrate", "--no-input"], target)
        run_manage(["shell", "-c", f"from accounts.models import Site; Site.objects.get_or_create(domain={args.site!r})"],
                   target)  # fmt: skip
        for attempt in ("import", "re-run"):
            started = time.perf_counter()
            said = run_manage(["import_events", "--site", args.site, str(out)], target)
            took = time.perf_counter() - started
            print(f"{attempt}: {said.splitlines()[-1]} (command {took:.1f} s in all: {events / took:,.0f} events/s)")
    if not args.keep:
        out.unlink()
    print("; ".join(f"{text} {'ok' if good else 'MISSED'}" for text, good in verdicts))
    print(json.dumps({"events": events, "seconds": round(seconds, 1), "rss_growth_mb": round(growth, 1)}))
    return 0 if all(good for _, good in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
