"""The ingestion pipeline: one validated value in, one committed row out.

Server API: the serializer has already validated the body; ``ingest_event`` and
``ingest_purchase`` hash the visitor and write the row. Django runs in autocommit mode,
so ``create`` returns only after COMMIT: acknowledged means stored.
"""

from datetime import datetime

from django.utils import timezone

from accounts.models import Site

from .models import Event, Kind
from .sessions import assign_session
from .visitors import hash_caller_visitor

PURCHASE_EVENT_NAME = "purchase"


def _visitor(site: Site, visitor_id: str | None) -> int | None:
    return None if visitor_id is None else hash_caller_visitor(site_id=site.pk, visitor_id=visitor_id)


def _visitor_and_session(site: Site, visitor_id: str | None, occurred_at: datetime) -> dict:
    visitor = _visitor(site, visitor_id)
    if visitor is None:
        return {"visitor": None, "session": None}
    visitor, session = assign_session(site_id=site.pk, visitor=visitor, occurred_at=occurred_at)
    return {"visitor": visitor, "session": session}


def ingest_event(
    *, site: Site, event_name: str, metadata: dict, visitor_id: str | None, timestamp: datetime | None
) -> Event:
    """Store one custom event for ``site``."""
    now = timezone.now()
    return Event.objects.create(
        site=site,
        kind=Kind.CUSTOM,
        name=event_name,
        occurred_at=timestamp or now,
        received_at=now,
        **_visitor_and_session(site, visitor_id, timestamp or now),
        metadata=metadata,
    )


def ingest_purchase(
    *,
    site: Site,
    price: int,
    currency: str,
    product_name: str,
    quantity: int,
    metadata: dict,
    visitor_id: str | None,
    timestamp: datetime | None,
) -> Event:
    """Store one purchase for ``site``: ``price`` per unit in minor units of ``currency``."""
    now = timezone.now()
    return Event.objects.create(
        site=site,
        kind=Kind.PURCHASE,
        name=PURCHASE_EVENT_NAME,
        occurred_at=timestamp or now,
        received_at=now,
        **_visitor_and_session(site, visitor_id, timestamp or now),
        metadata=metadata,
        price=price,
        currency=currency,
        quantity=quantity,
        product_name=product_name,
    )
