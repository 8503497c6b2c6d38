"""Keep-alive connections are spread over the server's workers (gunicorn.conf.py's socket slots).

On one shared listening socket the worker that accepted first kept the connections for good
(seen under the ingest benchmark: 32/0 and 28/4 of 32), so one core served them and the other
idled. Each worker listens on a SO_REUSEPORT socket of its own and the kernel spreads them.
"""

import http.client
import os
import sys

import pytest

from bench.servers import running_server
from tests.servers import database_url

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")]


def _established_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in list(f)[1:]:
                fields = line.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                if local_port == port and fields[3] == "01":  # ESTABLISHED, server side
                    inodes.add(fields[9])
    return inodes


def _connections_per_worker(port: int) -> dict[int, int]:
    inodes = _established_inodes(port)
    bind = f"127.0.0.1:{port}".encode()
    counts = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if bind not in f.read():
                    continue
            links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:
            continue
        held = sum(1 for link in links if link.startswith("socket:[") and link[8:-1] in inodes)
        if held:
            counts[int(pid)] = held
    return counts


def test_keep_alive_connections_reach_both_workers(settings):
    env = {"DEBUG": "true", "SECRET_KEY": settings.SECRET_KEY, "DATABASE_URL": database_url(), "REDIS_URL": None}
    with running_server(server="gunicorn:gthread", workers=2, threads=2, env=env, settings_module="infinity.settings",
                        ready_path="/api/v1/schema") as base:  # fmt: skip
        port = int(base.rsplit(":", 1)[1])
        clients = [http.client.HTTPConnection("127.0.0.1", port, timeout=30) for _ in range(16)]
        try:
            for client in clients:
                client.request("GET", "/api/v1/analytics")  # 401, over a connection kept open
                response = client.getresponse()
                response.read()
                assert response.status == 401 and response.getheader("Connection", "").lower() != "close"
            per_worker = _connections_per_worker(port)
        finally:
            for client in clients:
                client.close()
    # 16 connections on 2 workers: all on one by chance has probability 2 * 2^-16.
    assert len(per_worker) == 2, per_worker
    assert sum(per_worker.values()) == 16
