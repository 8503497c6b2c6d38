"""Rollups: the tallies of closed time buckets, so a query reads O(buckets) rows.

Buckets tile each site's timeline in its timezone: local days, and the local hours of the
days not closed yet and of the last ``HOUR_DAYS`` days (beside their day buckets; a query
reads a day from one or the other, ``usable_buckets``). A bucket [start, end) is *closed*
once ``now ≥ end + VISIT_WINDOW + GRACE``: no visit starting in it can change after that
except through late events. Hours are also rolled up *provisionally* a minute after they
end: their event metrics are final then, so queries without visit metrics read raw events
only for the current hour.

Building: ``build_bucket`` groups the bucket's events per (dimension, value) in the database
(``scan.scan_bucket``; PostgreSQL) or with the raw-event engine (SQLite) and stores one
``Rollup`` row per (dimension, value); both give the raw answer, which the exactness tests
check against brute force. Rolled dimensions: every registry dimension, ``metadata.<key>`` for
up to ``MAX_METADATA_KEYS`` keys seen in the bucket, and the pairs in ``PAIRS``. ``refresh`` is
the timer's work (``manage.py rollup``, e.g. every minute): drop buckets with late events, then
build every due bucket.

Reading: ``plan`` says which rollup rows answer a query, ``usable_buckets`` which buckets
can, and ``read`` merges their rows into the tallies ``engine.collect`` scanned raw for the
rest of the range.

Late events (a backfilled timestamp in a rolled bucket): each bucket records the highest
settled event id when it was built (``watermark``); an event in its span (or close enough
to change its visits) with a higher id makes it stale. Queries treat stale buckets as raw at
once; ``check_late`` drops them so they are rebuilt, and advances ``RollupCursor`` so each
check only reads events stored since the last one. Both ids are settled
(``storage.settled_event_id``), so no committed event is ever both uncounted and below them.
"""

import bisect
import json
import logging
import multiprocessing
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from datetime import date, datetime, time, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo

from django.db import connections, transaction
from django.db.models import Min, Q, Sum
from django.utils import timezone as djtz

from accounts.models import Site
from events.data_rights import lock_site
from events.models import Event, Kind
from events.sessions import SESSION_GAP
from infinity.progress import Progress

from . import buckets, storage
from .models import RolledBucket, Rollup, RollupCursor
from .query import (
    DIMENSIONS,
    METADATA_KEY,
    METRICS,
    PAIR_SEPARATOR,
    SESSION_METRICS,
    VISIT_WINDOW,
    Dimension,
    Query,
    parse_dimension,
)
from .scan import ALL, scan_bucket
from .sketch import VisitorSketch
from .tally import Tally, merge_into

logger = logging.getLogger("analytics.rollups")

GRACE = timedelta(minutes=1)
# A closed day keeps its hours beside its day bucket while it is one of the last HOUR_DAYS local
# days before today: an hours=N window (N ≤ 72) or its comparison starts partway through one of
# them, and would otherwise read that day's part raw.
HOUR_DAYS = 3
MAX_METADATA_KEYS = 20
MAX_VALUES_PER_DIMENSION = 5000  # a dimension with more values in one bucket is left to raw scans
# A pair's values are combinations of two dimensions' (21 sources x 500 pages made ~10,500 a day
# at 10M generated events), so pairs get a higher cap before they are left to raw scans.
MAX_VALUES_PER_PAIR = 20_000
SETTLE_TIMEOUT = 5.0  # seconds to wait for open event-writing transactions (settled_event_id)
# A filter on the first dimension with a breakdown by the second reads rollups: the dashboard's
# Sources row click (every default report by source) and its country pairs.
PAIRS = [
    ("country", "source"),
    ("country", "page"),
    ("event_name", "metadata.*"),
    *[("source", b) for b in ("page", "country", "browser", "event_name", "currency")],
]
UTC = ZoneInfo("UTC")
_ADDITIVE = {"page_views": "page_views", "events": "events", "purchases": "purchases", "visits": "visits"}


def pair_dimension(a: Dimension, b: Dimension) -> Dimension:
    return Dimension(f"{a.name}|{b.name}", None, parts=(a, b))


# --- building -------------------------------------------------------------------------


def _bucket_query(site: Site) -> Query:
    today = date.today()
    return Query(site_id=site.pk, start_date=today, end_date=today, metrics=tuple(METRICS), timezone=site.timezone)


def _metadata_keys(site: Site, start: datetime, end: datetime) -> list[str]:
    rows = Event.objects.filter(site=site, occurred_at__gte=start, occurred_at__lt=end, kind__in=[Kind.CUSTOM, Kind.PURCHASE])
    return [k for k in storage.metadata_keys(rows) if METADATA_KEY.fullmatch(k)][:MAX_METADATA_KEYS]


def rolled_dimensions(metadata_keys) -> list[Dimension]:
    dims = list(DIMENSIONS.values())
    metadata = [parse_dimension(f"metadata.{key}", "breakdown") for key in metadata_keys]
    dims += metadata
    for a, b in PAIRS:
        if b == "metadata.*":
            dims += [pair_dimension(DIMENSIONS[a], m) for m in metadata]
        else:
            dims.append(pair_dimension(DIMENSIONS[a], DIMENSIONS[b]))
    return dims


def _reach(site: Site, start: datetime, end: datetime):
    """The events a bucket's build reads: those that can change its visits (as in ``_late_buckets``)."""
    return Event.objects.filter(site=site, occurred_at__gte=start - SESSION_GAP, occurred_at__lt=end + VISIT_WINDOW)


def build_bucket(site: Site, grain: str, start: datetime, end: datetime, *, final: bool = True) -> RolledBucket | None:
    """Roll up [start, end) of ``site``: one row per (dimension, value) plus the totals row.

    None, leaving the bucket to the next run, when events it read were deleted meanwhile (a
    visitor's erasure): the deletion dropped the buckets it touched, and this one was scanned
    before. The count of events in reach, before the scan and again under the site's lock
    (``events.data_rights.lock_site``, which the deletion holds too), tells; late events added meanwhile change it
    as well, and those would have made the bucket stale anyway."""
    watermark = storage.settled_event_id(SETTLE_TIMEOUT)
    if watermark is None:  # an event transaction stayed open: the last settled id is safe too
        watermark = RollupCursor.objects.filter(pk=1).values_list("last_id", flat=True).first() or 0
    scanned = _reach(site, start, end).count()
    dims = rolled_dimensions(_metadata_keys(site, start, end))
    if Event.objects.filter(site=site, occurred_at__gte=start, occurred_at__lt=end).exists():
        tallies = scan_bucket(_bucket_query(site), start, end, dims)
    else:
        tallies = {}  # nothing happened: an empty bucket (every dimension rolled, no rows)
    per_dim = defaultdict(int)
    for _, value in tallies:
        if value is not ALL:
            per_dim[value[0]] += 1
    kept = {d.name for d in dims if per_dim[d.name] <= (MAX_VALUES_PER_PAIR if d.parts else MAX_VALUES_PER_DIMENSION)}
    rows = []
    for (_, value), t in tallies.items():
        if value is ALL:
            dimension, text = "", ""
        elif value[0] in kept:
            dimension, text = value
        else:
            continue
        rows.append(
            (
                site.pk,
                grain,
                start,
                dimension,
                text,
                t.page_views,
                t.events,
                t.purchases,
                json.dumps(t.revenue),
                json.dumps(t.orders),
                t.visitors.to_bytes(),
                t.visitors.count(),
                t.buyers.to_bytes(),
                t.buyers.count(),
                t.visits,
                t.bounces,
                t.duration_us,
                t.visit_page_views,
            )
        )  # fmt: skip  (storage.ROLLUP_COLUMNS)
    with transaction.atomic():
        lock_site(site.pk)
        if _reach(site, start, end).count() != scanned:
            logger.info("%s %s of site %s changed while it was built; left to the next run", grain, start, site.pk)
            return None
        _drop(site, RolledBucket.objects.filter(site=site, grain=grain, start=start))
        storage.insert_rollups(rows)
        bucket = RolledBucket.objects.create(
            site=site,
            grain=grain,
            start=start,
            end=end,
            timezone=site.timezone,
            dimensions=sorted(kept),
            watermark=watermark,
            final=final,
        )
    return bucket


def _local_midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time.min, tzinfo=tz).astimezone(UTC)


def due_buckets(site: Site, now: datetime) -> list:
    """Closed buckets of ``site`` that are not rolled up, newest first: (grain, start, end, final)."""
    first = Event.objects.filter(site=site).aggregate(t=Min("occurred_at"))["t"]
    if first is None:
        return []
    tz = ZoneInfo(site.timezone)
    rolled = RolledBucket.objects.filter(site=site, timezone=site.timezone).values_list("grain", "start", "final")
    have = {(g, s) for g, s, final in rolled if final}
    provisional = {(g, s) for g, s, final in rolled if not final}
    due = []
    day = first.astimezone(tz).date()
    today = now.astimezone(tz).date()
    while day <= today:
        lo, hi = _local_midnight(day, tz), _local_midnight(day + timedelta(days=1), tz)
        closed = hi + VISIT_WINDOW + GRACE <= now
        if closed and ("day", lo) not in have:
            due.append(("day", lo, hi, True))
        if not closed or day >= today - timedelta(days=HOUR_DAYS):
            # an open day's ended local hours, provisional until their visits are final; a recent closed day's too
            t = lo
            while t < hi:
                nxt = min(hi, _next_local_hour(t, tz))
                final = nxt + VISIT_WINDOW + GRACE <= now
                if nxt + GRACE <= now and ("hour", t) not in have and (final or ("hour", t) not in provisional):
                    due.append(("hour", t, nxt, final))
                t = nxt
        day += timedelta(days=1)
    return due[::-1]


def _next_local_hour(t: datetime, tz: ZoneInfo) -> datetime:
    local = t.astimezone(tz)
    step = t + timedelta(hours=1) - timedelta(minutes=local.minute, seconds=local.second, microseconds=local.microsecond)
    if local.minute or local.second or local.microsecond:
        return step
    return t + timedelta(hours=1)


def build_due(site: Site, now: datetime, *, jobs: int = 1, progress: Progress | None = None) -> int:
    due = due_buckets(site, now)
    progress = progress or Progress("rollups", enabled=False)
    progress.add_total(len(due))
    if jobs > 1 and len(due) > 1 and storage.can_build_in_processes():
        return _build_in_processes(site, due, jobs, progress)
    for grain, start, end, final in due:
        _build_and_replace(site, grain, start, end, final)
        progress.update()
    return len(due)


def _build_in_processes(site: Site, due: list, jobs: int, progress: Progress) -> int:
    """Build ``due`` buckets in ``jobs`` forked processes, each with its own connection: the
    database groups while Python sketches, so processes keep both busy; buckets are independent
    (each is replaced in its own transaction)."""
    connections.close_all()  # a connection must not be shared across fork; children open their own
    with ProcessPoolExecutor(min(jobs, len(due)), mp_context=multiprocessing.get_context("fork")) as pool:
        for _ in pool.map(_build_one, [(site, *bucket) for bucket in due]):
            progress.update()  # re-raises a child's error
    return len(due)


def _build_one(task) -> None:
    site, grain, start, end, final = task
    try:
        _build_and_replace(site, grain, start, end, final)
    finally:
        connections.close_all()


def _build_and_replace(site, grain, start, end, final):
    build_bucket(site, grain, start, end, final=final)


def drop_old_hours(site: Site, now: datetime) -> None:
    """Drop the hours of the days before the last ``HOUR_DAYS``: their day buckets answer for them."""
    tz = ZoneInfo(site.timezone)
    keep_from = _local_midnight(now.astimezone(tz).date() - timedelta(days=HOUR_DAYS), tz)
    _drop(site, RolledBucket.objects.filter(site=site, grain="hour", end__lte=keep_from))


def _drop(site, rolled) -> None:
    """Delete the ``rolled`` buckets and their rows, named by their dimensions: the rows' index
    leads with (site, dimension), so a delete by start alone would read every row of the site."""
    rolled = list(rolled)
    for b in rolled:
        Rollup.objects.filter(site=site, dimension__in=["", *b.dimensions], grain=b.grain, start=b.start).delete()
    if rolled:
        RolledBucket.objects.filter(pk__in=[b.pk for b in rolled]).delete()


def _late_buckets(site_id: int | None, after_id: int, rolled: list, *, limit: int | None = 10_000) -> set:
    """Rolled buckets that events with id > after_id fall into (or whose visits they can touch).

    An event at t can change the visits that started in [t − VISIT_WINDOW, t + SESSION_GAP].
    Past ``limit`` late events every bucket counts as stale.
    """
    if not rolled:
        return set()
    qs = Event.objects.filter(id__gt=after_id)
    if site_id is not None:
        qs = qs.filter(site_id=site_id)
    lo, hi = min(b.start for b in rolled), max(b.end for b in rolled)
    after_id = max(after_id, min(b.watermark for b in rolled))
    qs = qs.filter(id__gt=after_id, occurred_at__gte=lo - SESSION_GAP, occurred_at__lt=hi + VISIT_WINDOW)
    qs = qs.values_list("site_id", "occurred_at", "id")
    rows = list(qs.order_by()[: limit + 1]) if limit is not None else qs.order_by().iterator(chunk_size=5000)
    if limit is not None and len(rows) > limit:
        return {b.pk for b in rolled}
    # per grain: a recent day's hours overlap its day bucket, and the walk back below needs buckets
    # that do not overlap
    by_grain = defaultdict(list)
    for b in sorted(rolled, key=lambda b: b.start):
        by_grain[(b.site_id, b.grain)].append(b)
    starts = {key: [b.start for b in bs] for key, bs in by_grain.items()}
    stale = set()
    for site, t, pk in rows:
        for grain in ("day", "hour"):
            bs = by_grain.get((site, grain), [])
            i = bisect.bisect_right(starts.get((site, grain), []), t + SESSION_GAP)
            while i > 0 and bs[i - 1].end + VISIT_WINDOW > t:
                i -= 1
                b = bs[i]
                reach = (b.start - SESSION_GAP, b.end + VISIT_WINDOW) if b.final else (b.start, b.end)
                if reach[0] <= t < reach[1] and pk > b.watermark:  # not there when the bucket was built
                    stale.add(b.pk)
    return stale


def forget_deleted(sender=None, *, site_id: int, spans, **kwargs) -> int:
    """Drop the rolled buckets of ``site_id`` that deleted events were counted in (``spans``:
    the [start, end) UTC ranges that held them; None: every bucket of the site), in the deleting
    transaction (``events.signals.events_deleted``). Queries read those ranges raw at once; the
    timer builds them again. Returns the buckets dropped."""
    rolled = RolledBucket.objects.filter(site_id=site_id)
    if spans is None:
        Rollup.objects.filter(site_id=site_id).delete()
        return rolled.delete()[0]
    if not spans:
        return 0
    lo, hi = min(a for a, _ in spans) - VISIT_WINDOW, max(z for _, z in spans) + SESSION_GAP
    touched = [b for b in rolled.filter(start__lt=hi, end__gt=lo)
               if any(a < b.end + VISIT_WINDOW and b.start - SESSION_GAP < z for a, z in spans)]  # fmt: skip
    for b in touched:
        Rollup.objects.filter(site_id=site_id, grain=b.grain, start=b.start).delete()
    RolledBucket.objects.filter(pk__in=[b.pk for b in touched]).delete()
    return len(touched)


def check_late(now: datetime | None = None, *, verbosity: int = 0) -> None:
    """Drop the rolled buckets that events stored since the last check fall into; advance the cursor."""
    now = now or djtz.now()
    top = storage.settled_event_id(SETTLE_TIMEOUT)  # first: the events read below include every id up to it
    if top is None:
        logger.warning("late-event check skipped: a transaction writing events stayed open > %s s", SETTLE_TIMEOUT)
        return
    cursor, created = RollupCursor.objects.get_or_create(pk=1, defaults={"last_id": top, "checked_at": now})
    if created:
        return
    after = cursor.last_id
    if top > after:
        stale = _late_buckets(None, after, list(RolledBucket.objects.all()), limit=None)
        for b in RolledBucket.objects.filter(pk__in=stale):
            if verbosity:
                print(f"late events: rebuilding {b.grain} {b.start:%Y-%m-%d %H:%M} of site {b.site_id}")
            Rollup.objects.filter(site_id=b.site_id, grain=b.grain, start=b.start).delete()
            b.delete()
    RollupCursor.objects.filter(pk=1).update(last_id=top, checked_at=now)


def refresh(*, now: datetime | None = None, site: Site | None = None, verbosity: int = 0, jobs: int = 1,
            progress: Progress | None = None) -> int:  # fmt: skip
    """Rebuild buckets holding late events, then roll up every closed bucket (in ``jobs``
    processes on PostgreSQL), counting each in ``progress``. Returns buckets built."""
    now = now or djtz.now()
    check_late(now, verbosity=verbosity)
    built = 0
    for s in [site] if site is not None else Site.objects.all():
        stale_tz = RolledBucket.objects.filter(site=s).exclude(timezone=s.timezone)
        Rollup.objects.filter(site=s, start__in=stale_tz.values("start")).delete()
        stale_tz.delete()
        n = build_due(s, now, jobs=jobs, progress=progress)
        drop_old_hours(s, now)
        if verbosity and n:
            print(f"site {s.pk} ({s.domain}): {n} buckets rolled up")
        built += n
    if built >= 10:
        storage.refresh_rollup_statistics()
    return built


def rebuild(*, site: Site | None = None, now: datetime | None = None, verbosity: int = 0, jobs: int = 1,
            progress: Progress | None = None) -> int:  # fmt: skip
    """Drop and rebuild every rollup (of one site or all)."""
    sites = [site] if site is not None else list(Site.objects.all())
    for s in sites:
        Rollup.objects.filter(site=s).delete()
        RolledBucket.objects.filter(site=s).delete()
    return sum(refresh(now=now, site=s, verbosity=verbosity, jobs=jobs, progress=progress) for s in sites)


# --- reading ----------------------------------------------------------------------------


class Plan(NamedTuple):
    """Which rollup rows answer a query: the totals are the rows of (total_dimension,
    total_value); breakdown values are the rows of value_dimension whose value starts with
    prefix (a pair's first part, when the filter and the breakdown differ)."""

    total_dimension: str
    total_value: str
    value_dimension: str | None
    prefix: str


def plan(query: Query) -> Plan | None:
    """How rollups can answer ``query``; None when only raw events can (rollups hold no
    conjunction of filters and no ``!=`` or ``~``)."""
    filters = query.filters
    if len(filters) > 1 or any(f.op != "==" for f in filters):
        return None
    b = query.breakdown
    if not filters:
        return Plan("", "", b.name if b else None, "")
    f = filters[0]
    if b is None or b.name == f.dimension.name:
        return Plan(f.dimension.name, f.value, f.dimension.name if b else None, "")
    return Plan(f.dimension.name, f.value, f"{f.dimension.name}|{b.name}", f.value + PAIR_SEPARATOR)


def usable_buckets(query: Query, plan: Plan, lo: datetime, hi: datetime) -> list:
    """The rolled buckets inside [lo, hi) that hold the plan's dimensions, fit one series
    bucket each, overlap no other chosen bucket, and have no late events; by start."""
    needed = {plan.total_dimension, plan.value_dimension} - {"", None}
    rolled = RolledBucket.objects.filter(site_id=query.site_id, start__gte=lo, start__lt=hi, end__lte=hi)
    tz, grain = query.tz, query.interval
    visits_wanted = bool(set(query.metrics) & SESSION_METRICS)
    chosen = []
    days = []  # (start, end) of the chosen days, in order: hours inside them are skipped
    hours_end = lo  # an hour of another timezone overlapping the chosen hours is skipped
    for b in sorted(rolled, key=lambda b: (b.grain != "day", b.start)):
        if (visits_wanted and not b.final) or not needed <= set(b.dimensions):
            continue
        # local days and hours of the query's own timezone always fit its series buckets (except days in hours)
        fits = b.timezone == query.timezone and (b.grain == "hour" or grain != "hour")
        if grain and not fits:
            if buckets.bucket_of(b.start, grain, tz) != buckets.bucket_of(b.end - timedelta(microseconds=1), grain, tz):
                continue
        if b.grain == "day":
            if days and days[-1][1] > b.start:  # days of an earlier site timezone
                continue
            days.append((b.start, b.end))
        else:
            i = bisect.bisect_right(days, (b.start, b.end))
            if (i and days[i - 1][1] > b.start) or (i < len(days) and days[i][0] < b.end) or b.start < hours_end:
                continue
            hours_end = max(hours_end, b.end)
        chosen.append(b)
    if chosen:
        cursor = RollupCursor.objects.filter(pk=1).values_list("last_id", flat=True).first() or 0
        stale = _late_buckets(query.site_id, cursor, chosen)
        chosen = [b for b in chosen if b.pk not in stale]
    return sorted(chosen, key=lambda b: b.start)


def _tally(row) -> Tally:
    """A Tally from a rollup row holding only the columns the query needs (``_fields``)."""
    t = Tally(
        page_views=row["page_views"], events=row["events"], purchases=row["purchases"],
        visits=row["visits"], bounces=row["bounces"], duration_us=row["duration_us"], visit_page_views=row["visit_page_views"],
    )  # fmt: skip
    if "revenue" in row:
        t.revenue, t.orders = dict(row["revenue"]), dict(row["orders"])
    if "visitors" in row:
        t.visitors = VisitorSketch.lazy(row["visitors"], row["visitor_count"])
    if "buyers" in row:
        t.buyers = VisitorSketch.lazy(row["buyers"], row["buyer_count"])
    return t


_COUNT_FIELDS = ["grain", "start", "value", "page_views", "events", "purchases", "visits", "bounces", "duration_us",
                 "visit_page_views"]  # fmt: skip


def _fields(query: Query) -> list[str]:
    """Skip the columns no requested metric reads: sketches and JSON cost the most to fetch and merge."""
    wanted = set(query.metrics)
    fields = list(_COUNT_FIELDS)
    if wanted & {"revenue", "average_order_value"}:
        fields += ["revenue", "orders"]
    if wanted & {"unique_visitors", "conversion_rate"}:
        fields += ["visitors", "visitor_count"]
    if "conversion_rate" in wanted:
        fields += ["buyers", "buyer_count"]
    return fields


def read(query: Query, plan: Plan, chosen: list, tallies: dict) -> None:
    """Merge the rollup rows of the ``chosen`` buckets into ``tallies`` (which already hold
    the raw scans of the rest of the range, keyed (series bucket or None, value or ALL))."""
    tz, grain = query.tz, query.interval
    by_start = {(b.grain, b.start): b for b in chosen}
    fields = _fields(query)

    # by each grain's own starts: a recent day's hours lie inside the day's span beside its day bucket
    spans = Q()
    for g in {b.grain for b in chosen}:
        spans |= Q(grain=g, start__in=[b.start for b in chosen if b.grain == g])

    def rows(dimension, value=None, values=None, prefix=""):
        qs = Rollup.objects.filter(spans, site_id=query.site_id, dimension=dimension)
        if value is not None:
            qs = qs.filter(value=value)
        elif values is not None:
            qs = qs.filter(value__in=[prefix + v for v in values])
        elif prefix:
            qs = qs.filter(value__startswith=prefix)
        for row in qs.values(*fields).order_by():
            # startswith is LIKE, which ignores ASCII case on SQLite: the prefix is checked exactly here
            if (row["grain"], row["start"]) in by_start and row["value"].startswith(prefix):
                yield row

    def add(row, value):
        merge_into(tallies, {(buckets.bucket_of(row["start"], grain, tz) if grain else None, value): _tally(row)})

    for row in rows(plan.total_dimension, value=plan.total_value):
        add(row, ALL)
    if plan.value_dimension is None:
        return
    if plan.value_dimension == plan.total_dimension:
        for row in rows(plan.total_dimension, value=plan.total_value):
            add(row, plan.total_value)
        return
    wanted = _top_values(query, plan, chosen, tallies)
    for row in rows(plan.value_dimension, values=wanted, prefix=plan.prefix):
        add(row, row["value"][len(plan.prefix) :])


def _top_values(query: Query, plan: Plan, chosen: list, raw: dict) -> list | None:
    """With an additive first metric, the values that can make the top ``limit`` (None: all)."""
    column = _ADDITIVE.get(query.metrics[0])
    if column is None:
        return None
    totals = defaultdict(int)
    prefix = plan.prefix
    for grain in {b.grain for b in chosen}:
        starts = [b.start for b in chosen if b.grain == grain]
        qs = Rollup.objects.filter(site_id=query.site_id, dimension=plan.value_dimension, grain=grain, start__in=starts)
        if prefix:
            qs = qs.filter(value__startswith=prefix)
        for value, n in qs.values("value").annotate(n=Sum(column)).values_list("value", "n").order_by():
            if value.startswith(prefix):  # exactly, as in read's rows()
                totals[value[len(prefix) :]] += n or 0
    for (_, value), t in raw.items():
        if value is not ALL:
            totals[value] += getattr(t, column)
    ranked = sorted((v for v, n in totals.items() if n > 0), key=lambda v: (-totals[v], v))
    if len(ranked) < query.limit:
        return None  # rows with a zero first metric may be shown too: read them all
    return ranked[: query.limit]
