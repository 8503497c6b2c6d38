"""``python -m bench generate|query|rollup|ingest|batch|batchloop|counters|dashboard|export …`` — see each module's docstring."""

import importlib
import signal
import sys

COMMANDS = {
    "generate": "bench.generate",
    "query": "bench.query",
    "rollup": "bench.rollup",
    "ingest": "bench.ingest",
    "batch": "bench.batch",
    "batchloop": "bench.batchloop",
    "counters": "bench.counters",
    "dashboard": "bench.dashboard",
    "export": "bench.export",
}


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        print(__doc__)
        print("commands:", ", ".join(COMMANDS))
        return 2
    # SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C, so the servers a benchmark started
    # are stopped by its `finally` blocks instead of being orphaned.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    module = importlib.import_module(COMMANDS[argv[0]])
    return module.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
