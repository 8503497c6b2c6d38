"""Raw-event aggregation: events in [start, end) → tallies keyed by (bucket, value).

``bucket`` is the local bucket key (``analytics.buckets``) or ``None`` without a grain;
``value`` is the breakdown dimension's value or ``ALL``. Everything heavy is a GROUP BY in
the database; Python only merges the grouped rows and measures visits.
"""

from collections import defaultdict
from datetime import datetime

import numpy as np
from django.db import connections
from django.db.models import Case, CharField, Count, F, Max, Min, Q, Value, When
from django.db.models.functions import Coalesce, Concat

from events.models import Event, Kind
from events.sessions import SESSION_GAP

from . import buckets, storage
from .query import PAIR_SEPARATOR, SESSION_METRICS, VISIT_WINDOW, Dimension, Filter, Query, ascii_lower
from .sketch import VisitorSketch
from .storage import AsciiLower, MetadataText, revenue_sums, revenue_total
from .tally import Tally

ALL = ("*all*",)  # the key of rows not broken down; never equal to a string value

_VISITOR_METRICS = {"unique_visitors", "conversion_rate"}
_MONEY_METRICS = {"revenue", "average_order_value"}
_COUNT_METRICS = {"page_views", "events", "purchases"}


def expression(dimension: Dimension):
    """The ORM expression of a dimension's value; never NULL (missing metadata is '')."""
    if dimension.parts:
        pieces = []
        for part in dimension.parts:
            pieces += [expression(part), Value(PAIR_SEPARATOR)]
        return Concat(*pieces[:-1], output_field=CharField())
    if dimension.metadata_key is not None:
        return Coalesce(MetadataText(dimension.metadata_key), Value(""))
    return F(dimension.column)


def _filter_alias(f: Filter):
    """The expression a filter tests: the dimension's value, ASCII-lowered for ``~``."""
    return AsciiLower(expression(f.dimension)) if f.op == "~" else expression(f.dimension)


def _filter_q(alias: str, f: Filter) -> Q:
    if f.op == "~":  # contains, case-insensitive for ASCII letters (both sides lowered)
        return Q(**{f"{alias}__contains": ascii_lower(f.value)})
    part = Q(**{alias: f.value})
    return ~part if f.op == "!=" else part


def filter_events(qs, filters: tuple[Filter, ...]):
    """Apply event filters; each dimension value is aliased so metadata keys stay parameters."""
    qs = _with_filter_aliases(qs, filters)
    q = match_q(filters)
    return qs if q is None else qs.filter(q)


def match_q(filters: tuple[Filter, ...]) -> Q | None:
    """The event filters as one Q over aliases ``_f<i>`` (see ``_with_filter_aliases``)."""
    q = None
    for i, f in enumerate(filters):
        part = _filter_q(f"_f{i}", f)
        q = part if q is None else q & part
    return q


def _with_filter_aliases(qs, filters):
    for i, f in enumerate(filters):
        qs = qs.alias(**{f"_f{i}": _filter_alias(f)})
    return qs


def scan(query: Query, start: datetime, end: datetime, grain: str | None, dimension: Dimension | None) -> dict:
    """Tallies of the raw events in [start, end) for (bucket, ALL) and, with a dimension, (bucket, value)."""
    tallies = defaultdict(Tally)
    wanted = set(query.metrics)
    if wanted - SESSION_METRICS:
        for dim in [None, dimension] if dimension is not None else [None]:
            _scan_events(query, start, end, grain, dim, wanted, tallies)
    if wanted & SESSION_METRICS:
        _scan_visits(query, start, end, grain, [dimension] if dimension is not None else [], tallies)
    return {(bucket, value if value is ALL else value[1]): t for (bucket, value), t in tallies.items()}


def _counts() -> dict:
    return {
        "pv": Count("id", filter=Q(kind=Kind.PAGEVIEW)),
        "ev": Count("id", filter=Q(kind__in=[Kind.CUSTOM, Kind.PURCHASE])),
        "pu": Count("id", filter=Q(kind=Kind.PURCHASE)),
    }


def current_visitors(query: Query, start: datetime, end: datetime) -> int:
    """Distinct visitors with an event in [start, end] that matches the query's event filters."""
    qs = Event.objects.filter(site_id=query.site_id, occurred_at__gte=start, occurred_at__lte=end, visitor__isnull=False)
    return filter_events(qs, query.event_filters).values("visitor").distinct().count()


def _grouped(query, start, end, grain, dim):
    qs = Event.objects.filter(site_id=query.site_id, occurred_at__gte=start, occurred_at__lt=end)
    qs = filter_events(qs, query.event_filters)
    keys = []
    if grain is not None:
        qs = qs.annotate(_b=buckets.db_bucket(grain, query.tz))
        keys.append("_b")
    if dim is not None:
        qs = qs.annotate(_v=expression(dim))
        keys.append("_v")
    return qs, keys


def _key(row, grain, dim):
    bucket = buckets.from_db(row["_b"]) if grain is not None else None
    return bucket, ((dim.name, row["_v"]) if dim is not None else ALL)


def _scan_events(query, start, end, grain, dim, wanted, tallies):
    qs, keys = _grouped(query, start, end, grain, dim)
    counts = _counts()
    if wanted & _VISITOR_METRICS:
        # One GROUP BY visitor carries the counts too (the NULL visitor group holds the anonymous events).
        for row in qs.values(*keys, "visitor").annotate(**counts).order_by():
            t = tallies[_key(row, grain, dim)]
            t.page_views += row["pv"]
            t.events += row["ev"]
            t.purchases += row["pu"]
            if row["visitor"] is not None:
                t.visitors.add(row["visitor"])
                if row["pu"]:
                    t.buyers.add(row["visitor"])
    elif wanted & _COUNT_METRICS:
        # values() without fields would group by every column: aggregate() is one row
        rows = qs.values(*keys).annotate(**counts).order_by() if keys else [qs.aggregate(**counts)]
        for row in rows:
            t = tallies[_key(row, grain, dim)]
            t.page_views += row["pv"]
            t.events += row["ev"]
            t.purchases += row["pu"]
    if wanted & _MONEY_METRICS:
        sums = revenue_sums()
        rows = qs.filter(kind=Kind.PURCHASE).values(*keys, "currency").annotate(**sums, n=Count("id"))
        for row in rows.order_by():
            t = tallies[_key(row, grain, dim)]
            cur = row["currency"]
            t.revenue[cur] = t.revenue.get(cur, 0) + revenue_total([row[k] for k in sums])
            t.orders[cur] = t.orders.get(cur, 0) + row["n"]


class _Visit:
    __slots__ = ("first", "last", "page_views", "others", "matched", "values", "entry", "exit")

    def __init__(self, first, last, page_views, others, matched):
        self.first, self.last = first, last
        self.page_views, self.others, self.matched = page_views, others, matched
        self.values = set()
        self.entry = self.exit = ""


def _collect_visits(query: Query, start, end, needs_pages: bool):
    """Visits starting in [start, end) that match the filters, measured over their first VISIT_WINDOW.

    Sessions follow the 30-minute rule, so a session with an event before ``start`` has
    one in [start − 30 min, start): reading from there tells which ones began earlier.
    Returns (visits by session id, the read window queryset, ids of visits longer than the window).
    """
    window = Event.objects.filter(
        site_id=query.site_id,
        occurred_at__gte=start - SESSION_GAP,
        occurred_at__lt=end + VISIT_WINDOW,
        session__isnull=False,
    )
    event_filters = query.event_filters
    aggregates = {
        "first": Min("occurred_at"),
        "last": Max("occurred_at"),
        "pv": Count("id", filter=Q(kind=Kind.PAGEVIEW)),
        "other": Count("id", filter=~Q(kind=Kind.PAGEVIEW)),
    }
    grouped = _with_filter_aliases(window, event_filters)
    if event_filters:
        aggregates["first_match"] = Min("occurred_at", filter=match_q(event_filters))
    rows = grouped.values("session").annotate(**aggregates).filter(first__gte=start, first__lt=end).order_by()
    visits = {}
    long_ones = []
    for row in rows:
        first = row["first"]
        cap = first + VISIT_WINDOW
        matched = not event_filters or (row["first_match"] is not None and row["first_match"] < cap)
        visits[row["session"]] = _Visit(first, row["last"], row["pv"], row["other"], matched)
        if row["last"] >= cap:
            long_ones.append(row["session"])
    if long_ones:
        _trim_long_visits(query, window, visits, long_ones)
    visits = {sid: v for sid, v in visits.items() if v.matched}
    if visits and needs_pages:
        _entry_and_exit(window, visits)
        visits = {
            sid: v for sid, v in visits.items() if all(f.matches(_session_value(v, f.dimension)) for f in query.session_filters)
        }
    return visits, window, set(long_ones)


def _long_visit_values(pairs, visits, long_ids, name):
    """(session, value) pairs of the rare visits longer than VISIT_WINDOW, checked event time by time."""
    if not long_ids:
        return
    timed = pairs.filter(session__in=long_ids).values_list("session", "_v").annotate(t=Min("occurred_at"))
    for sid, value, t in timed.order_by():
        v = visits.get(sid)
        if v is not None and t < v.first + VISIT_WINDOW:
            v.values.add((name, value))


def _scan_visits(query: Query, start, end, grain, dimensions, tallies):
    needs_pages = bool(query.session_filters) or any(d.scope == "session" for d in dimensions)
    visits, window, long_ids = _collect_visits(query, start, end, needs_pages)
    if not visits:
        return
    event_filters = query.event_filters
    for dimension in dimensions:
        if dimension.scope == "session":
            for v in visits.values():
                v.values.add((dimension.name, _session_value(v, dimension)))
        else:
            name = dimension.name
            pairs = filter_events(window, event_filters).annotate(_v=expression(dimension))
            # Short visits lie inside the read window: any of their events counts.
            for sid, value in pairs.values_list("session", "_v").distinct().order_by():
                v = visits.get(sid)
                if v is not None and sid not in long_ids:
                    v.values.add((name, value))
            _long_visit_values(pairs, visits, long_ids, name)
    _add_visits(query, visits, grain, tallies)


def _add_visits(query, visits, grain, tallies):
    tz = query.tz
    for v in visits.values():
        bucket = buckets.bucket_of(v.first, grain, tz) if grain is not None else None
        duration = _microseconds(v.last - v.first)
        bounce = v.page_views == 1 and v.others == 0
        for value in (ALL, *v.values):
            t = tallies[bucket, value]
            t.visits += 1
            t.bounces += bounce
            t.duration_us += duration
            t.visit_page_views += v.page_views


def _raw_rows(qs):
    """Rows without Django's per-value converters (these rows hold no dates), in chunks."""
    sql, params = qs.query.get_compiler(using=qs.db).as_sql()
    with connections[qs.db].cursor() as cursor:
        cursor.execute(sql, params)
        while rows := cursor.fetchmany(10_000):
            yield from rows


def scan_bucket(query: Query, start: datetime, end: datetime, dimensions: list) -> dict:
    """Every metric for (None, ALL) and (None, (dimension, value)) of an unfiltered bucket — for
    rollups: grouped in the database where it can (``scan_bucket_in_database``), else here."""
    if storage.can_build_in_database():
        return scan_bucket_in_database(query, start, end, dimensions)
    return scan_bucket_in_python(query, start, end, dimensions)


def scan_bucket_in_python(query: Query, start: datetime, end: datetime, dimensions: list) -> dict:
    """``scan_bucket`` on SQLite: the same numbers as ``scan`` with all metrics, in one GROUP BY
    per dimension: rows per (value, visitor, session, currency, in range) carry the counts, the
    visitor sets and the visits' values at once.
    """
    tallies = defaultdict(Tally)
    visits, session_window, long_ids = _collect_visits(query, start, end, any(d.scope == "session" for d in dimensions))
    window = Event.objects.filter(site_id=query.site_id, occurred_at__gte=start - SESSION_GAP, occurred_at__lt=end + VISIT_WINDOW)
    in_range = Case(When(Q(occurred_at__gte=start, occurred_at__lt=end), then=Value(1)), default=Value(0))
    window = window.annotate(_in=in_range)
    counts = {**_counts(), **revenue_sums(filter=Q(kind=Kind.PURCHASE))}
    for dimension in [None, *dimensions]:
        if dimension is not None and dimension.scope == "session":
            for v in visits.values():
                v.values.add((dimension.name, _session_value(v, dimension)))
            continue
        qs = window if dimension is None else window.annotate(_v=expression(dimension))
        keys = ["_in", "visitor", "session", "currency"] + ([] if dimension is None else ["_v"])
        name = None if dimension is None else dimension.name
        for row in _raw_rows(qs.values_list(*keys).annotate(**counts).order_by()):
            inside, visitor, session, currency, *rest = row
            value, (pv, ev, pu, *rev) = (ALL, rest) if name is None else ((name, rest[0]), rest[1:])
            if inside:
                t = tallies[None, value]
                t.page_views += pv
                t.events += ev
                if pu:
                    t.purchases += pu
                    t.revenue[currency] = t.revenue.get(currency, 0) + revenue_total(rev)
                    t.orders[currency] = t.orders.get(currency, 0) + pu
                if visitor is not None:
                    t.visitors.add(visitor)
                    if pu:
                        t.buyers.add(visitor)
            if name is not None and session is not None and session not in long_ids:
                v = visits.get(session)
                if v is not None:
                    v.values.add(value)
        if name is not None:
            _long_visit_values(session_window.annotate(_v=expression(dimension)), visits, long_ids, name)
    _add_visits(query, visits, None, tallies)
    return tallies


def _microseconds(delta) -> int:
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def _session_value(v: _Visit, dimension: Dimension) -> str:
    return v.entry if dimension.name == "entry_page" else v.exit


def _trim_long_visits(query, window, visits, session_ids):
    """Recount, event by event, the rare visits whose events go past VISIT_WINDOW."""
    event_filters = query.event_filters
    qs = _with_filter_aliases(window.filter(session__in=session_ids), event_filters)
    rows = list(qs.values_list("session", "occurred_at", "kind").order_by())
    matched_rows = set()
    if event_filters:
        matched_rows = set(qs.filter(match_q(event_filters)).values_list("session", "occurred_at", "id").order_by())
    for sid in session_ids:
        v = visits[sid]
        v.last, v.page_views, v.others = v.first, 0, 0
    for sid, occurred_at, kind in rows:
        v = visits[sid]
        if occurred_at >= v.first + VISIT_WINDOW:
            continue
        v.last = max(v.last, occurred_at)
        if kind == Kind.PAGEVIEW:
            v.page_views += 1
        else:
            v.others += 1
    if event_filters:
        for sid in session_ids:
            visits[sid].matched = False
        for sid, occurred_at, _ in matched_rows:
            v = visits[sid]
            if occurred_at < v.first + VISIT_WINDOW:
                v.matched = True


def _entry_and_exit(window, visits):
    """Entry page: the path of a visit's first page view; exit page: of its last one (within the window)."""
    rows = window.filter(kind=Kind.PAGEVIEW).values_list("session", "occurred_at", "id", "path").order_by()
    firsts, lasts = {}, {}
    for sid, occurred_at, pk, path in rows:
        v = visits.get(sid)
        if v is None or occurred_at >= v.first + VISIT_WINDOW:
            continue
        key = (occurred_at, pk)
        if sid not in firsts or key < firsts[sid][0]:
            firsts[sid] = (key, path)
        if sid not in lasts or key > lasts[sid][0]:
            lasts[sid] = (key, path)
    for sid, v in visits.items():
        v.entry = firsts[sid][1] if sid in firsts else ""
        v.exit = lasts[sid][1] if sid in lasts else ""


def scan_bucket_in_database(query: Query, start: datetime, end: datetime, dimensions: list) -> dict:
    """``scan_bucket``'s tallies, grouped in the database (``storage.can_build_in_database``):
    one statement measuring the visits, one grouping the events of every dimension's values at
    once (counts, visitor ids, visit ids), one for the revenue; numpy turns each group's ids
    into a distinct set, then a sketch (``VisitorSketch.of_distinct``) or the visits' sums."""
    event_dims = [d for d in dimensions if d.scope != "session"]
    n = len(event_dims)
    values = {f"_v{i}": expression(d) for i, d in enumerate(event_dims)}

    def key(row):
        for i in range(n):
            if row[i] is not None:
                return None, (event_dims[i].name, row[i])
        return None, ALL

    window = Event.objects.filter(site_id=query.site_id, occurred_at__gte=start - SESSION_GAP, occurred_at__lt=end + VISIT_WINDOW)
    sessions = window.filter(session__isnull=False).values("session").annotate(first=Min("occurred_at"))
    sessions_sql, sessions_params = sessions.filter(first__gte=start, first__lt=end).order_by().query.sql_with_params()
    columns = ("session", "occurred_at", "id", "kind", "path", "visitor", "currency", "price", "quantity", *values)
    window_sql, window_params = window.annotate(**values).values_list(*columns).order_by().query.sql_with_params()
    visits, grouped, money = storage.bucket_rows(
        sessions_sql, sessions_params, window_sql, window_params, n, (start, end), VISIT_WINDOW,
        (Kind.PAGEVIEW, Kind.CUSTOM, Kind.PURCHASE),
    )  # fmt: skip
    ids = np.array([v[0] for v in visits], dtype=np.int64)  # ordered by the statement
    page_views = np.array([v[1] for v in visits], dtype=np.int64)
    bounces = ((page_views == 1) & (np.array([v[2] for v in visits], dtype=np.int64) == 0)).astype(np.int64)
    durations = np.array([v[3] for v in visits], dtype=np.int64)
    tallies = defaultdict(Tally)
    for row in grouped:
        pv, ev, pu, visitors, buyers, members = row[n:]
        if not (pv or ev or members):  # only events outside the bucket, of no visit in it
            continue
        t = tallies[key(row)]
        t.page_views, t.events, t.purchases = pv, ev, pu
        if visitors is not None:
            t.visitors = VisitorSketch.of_distinct(_distinct_ids(visitors))
        if buyers is not None:
            t.buyers = VisitorSketch.of_distinct(_distinct_ids(buyers))
        if members is not None:
            members = np.searchsorted(ids, _distinct_ids(members))
            t.visits = len(members)
            t.bounces = int(bounces[members].sum())
            t.duration_us = int(durations[members].sum())
            t.visit_page_views = int(page_views[members].sum())
    for row in money:
        currency, revenue, purchases = row[n:]
        t = tallies[key(row)]
        t.revenue[currency] = int(revenue or 0)
        t.orders[currency] = purchases
    for dimension in dimensions:
        if dimension.scope == "session":
            column = 4 if dimension.name == "entry_page" else 5
            for i, v in enumerate(visits):
                t = tallies[None, (dimension.name, v[column] or "")]
                t.visits += 1
                t.bounces += int(bounces[i])
                t.duration_us += int(durations[i])
                t.visit_page_views += int(page_views[i])
    return tallies


def _distinct_ids(data: bytes) -> np.ndarray:
    """The distinct ids of int8send bytes, ascending (np.unique costs more for the many small groups)."""
    ids = np.frombuffer(data, dtype=">i8").astype(np.int64)
    ids.sort()
    return ids[np.append(True, ids[1:] != ids[:-1])] if len(ids) > 1 else ids
