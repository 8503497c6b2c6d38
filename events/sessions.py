"""Sessions: a visitor's events with gaps under 30 minutes share one 64-bit session id.

Assigned at ingestion so analytics counts sessions with a GROUP BY. One indexed query
(``site, visitor, occurred_at``) finds any event of the visitor within 30 minutes of the
new one; its session continues. Otherwise a session starts, and its id is derived from
the visitor and the 30-minute slot the session starts in: the first page view and a
custom event fired with it often arrive at the same instant (in two worker processes),
neither sees the other, and both still get the same id, without a lock. Two sessions of
one visitor start at least 30 minutes apart, so they fall into different slots and never
share an id. Only simultaneous first hits straddling a slot boundary split a visit.
"""

import hashlib
import secrets
from datetime import datetime, timedelta
from functools import lru_cache

from django.conf import settings

from .models import Event
from .visitors import hash_to_int64

SESSION_GAP = timedelta(minutes=30)


@lru_cache(maxsize=4)
def _session_key(secret: str) -> bytes:
    return hashlib.sha256(b"infinity-session:" + secret.encode()).digest()


def new_session_id(*, visitor: int | None = None, started_at: datetime | None = None) -> int:
    """A non-negative 63-bit id for the session of ``visitor`` starting at ``started_at``.

    Without both, a random id (callers that serialise their own writes need no derivation).
    """
    if visitor is None or started_at is None:
        return secrets.randbits(63)
    slot = int(started_at.timestamp() // SESSION_GAP.total_seconds())
    return hash_to_int64(_session_key(settings.SECRET_KEY), f"{visitor}:{slot}".encode()) & (2**63 - 1)


def assign_session(*, site_id: int, visitor: int, occurred_at: datetime, earlier_visitor: int | None = None) -> tuple[int, int]:
    """Return ``(visitor, session)`` for an event of ``visitor`` at ``occurred_at``.

    ``earlier_visitor`` is the same person's id under yesterday's salt: if a session of
    theirs is still going, the event joins it under that id, so a visit crossing midnight
    stays one visitor and one session.
    """
    candidates = [visitor] if earlier_visitor is None else [visitor, earlier_visitor]
    nearby = (
        Event.objects.filter(
            site_id=site_id,
            visitor__in=candidates,
            occurred_at__gt=occurred_at - SESSION_GAP,
            occurred_at__lt=occurred_at + SESSION_GAP,
            session__isnull=False,
        )
        .order_by("-occurred_at")
        .values_list("visitor", "session")
        .first()
    )
    if nearby is not None:
        return nearby
    return visitor, new_session_id(visitor=visitor, started_at=occurred_at)
