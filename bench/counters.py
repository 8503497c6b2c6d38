"""The rate limiter's Redis calls through redis-py, per call, on this machine.

    python -m bench counters [--calls 5000] [--redis redis://127.0.0.1:6379/0]

Times what an API request asks of Redis: the throttle's hit (one EVALSHA: INCR and the
window's expiry) and the key cache's read of the key generation (one GET), each directly and
through ``CounterStore`` (the circuit breaker in front). It prints the median over 5 rounds
of client CPU and wall time per call, and which reply parser redis-py uses (hiredis, when
installed, or its own Python one): run it with and without hiredis to compare them.
"""

import argparse
import os
import resource
import statistics
import sys
import time
import uuid


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(call, calls: int) -> tuple[float, float]:
    """(median CPU µs, median wall µs) per call over 5 rounds."""
    call()
    cpu, wall = [], []
    for _ in range(5):
        c0, w0 = _cpu(), time.perf_counter()
        for _ in range(calls):
            call()
        cpu.append((_cpu() - c0) / calls * 1e6)
        wall.append((time.perf_counter() - w0) / calls * 1e6)
    return statistics.median(cpu), statistics.median(wall)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench counters", description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--redis", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    args = parser.parse_args(argv)
    if not 0 < args.calls <= 1_000_000:
        raise SystemExit("--calls must be in (0, 1000000]")
    from redis.utils import HIREDIS_AVAILABLE

    from bench.env import setup_django

    setup_django()
    from infinity.counters import CounterStore, RedisCounters

    key, generation = f"bench:counters:{uuid.uuid4().hex}", f"bench:counters:{uuid.uuid4().hex}:generation"
    counters = RedisCounters(args.redis)
    store = CounterStore(counters)
    try:
        rows = [
            ("RedisCounters.hit (EVALSHA)", measure(lambda: counters.hit(key, 65), args.calls)),
            ("RedisCounters.read (GET)", measure(lambda: counters.read(generation), args.calls)),
            ("CounterStore.hit (the throttle's call)", measure(lambda: store.hit(key, 65), args.calls)),
            ("CounterStore.read (the key cache's call)", measure(lambda: store.read(generation), args.calls)),
        ]
    finally:
        counters.call("DEL", key)
    print(f"redis-py reply parser: {'hiredis' if HIREDIS_AVAILABLE else 'Python'}")
    for label, (cpu, wall) in rows:
        print(f"{label:<42} CPU {cpu:7.1f} µs/call   wall {wall:7.1f} µs/call")
    return 0


if __name__ == "__main__":
    sys.exit(main())
