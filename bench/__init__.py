"""Benchmarks for Infinity Metrics: ``python -m bench generate|query|ingest|batch``.

Never run by the test suite. Every benchmark talks to 127.0.0.1 only, is bounded in time
and request count, starts its own servers and stops them before it returns.
"""
