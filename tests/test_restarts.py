"""Restarts and reloads of the real server (gunicorn with gunicorn.conf.py, as scripts/serve and
deploy/ run it): a crashed master leaves nothing behind that a restarted server's new connections
could wait on, and a graceful reload (SIGHUP) loses no connection."""

import contextlib
import http.client
import os
import signal
import socket
import sys
import threading
import time
from collections import Counter

import pytest

from bench.servers import free_port, running_server
from events.models import Event

from .servers import database_url

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")]

LIVE = "/api/v1/health?live"


@pytest.fixture
def env(settings):
    return {"DEBUG": "true", "SECRET_KEY": settings.SECRET_KEY, "DATABASE_URL": database_url(), "REDIS_URL": None,
            "RATELIMIT_KEY_PREFIX": settings.RATELIMIT_KEY_PREFIX, "RATELIMIT_STORE_PATH": settings.RATELIMIT_STORE_PATH,
            "RATE_LIMIT_EVENTS": "1000000", "RATE_LIMIT_ANON": "1000000"}  # fmt: skip


@contextlib.contextmanager
def server(env, port, workers=2):
    with running_server(server="gunicorn:gthread", workers=workers, threads=8, env=env, settings_module="infinity.settings",
                        ready_path=LIVE, port=port) as base:  # fmt: skip
        yield base


def _stat(pid):
    """(state, parent pid, process group) of a process, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[0], int(fields[1]), int(fields[2])


def _children(pid):
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and (_stat(p) or ("", 0, 0))[1] == pid]


def _master(port):
    """Our child gunicorn master serving ``port``."""
    for pid in _children(os.getpid()):
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if f"127.0.0.1:{port}".encode() in f.read():
                return pid
    raise AssertionError(f"no gunicorn master of ours on port {port}")


def _alive_in_group(pgid):
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and (s := _stat(p)) and s[2] == pgid and s[0] != "Z"]


def _get(port, path=LIVE, timeout=2.0):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def test_after_kill_9_of_the_master_a_restarted_server_answers_every_new_connection_within_2_s(env):
    port = free_port()
    held = []
    with server(env, port):
        master = _master(port)
        workers = _children(master)
        assert len(workers) == 2
        # What a busy server has: idle keep-alive connections and requests still arriving. A
        # gthread worker that outlives its master finishes them before it closes its socket.
        for _ in range(12):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(b"GET /api/v1/health?live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
            held.append(sock)
        for _ in range(4):  # fewer than a worker's threads: each of these holds one
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(b"GET /api/v1/health?live HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            held.append(sock)
        try:
            os.kill(master, signal.SIGKILL)
            deadline = time.monotonic() + 1.0
            while _alive_in_group(master) and time.monotonic() < deadline:
                time.sleep(0.02)
            orphans = _alive_in_group(master)
            with server(env, port):  # systemd's Restart=always, at once
                statuses = []
                for _ in range(12):
                    try:
                        statuses.append(_get(port))
                    except OSError as exc:  # TimeoutError: a connection left waiting
                        statuses.append(type(exc).__name__)
        finally:
            for sock in held:
                sock.close()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(master, signal.SIGKILL)  # anything left of the group we started
    assert statuses == [200] * 12
    assert orphans == [], "workers outlived their master"


def _churn(port, stop, counts, key=None):
    """New connection after new connection until ``stop``; with ``key`` each one sends an event."""
    while not stop.is_set():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
        try:
            if key:
                conn.request("POST", "/api/v1/events", '{"event_name": "reload"}',
                             {"Authorization": f"Bearer {key}", "Content-Type": "application/json"})  # fmt: skip
            else:
                conn.request("GET", LIVE)
            response = conn.getresponse()
            response.read()
            counts[response.status] += 1
        except Exception as exc:  # a reset, a closed connection, a timeout
            counts[type(exc).__name__] += 1
        finally:
            conn.close()


def test_a_graceful_reload_loses_no_connection(env, cast):
    port = free_port()
    probes, events = Counter(), Counter()
    stop = threading.Event()
    with server(env, port):
        master = _master(port)
        before = set(_children(master))
        threads = [threading.Thread(target=_churn, args=(port, stop, probes)) for _ in range(6)]
        threads += [threading.Thread(target=_churn, args=(port, stop, events, cast.key)) for _ in range(2)]
        for thread in threads:
            thread.start()
        try:
            time.sleep(1.5)
            os.kill(master, signal.SIGHUP)
            time.sleep(3.0)  # the new workers start and take over
            os.kill(master, signal.SIGHUP)  # and once more, from those
            time.sleep(3.0)
        finally:
            stop.set()
            for thread in threads:
                thread.join()
        after = set(_children(master))
    assert after and not after & before, "the workers were not replaced"
    assert set(probes) == {200}, probes
    assert set(events) == {201}, events
    assert probes[200] > 100  # a few thousand on an idle machine
    assert Event.objects.filter(name="reload").count() == events[201]
