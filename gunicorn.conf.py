"""gunicorn's settings wherever the server runs: ``scripts/serve``, ``deploy/`` (systemd, Docker),
the tests and the benchmarks. Flags on the command line win (``--bind``, ``--workers``).

Listening sockets (see docs/production.md, "Restarts and reloads"): the master opens one
SO_REUSEPORT socket per worker slot and hands each worker its slot's socket. The kernel spreads
new connections over the slots, so keep-alive connections reach every worker (on one shared
socket whichever worker accepted first kept most of them). Unlike gunicorn's own ``reuse_port``,
where each worker opens and closes a socket of its own, a slot's socket lives as long as the
master: a reload or a replaced worker hands it to the successor with its queued connections,
where closing it would reset them. Workers die with the master (``post_fork``), so after a crash
no orphan keeps a socket of the group that a restarted server would share.
"""

import ctypes
import os
import signal
import socket
import sys

from gunicorn import sock, util

wsgi_app = "infinity.wsgi:application"
# Threads let one worker commit the rows of concurrent requests together (events/groupcommit.py).
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = 8
backlog = 2048
# Up to 1 MB (gunicorn's cap) instead of 4 KB, so the documented analytics filters fit.
limit_request_line = 0
# Signals manage the server (systemd, scripts/serve); no gunicornc socket in the home directory,
# which every gunicorn of a user shares by default.
control_socket_disable = True


class Slot:
    """A worker slot: its listening sockets (one per address) and the ages of its live workers."""

    def __init__(self, listeners):
        self.listeners = listeners
        self.ages = set()


def _listen(address, cfg, log):
    """A TCP listener on ``address`` that joins the address's SO_REUSEPORT group."""
    kind = sock.TCP6Socket if util.is_ipv6(address[0]) else sock.TCPSocket
    raw = socket.socket(kind.FAMILY, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if kind is sock.TCP6Socket:
        raw.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    raw.bind(address)
    return kind(address, cfg, log, fd=raw.detach())  # gunicorn's wrapper: it listens with the backlog


def _new_slot(server):
    server.slots.append(Slot([_listen(address, server.cfg, server.log) for address in server.slot_addresses]))
    server.LISTENERS = [listener for slot in server.slots for listener in slot.listeners]
    return server.slots[-1]


def on_starting(server):
    """Open the slots' sockets where gunicorn would open one shared socket itself: TCP addresses
    only, not when started with sockets to inherit (systemd socket activation, a USR2 re-exec)."""
    server.slots = None
    addresses = server.cfg.address
    inherits = os.environ.get("LISTEN_FDS") or os.environ.get("GUNICORN_FD")
    if server.cfg.reuse_port or inherits or sys.platform != "linux":
        return  # elsewhere SO_REUSEPORT does not spread connections (the last socket bound takes them)
    if not addresses or not all(isinstance(address, tuple) for address in addresses):
        return  # Unix sockets: no SO_REUSEPORT; one shared socket as usual
    server.slots = []
    server.slot_addresses = list(addresses)
    first = _new_slot(server)
    # A port 0 binds anywhere: the other slots join the port the first one got.
    ports = [listener.getsockname()[1] for listener in first.listeners]
    server.slot_addresses = [(address[0], port) for address, port in zip(addresses, ports, strict=True)]
    for _ in range(1, server.num_workers):
        _new_slot(server)


def on_reload(server):
    """A new bind address made gunicorn replace the sockets: its own shared ones serve from now on."""
    if server.slots and server.LISTENERS != [listener for slot in server.slots for listener in slot.listeners]:
        server.log.warning("bind address changed: one shared socket until the next restart")
        server.slots = None


def pre_fork(server, worker):
    """Give the worker a slot: one without a live worker (a replacement takes its predecessor's),
    else, during a reload, the slot whose newest worker is oldest, so each new worker takes one."""
    if not server.slots:
        return
    free = [slot for slot in server.slots if not slot.ages]
    if free:
        slot = free[0]
    elif len(server.slots) < server.num_workers:
        slot = _new_slot(server)  # more workers (TTIN, or a reload with a larger number)
    else:
        slot = min(server.slots, key=lambda s: max(s.ages))
    slot.ages.add(worker.age)
    worker.slot = slot
    worker.sockets = slot.listeners


def child_exit(server, worker):
    """Free the worker's slot; close a slot no worker needs any more (fewer workers: TTOU)."""
    slot = getattr(worker, "slot", None)
    if slot is None or not server.slots:
        return
    slot.ages.discard(worker.age)
    if not slot.ages and len(server.slots) > server.num_workers:
        server.slots.remove(slot)
        server.LISTENERS = [listener for s in server.slots for listener in s.listeners]
        for listener in slot.listeners:
            listener.close()


_PR_SET_PDEATHSIG = 1


def post_fork(server, worker):
    """In the worker: close the other slots' sockets it inherited, so that a slot's socket is held
    only by the master and its own workers and leaves the port's group when the master closes it.

    Then have the worker killed when the master dies (kill -9, OOM): a gthread worker would
    otherwise notice within a second, stop accepting, and still hold its listening socket while it
    finishes its connections (up to ``graceful_timeout``), where a restarted server's new
    connections would wait. SIGKILL, not SIGTERM, for that reason."""
    slot = getattr(worker, "slot", None)
    for other in server.slots or ():
        if other is not slot:
            for listener in other.listeners:
                listener.close()
    if sys.platform != "linux":
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        server.log.warning("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
    if os.getppid() != server.pid:  # the master died before the prctl
        os._exit(1)
