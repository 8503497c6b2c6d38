"""Shared pieces of the benchmark commands: database and key setup, printing."""

import math
import os
import subprocess
import time
import uuid
from pathlib import Path

from bench import env


def prepare_database(db: str | None, *, default: str, migrate: bool = True):
    """Point DATABASE_URL at ``db`` (created if missing), set up Django, migrate."""
    url = env.database_url(db or os.environ.get("DATABASE_URL") or default)
    os.environ["DATABASE_URL"] = url
    env.ensure_postgres_database(url)
    env.setup_django()
    if migrate:
        from django.core.management import call_command

        call_command("migrate", interactive=False, verbosity=0)
    analyze()
    return url


def analyze():
    """Fresh planner statistics: every run starts from the same planner state, whatever
    autovacuum did since the last one."""
    from django.db import connection

    from events.models import Event

    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute(f"ANALYZE {Event._meta.db_table}")


def bench_site_and_key(domain: str):
    """A site (created if missing) and a fresh full-scope key for it → (site, raw key)."""
    from accounts.keys import create_api_key
    from accounts.models import Site

    site, _ = Site.objects.get_or_create(domain=domain, defaults={"name": domain})
    _, raw = create_api_key(site=site, name="bench")
    return site, raw


def key_from_checkout(root: Path, domain: str) -> str:
    """A fresh full-scope key for ``domain``'s site, made by the checkout at ``root`` with its own
    code and virtualenv, so that its server can read it whatever the key format of this one."""
    script = (
        "from bench import env; env.setup_django()\n"
        "from bench.common import bench_site_and_key\n"
        f"print(bench_site_and_key({domain!r})[1])"
    )
    environment = {**os.environ, "PYTHONPATH": str(root), "DJANGO_SETTINGS_MODULE": "infinity.settings", "DEBUG": "false"}
    done = subprocess.run([str(root / ".venv" / "bin" / "python"), "-c", script], cwd=root, env=environment,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"could not make an API key in {root}: {done.stderr.strip()[-2000:]}")
    return done.stdout.strip().splitlines()[-1]


def server_env(**extra) -> dict:
    """Environment for the server under test: same database and SECRET_KEY, Redis throttles."""
    out = {
        "DATABASE_URL": os.environ["DATABASE_URL"],
        "SECRET_KEY": os.environ["SECRET_KEY"],
        "ALLOWED_HOSTS": os.environ.get("ALLOWED_HOSTS", "127.0.0.1,localhost"),
        "REDIS_URL": os.environ.get("REDIS_URL", env.DEFAULT_REDIS),
        "RATELIMIT_KEY_PREFIX": f"bench:{uuid.uuid4().hex[:8]}",
        "DEBUG": "false",
        "LOG_LEVEL": "ERROR",
    }
    out.update({k: str(v) for k, v in extra.items()})
    return out


def _to_places(value: float, places: int, direction) -> float:
    """``value`` to ``places`` decimals toward ``direction`` (``math.floor`` or ``math.ceil``),
    after rounding off the float product's last bits: 1.1 * 100 is 110.00000000000001, which
    ``ceil`` alone would take to 111."""
    scale = 10**places
    return direction(round(value * scale, 6)) / scale


# Every figure with a target prints on the side that keeps a miss a miss: latencies and growths
# (upper bounds) rounded up, ratios (lower bounds) cut. Each figure prints the same wherever it
# appears, so a phase line and its verdict never disagree.


def ms(seconds: float) -> str:
    """A latency in ms, rounded up to 0.1 ms: 50.04 ms is "50.1 ms", not "50.0 ms"."""
    return f"{_to_places(seconds * 1000, 1, math.ceil):.1f} ms"


def times(ratio: float) -> str:
    """A growth, rounded up to 0.01x: 1.5004 is "1.51x", not "1.50x"."""
    return f"{_to_places(ratio, 2, math.ceil):.2f}x"


def percent(ratio: float) -> str:
    """A ratio as a percentage with one decimal, cut (not rounded): 0.49992 is "49.9%", not "50%"."""
    return f"{_to_places(ratio * 100, 1, math.floor):.1f}%"


def machine() -> str:
    import platform

    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    return f"{os.cpu_count()} cores {cpu}, Python {platform.python_version()}, {platform.system()} {platform.release()}"


def commit_latency(samples: int = 50) -> float:
    """Median seconds for an autocommitted one-row INSERT: the floor under every acknowledged
    event (a WAL flush). On a shared machine it moves with other writers' load."""
    import statistics

    from django.db import connection

    if connection.vendor != "postgresql":
        return 0.0
    durations = []
    with connection.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS bench_commit_probe_durable (x int)")
        for _ in range(samples):
            started = time.perf_counter()
            cur.execute("INSERT INTO bench_commit_probe_durable VALUES (1)")
            durations.append(time.perf_counter() - started)
        cur.execute("DROP TABLE bench_commit_probe_durable")
    return statistics.median(durations)


def load_average() -> str:
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except OSError:
        return "?"
