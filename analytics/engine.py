"""Evaluate a ``Query``: collect tallies, merge them into totals, series and breakdown.

Tallies come from ``rollups.collect`` (closed days from the rollup table, the rest from
raw events); this module only merges and formats, under a statement timeout.
"""

import time
from collections import defaultdict
from contextlib import contextmanager

from django.conf import settings
from django.db import OperationalError, connection, transaction

from . import buckets
from .query import Query, QueryError
from .scan import ALL
from .tally import FINALIZERS, Tally, has_data

STATEMENT_TIMEOUT_MS = getattr(settings, "ANALYTICS_STATEMENT_TIMEOUT_MS", 10_000)


def metrics_of(query: Query, tally: Tally) -> dict:
    return {name: FINALIZERS[name](tally) for name in query.metrics}


def _sort_key(value):
    if isinstance(value, dict):
        return max(value.values(), default=0)
    return value


def summarize(query: Query, tallies: dict) -> dict:
    """Totals, series and breakdown from tallies keyed by (bucket, value)."""
    totals = Tally()
    per_bucket = defaultdict(Tally)
    per_value = defaultdict(Tally)
    for (bucket, value), tally in tallies.items():
        if value is ALL or value == ALL:
            totals.merge(tally)
            if query.interval:
                per_bucket[bucket].merge(tally)
        else:
            per_value[value].merge(tally)
    out = {"data": metrics_of(query, totals)}
    if query.interval:
        keys = buckets.bucket_keys(query.start_date, query.end_date, query.interval, query.tz)
        out["series"] = [
            {"date": buckets.label(key, query.interval, query.start_date), **metrics_of(query, per_bucket.get(key, Tally()))}
            for key in keys
        ]
    if query.breakdown is not None:
        rows = [(value, metrics_of(query, tally), tally) for value, tally in per_value.items()]
        rows = [(value, metrics) for value, metrics, tally in rows if has_data(query.metrics, tally, metrics)]
        first = query.metrics[0]
        rows.sort(key=lambda r: (-_sort_key(r[1][first]), r[0]))
        out["breakdown"] = [{"value": value or None, **metrics} for value, metrics in rows[: query.limit]]
    return out


def evaluate(query: Query) -> dict:
    from .rollups import collect, prepare

    prepare(query)
    with _statement_timeout():
        result = summarize(query, collect(query))
        body = {"data": result["data"], "period": _period(query)}
        for key in ("series", "breakdown"):
            if key in result:
                body[key] = result[key]
        if query.compare == "previous_period":
            previous = query.previous()
            body["comparison"] = {"data": summarize(previous, collect(previous))["data"], "period": _period(previous)}
    if query.echo:
        body["query"] = query.normalized()
    return body


def _period(query: Query) -> dict:
    return {"start": query.start_date.isoformat(), "end": query.end_date.isoformat()}


@contextmanager
def _statement_timeout():
    """Bound every analytics statement: a slow query is a 400 asking for a narrower one."""
    timeout = STATEMENT_TIMEOUT_MS
    try:
        if connection.vendor == "postgresql":
            with transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute("SELECT set_config('statement_timeout', %s, true)", [str(timeout)])
                yield
        elif connection.vendor == "sqlite":
            connection.ensure_connection()
            deadline = time.monotonic() + timeout / 1000
            raw = connection.connection
            raw.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
            try:
                yield
            finally:
                raw.set_progress_handler(None, 0)
        else:
            yield
    except OperationalError as exc:
        text = str(exc).lower()
        if "statement timeout" in text or "interrupted" in text or "canceling statement" in text:
            raise QueryError(
                "start_date", f"The query ran longer than {timeout / 1000:g} s; narrow the date range or the filters"
            ) from None
        raise
