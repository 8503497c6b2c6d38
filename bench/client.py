"""A small asyncio HTTP/1.1 load client: N keep-alive connections for a bounded time.

Used instead of wrk because it stops cleanly: when the time is up every connection
finishes its request in flight, so "acknowledged" counts every response the server sent
and the stored row count can be compared exactly. It reconnects when the server closes
(gunicorn's sync worker answers ``Connection: close``). Its own CPU time is reported, since
on a 2-core machine it competes with the server.
"""

import asyncio
import math
import resource
import statistics
import time
from dataclasses import dataclass, field


@dataclass
class LoadResult:
    duration: float = 0.0
    latencies: list = field(default_factory=list)  # seconds, every completed request
    statuses: dict = field(default_factory=dict)
    errors: int = 0  # connection failures and non-2xx
    client_cpu: float = 0.0
    bodies: list = field(default_factory=list)

    @property
    def completed(self) -> int:
        return len(self.latencies)

    @property
    def ok(self) -> int:
        return sum(n for status, n in self.statuses.items() if 200 <= status < 300)

    @property
    def rate(self) -> float:
        return self.completed / self.duration if self.duration else 0.0

    def percentile(self, p: float) -> float:
        return percentile(self.latencies, p)

    def add(self, part: "LoadResult") -> None:
        """Fold in another run's result (a later slice of the same phase)."""
        self.duration += part.duration
        self.latencies += part.latencies
        self.errors += part.errors
        self.client_cpu += part.client_cpu
        self.bodies += part.bodies
        for status, n in part.statuses.items():
            self.statuses[status] = self.statuses.get(status, 0) + n


def percentile(values, p: float) -> float:
    """Nearest-rank percentile (p in 0…100) of ``values``; 0.0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(p / 100 * len(ordered))))
    return ordered[rank - 1]


def median(values) -> float:
    return statistics.median(values) if values else 0.0


def build_request(method: str, path: str, host: str, headers: dict, body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Connection: keep-alive"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if body or method in {"POST", "PUT", "PATCH"}:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _read_response(reader) -> tuple[int, bytes, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    header_lines = head.decode("latin-1").split("\r\n")
    status = int(header_lines[0].split(" ", 2)[1])
    length, close, chunked = 0, False, False
    for line in header_lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "connection" and value.strip().lower() == "close":
            close = True
        elif name == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
    if chunked:
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            body += chunk[:-2]
    else:
        body = await reader.readexactly(length) if length else b""
    return status, body, close


async def _worker(host, port, make_request, state, result, deadline, keep_bodies):
    reader = writer = None
    while time.monotonic() < deadline:
        if state["left"] is not None:
            if state["left"] <= 0:
                break
            state["left"] -= 1
        seq = state["seq"]
        state["seq"] += 1
        payload = make_request(seq)
        started = time.perf_counter()
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            writer.write(payload)
            status, body, close = await _read_response(reader)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            result.errors += 1
            if writer is not None:
                writer.close()
            reader = writer = None
            continue
        result.latencies.append(time.perf_counter() - started)
        result.statuses[status] = result.statuses.get(status, 0) + 1
        if not 200 <= status < 300:
            result.errors += 1
        if keep_bodies:
            result.bodies.append(body)
        if close:
            writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


async def _run(base, make_request, connections, duration, max_requests, keep_bodies):
    host_port = base.split("://", 1)[1]
    host, _, port = host_port.partition(":")
    result = LoadResult()
    state = {"seq": 0, "left": max_requests}
    started = time.monotonic()
    deadline = started + duration
    await asyncio.gather(
        *(_worker(host, int(port), make_request, state, result, deadline, keep_bodies) for _ in range(connections))
    )
    result.duration = time.monotonic() - started
    return result


def run_load(base, make_request, *, connections=32, duration=30.0, max_requests=None, keep_bodies=False) -> LoadResult:
    """Drive ``connections`` concurrent clients until ``duration`` s pass (or ``max_requests``).

    ``make_request(seq) -> bytes`` builds the raw request (see ``build_request``).
    """
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    result = asyncio.run(_run(base, make_request, connections, duration, max_requests, keep_bodies))
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    result.client_cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return result
