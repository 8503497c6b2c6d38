"""Sessions: a visitor's events less than 30 minutes apart share one 64-bit session id.

The rule: an event joins the session of its visitor's latest event within ``SESSION_GAP``
either side, else it starts one. It is applied as events are stored, so analytics counts
sessions with a GROUP BY: the storage finds that latest event (``storage.latest_session_sql``,
one lookup for every path), and a batch applies the rule among its own items too
(``assign_batch_sessions``).

A new session's id is derived from the visitor and the 30-minute slot it starts in: the first
page view and a custom event fired with it often arrive together in two worker processes,
neither sees the other, and both still get the same id, without a lock. Two sessions of one
visitor start at least 30 minutes apart, so they never share a slot; only simultaneous first
hits straddling a slot boundary split a visit.
"""

import hashlib
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from django.conf import settings

from .visitors import hash_to_int64

SESSION_GAP = timedelta(minutes=30)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_GAP_MICROS = SESSION_GAP // _MICROSECOND


def micros(value: datetime) -> int:
    """Microseconds since the epoch: how session lookups report times, compared as integers."""
    return (value - _EPOCH) // _MICROSECOND


@lru_cache(maxsize=4)
def _session_key(secret: str) -> bytes:
    return hashlib.sha256(b"infinity-session:" + secret.encode()).digest()


def new_session_id(*, visitor: int, started_at: datetime) -> int:
    """The non-negative 63-bit id of the session ``visitor`` starts at ``started_at``."""
    slot = int(started_at.timestamp() // SESSION_GAP.total_seconds())
    return hash_to_int64(_session_key(settings.SECRET_KEY), f"{visitor}:{slot}".encode()) & (2**63 - 1)


def assign_batch_sessions(rows: list[dict], stored: dict[int, tuple[int, int]]) -> None:
    """Set the ``session`` of a batch's rows (each with a visitor) as the rule applied to them one
    at a time in time order would. ``stored`` maps a row's index to the (time in microseconds,
    session) of its visitor's latest stored event within the gap; a row joins that or its
    visitor's previous row in the batch, whichever is later."""
    by_visitor: dict[int, list[int]] = {}
    for index, row in enumerate(rows):
        by_visitor.setdefault(row["visitor"], []).append(index)
    for indexes in by_visitor.values():
        if len(indexes) == 1:  # the usual case: nothing earlier in the batch to join
            _join_or_start(rows[indexes[0]], stored.get(indexes[0]))
            continue
        previous = None
        for index in sorted(indexes, key=lambda i: rows[i]["occurred_at"]):
            row, best, at = rows[index], stored.get(index), micros(rows[index]["occurred_at"])
            if previous is not None and previous[0] > at - _GAP_MICROS and (best is None or previous[0] >= best[0]):
                best = previous
            _join_or_start(row, best)
            previous = (at, row["session"])


def _join_or_start(row: dict, found: tuple[int, int] | None) -> None:
    row["session"] = found[1] if found else new_session_id(visitor=row["visitor"], started_at=row["occurred_at"])
