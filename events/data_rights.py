"""A data subject's rights over the events of a caller-supplied visitor (GDPR art. 15 and 17,
CCPA): read them, erase them; and a site's reset (every event gone, the site and keys kept).

A visitor here is the ``visitor_id`` your backend sends with events, hashed per site
(``events.visitors.hash_caller_visitor``): the same id finds the same rows. Tracker visitors
cannot be looked up (daily salts, no IP stored; docs/privacy.md).

Deletions send ``events.signals.events_deleted`` inside their transaction, so derived data
(analytics' rollups) is dropped with the rows, and hold the site's lock (``lock_site``), which
a rollup build takes before it stores a bucket.
"""

from datetime import UTC, datetime, timedelta

from django.db import transaction
from django.db.models import Q
from django.db.models.functions import TruncHour

from accounts.models import Site

from .models import Event, Kind
from .signals import events_deleted
from .visitors import hash_caller_visitor

HOUR = timedelta(hours=1)


def lock_site(site_id: int) -> None:
    """Within a transaction: serialize with the other holders (a deletion of the site's events, a
    rollup bucket being stored; SQLite serializes every write anyway). FOR NO KEY UPDATE leaves the
    site's row free for the foreign-key checks of events being inserted meanwhile."""
    list(Site.objects.select_for_update(no_key=True).filter(pk=site_id).values_list("pk", flat=True))


def _visitor_rows(site: Site, visitor_id: str):
    return Event.objects.filter(site=site, visitor=hash_caller_visitor(site_id=site.pk, visitor_id=visitor_id))


def erase_visitor(*, site: Site, visitor_id: str) -> int:
    """Delete every event of ``visitor_id`` on ``site``; how many. Analytics stop counting them in
    the same transaction."""
    rows = _visitor_rows(site, visitor_id)
    with transaction.atomic():
        lock_site(site.pk)
        hours = rows.annotate(hour=TruncHour("occurred_at", tzinfo=UTC)).values_list("hour", flat=True).distinct()
        spans = [(hour, hour + HOUR) for hour in hours.order_by()]
        deleted = rows.delete()[0] if spans else 0  # one DELETE: nothing refers to events
        if deleted:
            events_deleted.send(Event, site_id=site.pk, spans=spans)
    return deleted


def erase_site_events(*, site: Site) -> int:
    """Delete every event of ``site`` (the site, its keys and settings stay); how many."""
    with transaction.atomic():
        lock_site(site.pk)
        deleted = Event.objects.filter(site=site).delete()[0]
        events_deleted.send(Event, site_id=site.pk, spans=None)
    return deleted


def visitor_events(*, site: Site, visitor_id: str, after: int | None, limit: int) -> tuple[list[Event], bool]:
    """Up to ``limit`` events of the visitor, oldest first, after the event ``after`` (an id of
    the visitor's, from the previous page); and whether more follow. ValueError when ``after`` is
    not an event of this visitor on this site (nothing is said about other sites)."""
    rows = _visitor_rows(site, visitor_id)
    if after is not None:
        anchor = rows.filter(pk=after).values_list("occurred_at", flat=True).first()
        if anchor is None:
            raise ValueError("after must be the next value of a previous page")
        rows = rows.filter(Q(occurred_at__gt=anchor) | Q(occurred_at=anchor, pk__gt=after))
    page = list(rows.order_by("occurred_at", "pk")[: limit + 1])
    return page[:limit], len(page) > limit


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def event_record(event: Event) -> dict:
    """An event as the subject receives it: every stored field but the hashes."""
    return {
        "event_id": Event.public_id(event.pk),
        "type": Kind(event.kind).label,
        "event_name": event.name,
        "timestamp": _iso(event.occurred_at),
        "received_at": _iso(event.received_at),
        "metadata": event.metadata,
        "price": event.price,
        "currency": event.currency,
        "quantity": event.quantity,
        "product_name": event.product_name,
        "hostname": event.hostname,
        "path": event.path,
        "referrer": event.referrer,
        "source": event.source,
        "utm_source": event.utm_source,
        "utm_medium": event.utm_medium,
        "utm_campaign": event.utm_campaign,
        "utm_term": event.utm_term,
        "utm_content": event.utm_content,
        "country": event.country,
        "browser": event.browser,
        "os": event.os,
        "device": event.device,
    }
