"""The query layer: URL parameters → one immutable ``Query``; no SQL here.

1. ``parse_query`` checks every parameter against the closed registries (``METRICS``,
   ``DIMENSIONS``, ``metadata.<key>``) and the bounds of dates, interval, filters, limit and
   timezone, and raises ``QueryError`` naming the bad parameter.
2. ``analytics.engine.run_query`` answers a ``Query``: tallies of rolled-up buckets
   (``rollups``) and of raw events for the rest of the range (``scan``), merged, then turned
   into metrics. No user string reaches SQL: columns come from the registries, filter values
   and metadata keys travel as parameters.

Semantics (``docs/analytics.md`` is the published version):
- Dates are inclusive calendar days in the query's timezone (default: the site's);
  events count by their own timestamp (``occurred_at``), not by arrival.
- Event metrics count the events in the range that match every filter.
- A visit (session) is the set of events sharing a non-null ``session`` id. It belongs to
  the bucket of its first event; it is measured over its events during ``VISIT_WINDOW``
  after that first event; it matches the filters when one of those events matches all
  event filters (and its entry/exit page matches the session filters).
"""

import re
import string
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo, available_timezones

from django.utils import timezone

from accounts.models import Site

DEFAULT_DAYS = 30
MAX_RANGE_DAYS = 5 * 366
MAX_HOURLY_DAYS = 31
MIN_YEAR, MAX_YEAR = 1971, 9000  # of start_date and end_date
_YEARS_MESSAGE = f"Dates must lie between {MIN_YEAR} and {MAX_YEAR}"
DEFAULT_LIMIT = 10
MAX_LIMIT = 1000
MAX_FILTERS = 10
PAIR_SEPARATOR = "\x1f"
VISIT_WINDOW = timedelta(hours=2)
REFERENCE_PARAMS = {"start_date", "end_date", "metrics"}
COMPARISONS = ("previous_period", "year_over_year")
KNOWN_PARAMS = REFERENCE_PARAMS | {"interval", "breakdown", "limit", "filters", "timezone", "compare", "hours"}
MAX_WINDOW_HOURS = 72


class QueryError(ValueError):
    def __init__(self, param: str, message: str):
        super().__init__(message)
        self.param = param
        self.message = message


@dataclass(frozen=True)
class Metric:
    name: str
    scope: str  # "event" (counted over matching events), "session" (over matching visits) or "now" (the last minutes)
    description: str


METRICS = {
    m.name: m
    for m in [
        Metric("page_views", "event", "Page views (tracker events of kind pageview)."),
        Metric("unique_visitors", "event", "Distinct non-null visitor ids among the matching events."),
        Metric("events", "event", "Custom and purchase events (not page views)."),
        Metric("visits", "session", "Visits (sessions) whose first event is in the range."),
        Metric("bounce_rate", "session", "Percentage of visits with exactly one page view and no other event."),
        Metric("visit_duration", "session", "Mean seconds between a visit's first and last event."),
        Metric("views_per_visit", "session", "Page views of the visits divided by visits."),
        Metric("purchases", "event", "Purchase events."),
        Metric("revenue", "event", "Sum of price × quantity per currency, in minor units."),
        Metric("average_order_value", "event", "Revenue ÷ purchases per currency, in minor units (halves up)."),
        Metric("conversion_rate", "event", "Percentage of unique visitors with at least one purchase."),
        Metric(
            "current_visitors",
            "now",
            "Distinct visitors with a matching event in the last 5 minutes, whatever the dates "
            "(without interval, breakdown and compare).",
        ),
    ]
}
CURRENT_WINDOW = timedelta(minutes=5)
SESSION_METRICS = {name for name, m in METRICS.items() if m.scope == "session"}


_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def ascii_lower(text: str) -> str:
    return text.translate(_ASCII_LOWER)


@dataclass(frozen=True)
class Dimension:
    name: str
    column: str | None  # an Event column; None for metadata and session dimensions
    scope: str = "event"  # "session": a property of the visit (entry/exit page)
    metadata_key: str | None = None
    parts: tuple = ()  # rollup pairs: the values of several dimensions joined by PAIR_SEPARATOR


DIMENSIONS = {
    d.name: d
    for d in [
        Dimension("page", "path"),
        Dimension("hostname", "hostname"),
        Dimension("entry_page", None, "session"),
        Dimension("exit_page", None, "session"),
        Dimension("source", "source"),
        Dimension("referrer", "referrer"),
        Dimension("utm_source", "utm_source"),
        Dimension("utm_medium", "utm_medium"),
        Dimension("utm_campaign", "utm_campaign"),
        Dimension("utm_term", "utm_term"),
        Dimension("utm_content", "utm_content"),
        Dimension("country", "country"),
        Dimension("browser", "browser"),
        Dimension("os", "os"),
        Dimension("device", "device"),
        Dimension("event_name", "name"),
        Dimension("product_name", "product_name"),
        Dimension("currency", "currency"),
    ]
}
METADATA_PREFIX = "metadata."
_KEY_CHARACTER = r"[^=!~;,\\\x00]"  # of a metadata key in parameters; no NUL: PostgreSQL text cannot hold it
METADATA_KEY = re.compile(_KEY_CHARACTER + "{1,100}")


@dataclass(frozen=True)
class Filter:
    dimension: Dimension
    op: str
    value: str

    def matches(self, actual: str) -> bool:
        """The same test the SQL makes, for values computed in Python (entry/exit page)."""
        if self.op == "==":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        return ascii_lower(self.value) in ascii_lower(actual)

    def __str__(self):
        escaped = self.value.replace("\\", "\\\\").replace(";", "\\;")
        return f"{self.dimension.name}{self.op}{escaped}"


@dataclass(frozen=True)
class Query:
    site_id: int
    start_date: date
    end_date: date
    metrics: tuple[str, ...]
    timezone: str
    interval: str | None = None
    breakdown: Dimension | None = None
    limit: int = DEFAULT_LIMIT
    filters: tuple[Filter, ...] = ()
    compare: str | None = None
    echo: bool = False  # reference-only requests keep the reference's exact response
    site_timezone: str = "UTC"
    now: datetime | None = None  # the instant current_visitors counts back from (default: the clock)
    window: tuple[datetime, datetime] | None = None  # with ``hours``: [now − hours, now) instead of whole days

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def utc_range(self) -> tuple[datetime, datetime]:
        """[start, end) in UTC: local midnight of start_date to local midnight after end_date (or the window)."""
        if self.window is not None:
            return self.window
        return local_day_range(self.start_date, self.end_date, self.tz)

    @property
    def event_filters(self) -> tuple[Filter, ...]:
        return tuple(f for f in self.filters if f.dimension.scope == "event")

    @property
    def session_filters(self) -> tuple[Filter, ...]:
        return tuple(f for f in self.filters if f.dimension.scope == "session")

    def comparison(self) -> "Query":
        """The period ``compare`` names, with the same metrics, filters and interval: the
        ``previous_period`` of as many days just before, or the same dates a ``year_over_year``
        earlier (29 February → 28 February)."""
        window = None
        if self.window is not None:  # the as long window just before
            lo, hi = self.window
            window = (lo - (hi - lo), lo)
            start, end = window[0].astimezone(self.tz).date(), (lo - timedelta(microseconds=1)).astimezone(self.tz).date()
        elif self.compare == "year_over_year":
            start, end = year_before(self.start_date), year_before(self.end_date)
        else:
            days = (self.end_date - self.start_date).days + 1
            start, end = self.start_date - timedelta(days=days), self.start_date - timedelta(days=1)
        return Query(
            site_id=self.site_id,
            start_date=start,
            end_date=end,
            metrics=self.metrics,
            timezone=self.timezone,
            interval=self.interval,
            filters=self.filters,
            site_timezone=self.site_timezone,
            window=window,
        )

    def normalized(self) -> dict:
        out = {
            "start_date": self.start_date.isoformat(),
            "end_date": self.end_date.isoformat(),
            "metrics": list(self.metrics),
            "timezone": self.timezone,
            "interval": self.interval,
            "breakdown": self.breakdown.name if self.breakdown else None,
            "limit": self.limit if self.breakdown else None,
            "filters": ";".join(str(f) for f in self.filters) or None,
            "compare": self.compare,
        }
        if self.window is not None:
            out["hours"] = round((self.window[1] - self.window[0]).total_seconds() / 3600)
        return out


def year_before(day: date) -> date:
    try:
        return day.replace(year=day.year - 1)
    except ValueError:  # 29 February
        return day.replace(year=day.year - 1, day=28)


def local_day_range(start: date, end: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    utc = ZoneInfo("UTC")
    lo = datetime.combine(start, time.min, tzinfo=tz).astimezone(utc)
    hi = datetime.combine(end + timedelta(days=1), time.min, tzinfo=tz).astimezone(utc)
    return lo, hi


_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_LIMIT = re.compile(r"[0-9]{1,4}")  # ASCII digits: str.isdigit() also takes '²' and '①', which int() refuses


@cache
def _timezones() -> frozenset:
    return frozenset(available_timezones())


def _parse_date(params, name):
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    try:
        if not _DATE.fullmatch(raw):  # fromisoformat also takes week dates (2024-W01-1)
            raise ValueError
        return date.fromisoformat(raw)
    except ValueError:
        raise QueryError(name, f"{name} must be an ISO 8601 date (YYYY-MM-DD), got {raw[:40]!r}") from None


def _parse_metrics(params):
    raw = params.get("metrics")
    if raw is None or not raw.strip():
        return ("page_views", "unique_visitors", "events")
    names = []
    for item in raw.split(","):
        name = item.strip()
        if name not in METRICS:
            raise QueryError("metrics", f"Unknown metric {name[:60]!r}; choose from {', '.join(METRICS)}")
        if name not in names:
            names.append(name)
    return tuple(names)


def parse_dimension(raw: str, param: str) -> Dimension:
    if raw in DIMENSIONS:
        return DIMENSIONS[raw]
    if raw.startswith(METADATA_PREFIX):
        key = raw[len(METADATA_PREFIX) :]
        if METADATA_KEY.fullmatch(key):
            return Dimension(raw, None, metadata_key=key)
        raise QueryError(param, "A metadata key must be 1 to 100 characters without = ! ~ ; , \\ or NUL")
    choices = ", ".join([*DIMENSIONS, "metadata.<key>"])
    raise QueryError(param, f"Unknown dimension {raw[:60]!r}; choose from {choices}")


def _split_unescaped(raw: str) -> list[str]:
    """Split on ';' not preceded by a backslash; '\\;' is a literal ';' and '\\\\' a backslash."""
    parts, current, chars = [], [], iter(raw)
    for ch in chars:
        if ch == "\\":
            nxt = next(chars, None)
            if nxt not in ("\\", ";"):
                raise QueryError("filters", "In filters, a backslash must escape ';' or another backslash")
            current.append(nxt)
        elif ch == ";":
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


_FILTER = re.compile(r"(?P<dim>[a-z_]+|metadata\." + _KEY_CHARACTER + r"{1,100}?)(?P<op>==|!=|~)(?P<value>.*)", re.DOTALL)


def _parse_filters(params) -> tuple[Filter, ...]:
    raw = params.get("filters")
    if raw is None or raw == "":
        return ()
    out = []
    # Operators and dimension names never contain ';' or '\', so unescaping first is safe.
    for part in _split_unescaped(raw):
        match = _FILTER.fullmatch(part)
        if not match:
            raise QueryError("filters", f"Cannot parse filter {part[:60]!r}; use <dimension><op><value> with op ==, != or ~")
        dimension = parse_dimension(match["dim"], "filters")
        if len(match["value"]) > 2000:
            raise QueryError("filters", "A filter value must be at most 2000 characters")
        if "\x00" in match["value"]:
            raise QueryError("filters", "A filter value cannot contain a NUL character")
        out.append(Filter(dimension, match["op"], match["value"]))
    if len(out) > MAX_FILTERS:
        raise QueryError("filters", f"At most {MAX_FILTERS} filters")
    return tuple(out)


def parse_query(params, *, site: Site, now: datetime | None = None) -> Query:
    for name in params:
        if name not in KNOWN_PARAMS:
            raise QueryError(name, f"Unknown parameter {name[:60]!r}; known: {', '.join(sorted(KNOWN_PARAMS))}")
    tz_name = params.get("timezone") or site.timezone
    if tz_name not in _timezones():
        raise QueryError("timezone", f"Unknown timezone {tz_name[:60]!r}; use an IANA name such as Europe/Berlin")
    tz = ZoneInfo(tz_name)
    today = (now or timezone.now()).astimezone(tz).date()
    start, end = _parse_date(params, "start_date"), _parse_date(params, "end_date")
    window = _parse_window(params, now, start, end)
    if window is not None:
        start, end = window[0].astimezone(tz).date(), today
    for name, value in (("start_date", start), ("end_date", end)):  # before any date arithmetic overflows
        if value is not None and not MIN_YEAR <= value.year <= MAX_YEAR:
            raise QueryError(name, _YEARS_MESSAGE)
    if end is None:
        end = today if start is None or start <= today else start + timedelta(days=DEFAULT_DAYS - 1)
    if start is None:
        start = end - timedelta(days=DEFAULT_DAYS - 1)
    if start > end:
        raise QueryError("start_date", "start_date must be on or before end_date")
    days = (end - start).days + 1
    if days > MAX_RANGE_DAYS:
        raise QueryError("start_date", f"The date range must be at most {MAX_RANGE_DAYS} days (5 years)")
    if start.year < MIN_YEAR or end.year > MAX_YEAR:  # a default end or start beyond the years
        raise QueryError("start_date", _YEARS_MESSAGE)

    interval = params.get("interval") or None
    if interval is not None and interval not in ("hour", "day", "week", "month"):
        raise QueryError("interval", f"Unknown interval {interval[:20]!r}; choose from hour, day, week, month")
    if interval == "hour" and days > MAX_HOURLY_DAYS:
        raise QueryError("interval", f"interval=hour allows a range of at most {MAX_HOURLY_DAYS} days")

    breakdown = parse_dimension(params["breakdown"], "breakdown") if params.get("breakdown") else None
    limit = DEFAULT_LIMIT
    if params.get("limit") not in (None, ""):
        raw = params["limit"]
        if not _LIMIT.fullmatch(raw) or not 1 <= int(raw) <= MAX_LIMIT:
            raise QueryError("limit", f"limit must be an integer from 1 to {MAX_LIMIT}")
        limit = int(raw)

    compare = params.get("compare") or None
    if compare is not None and compare not in COMPARISONS:
        raise QueryError("compare", f"compare must be one of {', '.join(COMPARISONS)}")

    metrics = _parse_metrics(params)
    filters = _parse_filters(params)
    uses_session_dimension = any(f.dimension.scope == "session" for f in filters) or (
        breakdown is not None and breakdown.scope == "session"
    )
    if window is not None and compare == "year_over_year":
        raise QueryError("compare", "With hours, compare can only be previous_period (the as many hours before)")
    if "current_visitors" in metrics and (interval or breakdown or compare):
        raise QueryError("metrics", "current_visitors is one number for now: ask it without interval, breakdown and compare")
    if uses_session_dimension:
        event_only = [m for m in metrics if m not in SESSION_METRICS]
        if event_only:
            raise QueryError(
                "metrics",
                f"entry_page and exit_page describe visits: use them only with {', '.join(sorted(SESSION_METRICS))} "
                f"(not {event_only[0]})",
            )
    return Query(
        site_id=site.pk,
        start_date=start,
        end_date=end,
        metrics=metrics,
        timezone=tz_name,
        interval=interval,
        breakdown=breakdown,
        limit=limit,
        filters=filters,
        compare=compare,
        echo=bool(set(params) - REFERENCE_PARAMS),
        site_timezone=site.timezone,
        now=now,
        window=window,
    )


def _parse_window(params, now, start, end) -> tuple[datetime, datetime] | None:
    """``hours=N``: the N hours up to now, in place of start_date and end_date."""
    raw = params.get("hours")
    if raw is None or raw == "":
        return None
    if start is not None or end is not None:
        raise QueryError("hours", "hours replaces start_date and end_date: give one or the other")
    if not _LIMIT.fullmatch(raw) or not 1 <= int(raw) <= MAX_WINDOW_HOURS:
        raise QueryError("hours", f"hours must be an integer from 1 to {MAX_WINDOW_HOURS}")
    hi = now or timezone.now()
    return hi - timedelta(hours=int(raw)), hi
