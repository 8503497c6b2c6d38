"""Sessions: a visitor's events with gaps under 30 minutes share one 64-bit session id.

Assigned at ingestion so analytics counts sessions with a GROUP BY. One indexed query
(``site, visitor, occurred_at``) finds any event of the visitor within 30 minutes of the
new one; its session continues, otherwise a new random id starts one. Two first hits of
the same visitor arriving at the same instant may start two sessions; that race is rare
and only splits a visit.
"""

import secrets
from datetime import datetime, timedelta

from .models import Event

SESSION_GAP = timedelta(minutes=30)


def new_session_id() -> int:
    return secrets.randbits(63)


def assign_session(
    *, site_id: int, visitor: int, occurred_at: datetime, earlier_visitor: int | None = None
) -> tuple[int, int]:
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
    return visitor, new_session_id()
