"""CPU seconds spent by the processes behind a benchmark phase, read from /proc (Linux).

``snapshot(base)`` reads user + system time of each process of the app server started at
``base`` (its master and workers carry ``127.0.0.1:<port>`` in their command line), of
PostgreSQL (every ``postgres`` process) and of Redis; ``per_request`` turns two snapshots into
the CPU each request cost on each side. It is taken per process: a process that started
between the snapshots counts from zero, and one that ended (an autovacuum worker, say) is left
out rather than subtracting the CPU it had used before the first snapshot (summed totals went
to 0.00 or below for PostgreSQL while its table was vacuumed). Elsewhere than Linux: nothing.
"""

import os
from urllib.parse import urlsplit

GROUPS = ("server", "postgres", "redis")


def snapshot(base: str) -> dict[str, dict[int, float]]:
    bind = f"127.0.0.1:{urlsplit(base).port}".encode()
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    totals = {group: {} for group in GROUPS}
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
        if bind in cmdline:
            group = "server"
        elif cmdline.startswith(b"postgres"):
            group = "postgres"
        elif cmdline.startswith(b"redis-server"):
            group = "redis"
        else:
            continue
        totals[group][int(pid)] = (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
    return totals


def total(snap: dict, group: str) -> float:
    """CPU seconds of ``group``'s processes in one snapshot."""
    return sum(snap[group].values())


def per_request(before: dict, after: dict, requests: int) -> dict[str, float]:
    """Milliseconds of CPU per request for each group, over the processes alive at ``after``."""
    if not requests:
        return dict.fromkeys(GROUPS, 0.0)
    return {g: 1000 * sum(t - before[g].get(pid, 0.0) for pid, t in after[g].items()) / requests for g in GROUPS}
