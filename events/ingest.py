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
4. A send with an idempotency key claims it in the transaction that stores its row
   (``idempotency.py``): a key already held stores nothing and answers the first event's id.
"""

from django.db import transaction
from django.utils import timezone

from accounts.models import Site

from . import idempotency, storage
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
    store = storage.backend()
    if any(idempotency.CLAIM in row for row in rows):
        return idempotency.store_claimed_rows(rows, store.insert)
    return store.insert(rows)


writer = GroupWriter(store_rows)


def ingest_one(*, site: Site, kind: str, data: dict) -> int:
    """Store one validated body for ``site``; its id, once committed."""
    return writer.write(event_row(site=site, kind=kind, data=data, now=timezone.now()))


def ingest_keyed(*, site: Site, kind: str, data: dict, key: str) -> tuple[int, bool]:
    """Store one validated body under an idempotency key, once: (its event id, whether it was
    stored before under this key and nothing was stored now). ``idempotency.KeyReused`` when the
    key came with another body."""
    row = event_row(site=site, kind=kind, data=data, now=timezone.now())
    row[idempotency.CLAIM] = idempotency.Claim(site.pk, key, idempotency.body_hash(kind, data))
    outcome = writer.write(row)
    if isinstance(outcome, idempotency.KeyReused):
        raise outcome
    if isinstance(outcome, idempotency.Replayed):
        return outcome.event_id, True
    return outcome, False


def ingest_tracker_row(row: dict) -> int:
    """Store a tracker hit's row (Event fields, ``visitor`` under today's salt and
    ``earlier_visitor`` under yesterday's or None); its id, once committed."""
    return writer.write(row)


def ingest_batch(*, site: Site, items: list[tuple[str, dict]], keys: list[str | None] | None = None) -> list:
    """Store validated batch items — ``(BATCH_EVENT | BATCH_PURCHASE, validated_data)`` — in one
    transaction; their ids in input order, committed. With ``keys`` (an idempotency key or None
    per item), an item whose key is held answers ``idempotency.Replayed`` or ``KeyReused``
    instead and stores nothing."""
    now = timezone.now()
    rows = [event_row(site=site, kind=kind, data=data, now=now) for kind, data in items]
    store = storage.backend()

    def copy_with_sessions(rows):
        with_visitor = [row for row in rows if row["visitor"] is not None]
        if with_visitor:
            assign_batch_sessions(with_visitor, store.nearby_sessions(site.pk, with_visitor))
        return store.copy(rows)

    with transaction.atomic():
        if keys is None or all(key is None for key in keys):
            return copy_with_sessions(rows)
        claims = [None if key is None else idempotency.Claim(site.pk, key, idempotency.body_hash(kind, data))
                  for (kind, data), key in zip(items, keys, strict=True)]  # fmt: skip
        return idempotency.store_batch_rows(rows, claims, copy_with_sessions)
