"""The dashboard's one way to the numbers: the same parse and engine as ``GET /api/v1/analytics``.

Every panel builds API parameters (``state.DashboardState.api_params``) and calls
``analytics``; the panel's HTML carries the same parameters in ``data-query``, so anyone can
ask the API the same question and get the same answer.
"""

from datetime import date

from django.db.models import Min

from accounts.models import Site
from analytics.engine import run_query
from analytics.query import DIMENSIONS, Filter, QueryError, parse_dimension, parse_query
from events.models import Event

__all__ = ["DIMENSIONS", "Filter", "QueryError", "analytics", "first_day", "metadata_keys", "parse_dimension", "parse_filters"]


def analytics(site: Site, params: dict) -> dict:
    """The API's response body for ``params`` (raises ``QueryError`` as the API would answer 400)."""
    return run_query(parse_query(params, site=site))


def parse_filters(site: Site, raw: str) -> tuple:
    """The ``filters`` parameter as the engine reads it (raises ``QueryError``)."""
    return parse_query({"filters": raw}, site=site).filters if raw else ()


def comparison_period(site: Site, params: dict) -> tuple[date, date]:
    """The dates the engine compares ``params``' period with."""
    comparison = parse_query(params, site=site).comparison()
    return comparison.start_date, comparison.end_date


def first_day(site: Site, tz) -> date | None:
    """The local date of the site's first event ("all time" starts there)."""
    first = Event.objects.filter(site=site).aggregate(t=Min("occurred_at"))["t"]
    return first.astimezone(tz).date() if first else None


def metadata_keys(site: Site, event_name: str, limit: int = 20) -> list[str]:
    """Metadata keys of the site's most recent ``event_name`` events, for the Events panel's tabs."""
    keys = set()
    recent = Event.objects.filter(site=site, name=event_name).order_by("-occurred_at").values_list("metadata", flat=True)
    for metadata in recent[:500]:
        if isinstance(metadata, dict):
            keys.update(metadata)
    return sorted(keys)[:limit]


def has_events(site: Site) -> bool:
    return Event.objects.filter(site=site).exists()
