"""Rollups (placeholder): every query scans raw events."""

from .query import Query
from .scan import scan


def collect(query: Query) -> dict:
    start, end = query.utc_range
    return scan(query, start, end, query.interval, query.breakdown)


def rebuild(*, site, now=None):
    pass
