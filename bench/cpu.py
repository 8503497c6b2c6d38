"""CPU seconds spent by the processes behind a benchmark phase, read from /proc (Linux).

``snapshot(base)`` sums user + system time of the app server started at ``base`` (its
master and workers carry ``127.0.0.1:<port>`` in their command line), of PostgreSQL (every
``postgres`` process) and of Redis, each process's own and that of its children that ended
(``cutime``/``cstime``): a backend or autovacuum worker that exits between two snapshots moves
its CPU into the postmaster's, instead of out of the sum. The difference of two
snapshots divided by the requests served is the CPU each request cost on each side. Elsewhere
than Linux it returns zeros.
"""

import os
import time
from urllib.parse import urlsplit

GROUPS = ("server", "postgres", "redis")


def group_of(cmdline: bytes, bind: bytes) -> str | None:
    """Which group a process belongs to, by its NUL-separated command line. PostgreSQL's
    postmaster runs as ``/usr/lib/postgresql/15/bin/postgres -D …`` (it reaps the backends,
    so their ended CPU is in its cutime), its children retitle themselves ``postgres: …``."""
    if bind in cmdline:
        return "server"
    program = os.path.basename(cmdline.split(b"\0", 1)[0])
    if program == b"postgres" or cmdline.startswith(b"postgres:"):
        return "postgres"
    if program.startswith(b"redis-server"):
        return "redis"
    return None


def snapshot(base: str) -> dict[str, float]:
    bind = f"127.0.0.1:{urlsplit(base).port}".encode()
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    totals = dict.fromkeys(GROUPS, 0.0)
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return totals
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        group = group_of(cmdline, bind)
        if group is None:
            continue
        totals[group] += sum(int(v) for v in fields[11:15]) / ticks  # utime, stime, cutime, cstime
    return totals


def close_and_reap(connection) -> None:
    """Close Django's ``connection`` and wait (up to 2 s) until its backend has exited and the
    postmaster has reaped it. A backend that has exited but not been reaped yet is in neither
    count: a zombie has no command line, and its CPU joins the postmaster's ``cutime`` only when
    reaped. Closed just before a snapshot, its whole lifetime's CPU (the batch benchmark's
    COPYs) would land in the next phase."""
    pid = None
    if connection.connection is not None and connection.vendor == "postgresql":
        pid = connection.connection.info.backend_pid
    connection.close()
    deadline = time.monotonic() + 2
    while pid is not None and os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.005)


def add_used(total: dict, before: dict, after: dict) -> None:
    """Add the CPU seconds each group used between two snapshots to ``total``."""
    for group in GROUPS:
        total[group] += after[group] - before[group]


def per_request(before: dict, after: dict, requests: int) -> dict[str, float]:
    """Milliseconds of CPU per request for each group."""
    return {g: 1000 * (after[g] - before[g]) / requests if requests else 0.0 for g in GROUPS}
