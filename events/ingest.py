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


# --- Batches (POST /api/v1/events/batch) ---------------------------------------------

BATCH_EVENT = "event"
BATCH_PURCHASE = "purchase"


def _assign_sessions_bulk(site_id: int, rows: list[Event]) -> None:
    """Sessions for a batch with one query, equal to calling ``assign_session`` item by item.

    Each row (in time order) joins the latest event of the same visitor within 30 minutes
    either side — stored already or earlier in this batch — or starts a new session.
    """
    from bisect import bisect_left, insort

    from .sessions import SESSION_GAP, new_session_id

    with_visitor = [row for row in rows if row.visitor is not None]
    if not with_visitor:
        return
    times = [row.occurred_at for row in with_visitor]
    known: dict[int, list] = {}  # visitor → sorted [(occurred_at, session)]
    for visitor, occurred_at, session in Event.objects.filter(
        site_id=site_id,
        visitor__in={row.visitor for row in with_visitor},
        occurred_at__gt=min(times) - SESSION_GAP,
        occurred_at__lt=max(times) + SESSION_GAP,
        session__isnull=False,
    ).values_list("visitor", "occurred_at", "session"):
        known.setdefault(visitor, []).append((occurred_at, session))
    for events in known.values():
        events.sort(key=lambda pair: pair[0])
    for row in sorted(with_visitor, key=lambda r: r.occurred_at):
        events = known.setdefault(row.visitor, [])
        keys = [t for t, _ in events]
        # The latest event strictly before occurred_at + gap, if it is after occurred_at - gap.
        i = bisect_left(keys, row.occurred_at + SESSION_GAP) - 1
        if i >= 0 and events[i][0] > row.occurred_at - SESSION_GAP:
            row.session = events[i][1]
        else:
            row.session = new_session_id()
        insort(events, (row.occurred_at, row.session), key=lambda pair: pair[0])


def ingest_batch(*, site: Site, items: list[tuple[str, dict]]) -> list[Event]:
    """Store validated batch items — ``(BATCH_EVENT | BATCH_PURCHASE, validated_data)`` — in one
    transaction; returns the saved events in input order. Committed when this returns."""
    from django.db import transaction

    now = timezone.now()
    rows = []
    for kind, data in items:
        occurred_at = data["timestamp"] or now
        row = Event(
            site=site,
            occurred_at=occurred_at,
            received_at=now,
            visitor=_visitor(site, data["visitor_id"]),
            metadata=data["metadata"],
        )
        if kind == BATCH_PURCHASE:
            row.kind, row.name = Kind.PURCHASE, PURCHASE_EVENT_NAME
            row.price, row.currency, row.quantity = data["price"], data["currency"], data["quantity"]
            row.product_name = data["product_name"]
        else:
            row.kind, row.name = Kind.CUSTOM, data["event_name"]
        rows.append(row)
    with transaction.atomic():
        _assign_sessions_bulk(site.pk, rows)
        Event.objects.bulk_create(rows)
    return rows
