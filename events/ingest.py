"""The ingestion pipeline: one validated value in, one committed row out.

1. ``event_row``: a validated ``EventIn`` or ``PurchaseIn`` body becomes an Event row, its
   visitor hashed (``visitors.py``); the collector builds a tracker hit's row itself.
2. ``store_rows``: each row with a visitor gets the id of the session it would start
   (``sessions.py``), and the storage writes the rows in one statement, each joining its
   visitor's latest session instead when there is one.
3. ``ingest_one`` and ``ingest_tracker_row`` hand their row to this process's group writer,
   which stores it with the rows of concurrent requests and returns once they are committed:
   acknowledged means stored. ``ingest_batch`` assigns sessions across its items, then stores
   them all in one transaction.
"""

from django.db import transaction
from django.utils import timezone

from accounts.models import Site

from . import storage
from .groupcommit import GroupWriter
from .models import Kind
from .sessions import assign_batch_sessions, new_session_id
from .visitors import hash_caller_visitor

PURCHASE_EVENT_NAME = "purchase"
# Kinds of input — a custom event or a purchase — as the batch body's ``type`` names them.
BATCH_EVENT = "event"
BATCH_PURCHASE = "purchase"


def event_row(*, site: Site, kind: str, data: dict, now) -> dict:
    """Validated ``EventIn`` (``kind`` BATCH_EVENT) or ``PurchaseIn`` (BATCH_PURCHASE) data → Event fields."""
    visitor_id = data["visitor_id"]
    row = {
        "site_id": site.pk,
        "occurred_at": data["timestamp"] or now,
        "received_at": now,
        "visitor": None if visitor_id is None else hash_caller_visitor(site_id=site.pk, visitor_id=visitor_id),
        "session": None,
        "metadata": data["metadata"],
    }
    if kind == BATCH_PURCHASE:
        row.update(
            kind=int(Kind.PURCHASE), name=PURCHASE_EVENT_NAME, price=data["price"], currency=data["currency"],
            quantity=data["quantity"], product_name=data["product_name"],
        )  # fmt: skip
    else:
        row.update(kind=int(Kind.CUSTOM), name=data["event_name"])
    return row


def store_rows(rows: list[dict]) -> list[int]:
    """Store rows in one transaction, each joining its visitor's latest session or starting one;
    their ids, committed."""
    for row in rows:
        if row["visitor"] is not None:
            row["session"] = new_session_id(visitor=row["visitor"], started_at=row["occurred_at"])
    return storage.backend().insert(rows)


writer = GroupWriter(store_rows)


def ingest_one(*, site: Site, kind: str, data: dict) -> int:
    """Store one validated body for ``site``; its id, once committed."""
    return writer.write(event_row(site=site, kind=kind, data=data, now=timezone.now()))


def ingest_tracker_row(row: dict) -> int:
    """Store a tracker hit's row (Event fields, ``visitor`` under today's salt and
    ``earlier_visitor`` under yesterday's or None); its id, once committed."""
    return writer.write(row)


def ingest_batch(*, site: Site, items: list[tuple[str, dict]]) -> list[int]:
    """Store validated batch items — ``(BATCH_EVENT | BATCH_PURCHASE, validated_data)`` — in one
    transaction; their ids in input order, committed."""
    now = timezone.now()
    rows = [event_row(site=site, kind=kind, data=data, now=now) for kind, data in items]
    store = storage.backend()
    with transaction.atomic():
        with_visitor = [row for row in rows if row["visitor"] is not None]
        if with_visitor:
            assign_batch_sessions(with_visitor, store.nearby_sessions(site.pk, with_visitor))
        return store.copy(rows)
