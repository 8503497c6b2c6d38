"""The dashboard's state, all of it in the URL: period, comparison, interval, graph metric,
filters and the tab of each report. ``DashboardState`` reads it once and answers two
questions: which API parameters a panel asks, and which URL a link leads to."""

import calendar
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from accounts.models import Site

from . import data

PERIODS = {  # URL value → label in the menu, keyboard shortcut
    "day": ("Today", "d"),
    "yesterday": ("Yesterday", "e"),
    "7d": ("Last 7 days", "w"),
    "30d": ("Last 30 days", "t"),
    "month": ("This month", "m"),
    "last_month": ("Last month", "p"),
    "12mo": ("Last 12 months", "l"),
    "all": ("All time", "a"),
}
DEFAULT_PERIOD = "30d"
COMPARES = {"previous_period": "Previous period", "year_over_year": "Year over year", "off": "No comparison"}
DEFAULT_COMPARE = "previous_period"
INTERVALS = ("hour", "day", "week", "month")
MAX_DAYS = 5 * 366  # the API's largest range
# The graph's metrics → (card label, graph label), in the order of the top stats cards.
GRAPH_METRICS = {
    "unique_visitors": ("Visitors", "Unique visitors"),
    "visits": ("Visits", "Visits"),
    "page_views": ("Pageviews", "Pageviews"),
    "views_per_visit": ("Views / visit", "Views per visit"),
    "bounce_rate": ("Bounce rate", "Bounce rate"),
    "visit_duration": ("Visit duration", "Visit duration (seconds)"),
    "events": ("Events", "Events"),
    "conversion_rate": ("Conversion", "Conversion rate"),
}
DEFAULT_METRIC = "unique_visitors"
# Parameters a link keeps; anything else in the URL is dropped from the links it makes.
KEPT = ("period", "date", "from", "to", "compare", "interval", "metric", "filters", "tab")


_READABLE = "/:,=~;!"  # left as they are in links: filters read as typed (filters=source==Google)


def _date(raw: str | None) -> date | None:
    try:
        return date.fromisoformat(raw) if raw and len(raw) == 10 else None
    except ValueError:
        return None


def _month_start(day: date, months_back: int = 0) -> date:
    index = day.year * 12 + day.month - 1 - months_back
    return date(index // 12, index % 12 + 1, 1)


def _month_end(day: date) -> date:
    return day.replace(day=calendar.monthrange(day.year, day.month)[1])


@dataclass(frozen=True)
class Range:
    start: date
    end: date
    label: str
    previous: dict | None  # URL changes for the ← arrow; None: no earlier period
    next: dict | None

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1


@dataclass(frozen=True)
class DashboardState:
    site: Site
    params: dict  # the kept URL parameters, as given
    today: date
    range: Range
    compare: str
    interval: str
    metric: str
    filters: tuple
    filter_error: str | None = None

    # --- reading the URL ---------------------------------------------------------------

    @classmethod
    def from_query(cls, site: Site, query, *, now: datetime | None = None) -> "DashboardState":
        params = {k: query.get(k) for k in KEPT if query.get(k)}
        tz = ZoneInfo(site.timezone)
        today = (now or datetime.now(tz)).astimezone(tz).date()
        rng = _resolve_range(site, params, today, tz)
        compare = params.get("compare") if params.get("compare") in COMPARES else DEFAULT_COMPARE
        interval = params.get("interval")
        if interval not in allowed_intervals(rng.days):
            interval = default_interval(rng.days)
        metric = params.get("metric") if params.get("metric") in GRAPH_METRICS else DEFAULT_METRIC
        filters, error = (), None
        try:
            filters = data.parse_filters(site, params.get("filters", ""))
        except data.QueryError as exc:
            error = f"The filters in this link were ignored: {exc.message}"
            params.pop("filters", None)
        return cls(site, params, today, rng, compare, interval, metric, filters, error)

    # --- API parameters --------------------------------------------------------------------

    @property
    def comparison_range(self) -> tuple[date, date] | None:
        if self.compare == "off":
            return None
        return data.comparison_period(self.site, self.api_params(metrics=("visits",), compare=True))

    def api_params(self, *, metrics, breakdown=None, limit=None, interval=False, compare=False, extra_filters=()) -> dict:
        """The ``GET /api/v1/analytics`` parameters of a panel: this state's range and filters."""
        params = {
            "start_date": self.range.start.isoformat(),
            "end_date": self.range.end.isoformat(),
            "metrics": ",".join(metrics),
        }
        if interval:
            params["interval"] = self.interval
        if breakdown:
            params["breakdown"] = breakdown
        if limit:
            params["limit"] = str(limit)
        filters = ";".join(str(f) for f in (*self.filters, *extra_filters))
        if filters:
            params["filters"] = filters
        if compare and self.compare != "off":
            params["compare"] = self.compare
        return params

    # --- links -------------------------------------------------------------------------------

    def url(self, **changes) -> str:
        """The query string of this view with ``changes`` (a None value removes the parameter)."""
        params = dict(self.params)
        for key, value in changes.items():
            if value is None or value == "":
                params.pop(key, None)
            else:
                params[key] = value
        if params.get("period") == DEFAULT_PERIOD:
            params.pop("period")
        if params.get("compare") == DEFAULT_COMPARE:
            params.pop("compare")
        ordered = [(k, params[k]) for k in KEPT if k in params]
        return "?" + urlencode(ordered, safe=_READABLE) if ordered else "?"

    def period_url(self, period: str) -> str:
        return self.url(period=period, date=None, **{"from": None, "to": None}, interval=None)

    def with_filter(self, dimension: str, op: str, value: str) -> str:
        """This view filtered on ``dimension op value``, replacing a filter on the same dimension."""
        new = data.Filter(data.parse_dimension(dimension, "filters"), op, value)
        kept = [f for f in self.filters if f.dimension.name != dimension]
        return self.url(filters=";".join(str(f) for f in [*kept, new]))

    def without_filter(self, index: int) -> str:
        kept = [f for i, f in enumerate(self.filters) if i != index]
        return self.url(filters=";".join(str(f) for f in kept) or None)

    def filter_value(self, dimension: str) -> str | None:
        """The value of an ``==`` filter on ``dimension``, if there is one."""
        for f in self.filters:
            if f.dimension.name == dimension and f.op == "==":
                return f.value
        return None

    def tab(self, panel: str, choices: tuple, default: str) -> str:
        """The tab chosen for ``panel`` (``tab=sources:referrer,pages:entry``)."""
        for item in self.params.get("tab", "").split(","):
            name, _, value = item.partition(":")
            if name == panel and value in choices:
                return value
        return default

    def tab_url(self, panel: str, value: str) -> str:
        items = [i for i in self.params.get("tab", "").split(",") if i and i.partition(":")[0] != panel]
        items.append(f"{panel}:{value}")
        return self.url(tab=",".join(sorted(items)))

    def replace(self, **changes) -> "DashboardState":
        return replace(self, **changes)


def allowed_intervals(days: int) -> tuple[str, ...]:
    out = []
    if days <= 7:
        out.append("hour")
    if 2 <= days <= 400:
        out.append("day")
    if days >= 14:
        out.append("week")
    if days >= 60:
        out.append("month")
    return tuple(out)


def default_interval(days: int) -> str:
    if days == 1:
        return "hour"
    if days <= 92:
        return "day"
    return "month"


def _custom(start: date, end: date, today: date, label: str | None = None) -> "Range":
    days = (end - start).days + 1
    shift = timedelta(days=days)

    def moved(delta):
        return {"period": "custom", "from": (start + delta).isoformat(), "to": (end + delta).isoformat(), "date": None}

    if label is None:
        label = f"{start:%-d %b %Y} – {end:%-d %b %Y}" if start != end else f"{start:%a, %-d %b %Y}"
    return Range(start, end, label, moved(-shift), moved(shift) if start + shift <= today else None)


def _resolve_range(site: Site, params: dict, today: date, tz) -> Range:
    period = params.get("period") or DEFAULT_PERIOD
    anchor = _date(params.get("date"))
    if period == "yesterday":
        period, anchor = "day", today - timedelta(days=1)
    if period == "last_month":
        period, anchor = "month", _month_start(today, 1)
    if period == "day":
        day = anchor if anchor and anchor <= today else today
        label = "Today" if day == today else "Yesterday" if day == today - timedelta(days=1) else f"{day:%a, %-d %b %Y}"
        nxt = day + timedelta(days=1)
        return Range(
            day,
            day,
            label,
            {"period": "day", "date": (day - timedelta(days=1)).isoformat()},
            {"period": "day", "date": nxt.isoformat()} if nxt <= today else None,
        )
    if period == "month":
        first = _month_start(anchor if anchor and anchor <= today else today)
        end = min(_month_end(first), today)
        label = "This month" if first == _month_start(today) else f"{first:%B %Y}"
        nxt = _month_start(_month_end(first) + timedelta(days=1))
        return Range(
            first,
            end,
            label,
            {"period": "month", "date": _month_start(first, 1).isoformat()},
            {"period": "month", "date": nxt.isoformat()} if nxt <= today else None,
        )
    if period in ("7d", "30d"):
        days = int(period[:-1])
        return _custom(today - timedelta(days=days - 1), today, today, PERIODS[period][0])
    if period == "12mo":
        return _custom(_month_start(today, 11), today, today, PERIODS[period][0])
    if period == "all":
        first = data.first_day(site, tz) or today
        start = max(min(first, today), today - timedelta(days=MAX_DAYS - 1))
        return Range(start, today, "All time", None, None)
    # custom
    start, end = _date(params.get("from")), _date(params.get("to"))
    if start is None or end is None:
        return _custom(today - timedelta(days=29), today, today, PERIODS["30d"][0])
    if start > end:
        start, end = end, start
    start = max(start, end - timedelta(days=MAX_DAYS - 1))
    return _custom(start, end, today)
