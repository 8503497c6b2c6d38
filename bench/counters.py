"""The rate limiter's round trip: our RESP client beside redis-py, per call, on this machine.

    python -m bench counters [--calls 5000] [--redis redis://127.0.0.1:6379/0]

Both send the same pipeline a request costs (INCR, EXPIRE, GET of the key generation) and
wait for the replies; it prints the median over 5 rounds of client CPU and wall time per call.
A third row goes through ``CounterStore.hit``, the throttle's entry point (its fail-open and
circuit-breaker bookkeeping in front of ``RedisCounter.hit``), with Redis healthy.
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
    import redis

    from bench.env import setup_django

    setup_django()
    from infinity.throttling import CounterStore, RedisCounter

    key, generation = f"bench:counters:{uuid.uuid4().hex}", f"bench:counters:{uuid.uuid4().hex}:generation"
    ours = RedisCounter(args.redis)
    client = redis.Redis.from_url(args.redis)
    store = CounterStore()
    store.primary = RedisCounter(args.redis)

    def with_redis_py():
        pipe = client.pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, 65)
        pipe.get(generation)
        return pipe.execute()

    def with_ours():
        return ours.hit(key, 65, generation)

    def with_store():
        return store.hit(key, 65, generation)

    try:
        rows = [
            ("redis-py pipeline", measure(with_redis_py, args.calls)),
            ("RedisCounter.hit (RESP over a socket)", measure(with_ours, args.calls)),
            ("CounterStore.hit (the throttle's call)", measure(with_store, args.calls)),
        ]
    finally:
        client.delete(key)
    for label, (cpu, wall) in rows:
        print(f"{label:<40} CPU {cpu:7.1f} µs/call   wall {wall:7.1f} µs/call")
    print(f"redis-py costs {rows[0][1][0] / rows[1][1][0]:.1f}× the CPU per call")
    return 0


if __name__ == "__main__":
    sys.exit(main())
