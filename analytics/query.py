"""The query layer: parameters → one immutable ``Query`` → one result.

``parse_query`` validates everything (metric names from the METRICS registry, dates,
range bounds, timezone) and raises ``QueryError`` naming the bad parameter.
``run_query`` only ever sees a ``Query``; no user string reaches SQL.

Semantics:
- Dates are inclusive calendar days in the site's timezone; events count by their own
  timestamp (``occurred_at``), not by arrival.
- ``page_views``: page views. ``events``: custom and purchase events.
- ``unique_visitors``: distinct visitors with any event in the range; events without a
  visitor count for no visitor. A caller-supplied ``visitor_id`` is one visitor across the
  range; a tracker visitor id changes daily (privacy), so a return on another day counts again.
"""

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.db.models import Count, Q
from django.utils import timezone

from accounts.models import Site
from events.models import Event, Kind

DEFAULT_DAYS = 30
MAX_RANGE_DAYS = 5 * 366
KNOWN_PARAMS = {"start_date", "end_date", "metrics"}


class QueryError(ValueError):
    def __init__(self, param: str, message: str):
        super().__init__(message)
        self.param = param
        self.message = message


@dataclass(frozen=True)
class Metric:
    name: str
    aggregate: object
    description: str


METRICS = {
    m.name: m
    for m in [
        Metric("page_views", Count("id", filter=Q(kind=Kind.PAGEVIEW)), "Page views recorded by the tracking script."),
        Metric("unique_visitors", Count("visitor", distinct=True), "Distinct visitors with any event in the range."),
        Metric("events", Count("id", filter=Q(kind__in=[Kind.CUSTOM, Kind.PURCHASE])), "Custom and purchase events."),
    ]
}


@dataclass(frozen=True)
class Query:
    site_id: int
    start_date: date
    end_date: date
    metrics: tuple[str, ...]
    timezone: str

    @property
    def utc_range(self) -> tuple[datetime, datetime]:
        """[start, end) in UTC: local midnight of start_date to local midnight after end_date."""
        tz = ZoneInfo(self.timezone)
        start = datetime.combine(self.start_date, time.min, tzinfo=tz)
        end = datetime.combine(self.end_date + timedelta(days=1), time.min, tzinfo=tz)
        return start, end


def _parse_date(params, name):
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    try:
        if len(raw) != 10:
            raise ValueError
        return date.fromisoformat(raw)
    except ValueError:
        raise QueryError(name, f"{name} must be an ISO 8601 date (YYYY-MM-DD), got {raw[:40]!r}") from None


def _parse_metrics(params):
    raw = params.get("metrics")
    if raw is None or not raw.strip():
        return tuple(METRICS)
    names = []
    for item in raw.split(","):
        name = item.strip()
        if name not in METRICS:
            raise QueryError("metrics", f"Unknown metric {name[:60]!r}; choose from {', '.join(METRICS)}")
        if name not in names:
            names.append(name)
    return tuple(names)


def parse_query(params, *, site: Site, now: datetime | None = None) -> Query:
    for name in params:
        if name not in KNOWN_PARAMS:
            raise QueryError(name, f"Unknown parameter {name[:60]!r}")
    tz = ZoneInfo(site.timezone)
    today = (now or timezone.now()).astimezone(tz).date()
    start, end = _parse_date(params, "start_date"), _parse_date(params, "end_date")
    if end is None:
        end = today if start is None or start <= today else start + timedelta(days=DEFAULT_DAYS - 1)
    if start is None:
        start = end - timedelta(days=DEFAULT_DAYS - 1)
    if start > end:
        raise QueryError("start_date", "start_date must be on or before end_date")
    if (end - start).days + 1 > MAX_RANGE_DAYS:
        raise QueryError("start_date", f"The date range must be at most {MAX_RANGE_DAYS} days")
    return Query(site_id=site.pk, start_date=start, end_date=end, metrics=_parse_metrics(params), timezone=site.timezone)


def run_query(query: Query) -> dict:
    start, end = query.utc_range
    rows = Event.objects.filter(site_id=query.site_id, occurred_at__gte=start, occurred_at__lt=end)
    data = rows.aggregate(**{name: METRICS[name].aggregate for name in query.metrics})
    return {
        "data": {name: data[name] or 0 for name in query.metrics},
        "period": {"start": query.start_date.isoformat(), "end": query.end_date.isoformat()},
    }
