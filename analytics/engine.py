"""Answer a ``Query``: collect tallies, merge them, turn them into the response body.

1. ``collect``: the rolled-up buckets that can answer the query (``rollups.plan`` and
   ``rollups.usable_buckets``); raw events (``scan``) for every gap between them; then the
   rollup rows of those buckets (``rollups.read``). Both sources give ``Tally`` sums keyed by
   (series bucket, breakdown value), equal by construction.
2. ``summarize``: merge the tallies into totals, series and breakdown, and only then compute
   each metric (``tally.FINALIZERS``), so a metric is the same whatever its source.
3. ``run_query``: both steps under a statement timeout (a slow query is a 400 asking for a
   narrower one), for the period and, with ``compare``, the period it names (with its own
   series when an interval is asked).
"""

import dataclasses
from collections import defaultdict
from datetime import datetime

from django.conf import settings
from django.utils import timezone

from . import buckets, rollups, storage
from .query import CURRENT_WINDOW, Query, QueryError
from .scan import ALL, current_visitors, scan
from .sketch import RELATIVE_STANDARD_ERROR
from .tally import FINALIZERS, Tally, estimated_metrics, has_data, merge_into

STATEMENT_TIMEOUT_MS = getattr(settings, "ANALYTICS_STATEMENT_TIMEOUT_MS", 10_000)


def run_query(query: Query) -> dict:
    """The response body: data, period, and series/breakdown/comparison/query when asked."""
    if "current_visitors" in query.metrics:
        return _with_current_visitors(query)
    try:
        with storage.statement_timeout(STATEMENT_TIMEOUT_MS):
            result = summarize(query, collect(query))
            estimated = result.pop("estimated")
            body = {"data": result.pop("data"), "period": _period(query), **result}
            if query.compare:
                previous = query.comparison()
                summary = summarize(previous, collect(previous))
                body["comparison"] = {"data": summary["data"], "period": _period(previous)}
                if "series" in summary:  # bucket by bucket, to draw beside the period's own series
                    body["comparison"]["series"] = summary["series"]
                estimated += [f"comparison.{path}" for path in summary["estimated"]]
    except storage.StatementTimeout:
        message = f"The query ran longer than {STATEMENT_TIMEOUT_MS / 1000:g} s; narrow the date range or the filters"
        raise QueryError("start_date", message) from None
    if query.echo:
        body["query"] = query.normalized()
        if estimated:
            body["estimated"] = {"relative_standard_error": RELATIVE_STANDARD_ERROR, "values": estimated}
    return body


def _with_current_visitors(query: Query) -> dict:
    """``current_visitors`` is counted from raw events of the last minutes; the other metrics
    of the query as usual."""
    others = tuple(m for m in query.metrics if m != "current_visitors")
    body = run_query(dataclasses.replace(query, metrics=others)) if others else {"data": {}, "period": _period(query)}
    now = query.now or timezone.now()
    current = current_visitors(query, now - CURRENT_WINDOW, now)
    body["data"] = {m: current if m == "current_visitors" else body["data"][m] for m in query.metrics}
    if query.echo:
        body["query"] = query.normalized()
    return body


def collect(query: Query) -> dict:
    """Tallies keyed (series bucket or None, breakdown value or ALL) for the query's range."""
    lo, hi = query.utc_range
    plan = rollups.plan(query)
    chosen = rollups.usable_buckets(query, plan, lo, hi) if plan is not None else []
    tallies = {}
    for gap_lo, gap_hi in _gaps(lo, hi, chosen):
        merge_into(tallies, scan(query, gap_lo, gap_hi, query.interval, query.breakdown))
    if chosen:
        rollups.read(query, plan, chosen, tallies)
    return tallies


def _gaps(lo: datetime, hi: datetime, chosen: list) -> list[tuple[datetime, datetime]]:
    out, t = [], lo
    for b in chosen:
        if b.start > t:
            out.append((t, b.start))
        t = max(t, b.end)
    if t < hi:
        out.append((t, hi))
    return out


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
    estimated = [f"data.{m}" for m in estimated_metrics(query.metrics, totals)]
    if query.interval:
        keys = buckets.bucket_keys(query.start_date, query.end_date, query.interval, query.tz)
        if query.window is not None:  # only the buckets the window touches
            lo, hi = (buckets.bucket_of(t, query.interval, query.tz) for t in (query.window[0], query.window[1]))
            keys = [key for key in keys if lo <= key <= hi]
        out["series"] = []
        for i, key in enumerate(keys):
            tally = per_bucket.get(key, Tally())
            out["series"].append({"date": buckets.label(key, query.interval, query.start_date), **metrics_of(query, tally)})
            estimated += [f"series.{i}.{m}" for m in estimated_metrics(query.metrics, tally)]
    if query.breakdown is not None:
        rows = [(value, metrics_of(query, tally), tally) for value, tally in per_value.items()]
        rows = [row for row in rows if has_data(query.metrics, row[2], row[1])]
        first = query.metrics[0]
        rows.sort(key=lambda r: (-_sort_key(r[1][first]), r[0]))
        out["breakdown"] = [{"value": value or None, **metrics} for value, metrics, _ in rows[: query.limit]]
        for i, (_, _, tally) in enumerate(rows[: query.limit]):
            estimated += [f"breakdown.{i}.{m}" for m in estimated_metrics(query.metrics, tally)]
    out["estimated"] = estimated
    return out


def _period(query: Query) -> dict:
    return {"start": query.start_date.isoformat(), "end": query.end_date.isoformat()}
