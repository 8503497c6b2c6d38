"""``python -m bench generate|query|ingest|batch …`` — see each module's docstring."""

import importlib
import sys

COMMANDS = {
    "generate": "bench.generate",
    "query": "bench.query",
    "ingest": "bench.ingest",
    "batch": "bench.batch",
}


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        print(__doc__)
        print("commands:", ", ".join(COMMANDS))
        return 2
    module = importlib.import_module(COMMANDS[argv[0]])
    return module.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
