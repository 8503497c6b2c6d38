"""Fresh planner statistics while the events table is young.

PostgreSQL plans the session lookups from the statistics of the last ANALYZE. On a new
installation that ANALYZE saw an empty table, and until autovacuum runs again (its first
pass can wait a minute or more behind other tables) the planner estimates every range of
the table at about one row: it then answered a batch's session lookup from the (site, time)
index, reading every event of the site in the hour around each item — 27 s requests in the
batch benchmark's first run on a new database. The row comparisons in
``ingest._latest_session_sql`` keep the batch lookup on the right index in that case but not
in every stale state, and the single-event INSERT's lookup took the wrong index regardless;
this module keeps the statistics current instead.

After ``FIRST_CHECK`` rows a worker stores, then after as many again as it has stored in all
(so the checks double), up to every ``CHECK_EVERY_ROWS`` rows, it reads the table's row
estimate and the rows changed since its last ANALYZE (one catalog query); when the table has
more than doubled since, it ANALYZEs it in a background thread. The first checks come early
because the first minutes matter: with the empty table's statistics, the batch lookup's
prepared (generic) plan scanned the site's events per item, 0.4–0.9 s per 500-item lookup
(PostgreSQL's log in the batch benchmark's first run on a new database) until an ANALYZE. Once the estimate passes ``YOUNG``
rows the worker stops checking: from there autovacuum's 10 % rule keeps up.
"""

import logging
import threading

from django.db import connection

from .models import Event

logger = logging.getLogger("events.statistics")
FIRST_CHECK = 1_000
CHECK_EVERY_ROWS = 20_000
YOUNG = 1_000_000

_lock = threading.Lock()
_state = {"stored": 0, "total": 0, "busy": False, "done": False}


def note_stored(count: int) -> None:
    """Count ``count`` rows this process stored; check the statistics when due."""
    if _state["done"] or connection.vendor != "postgresql":
        return
    with _lock:
        _state["stored"] += count
        _state["total"] += count
        step = min(CHECK_EVERY_ROWS, max(FIRST_CHECK, _state["total"] // 2))
        due = _state["stored"] >= step and not _state["busy"]
        if due:
            _state["stored"], _state["busy"] = 0, True
    if due:
        try:
            if _stale():
                threading.Thread(target=_analyze, name="events-analyze", daemon=True).start()
                return  # _analyze clears busy
        except Exception as exc:  # statistics are housekeeping: never fail a write
            logger.warning("could not read the events table's statistics: %s", exc)
        _state["busy"] = False


def _stale() -> bool:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT c.reltuples, s.n_mod_since_analyze FROM pg_class c JOIN pg_stat_user_tables s ON s.relid = c.oid"
            " WHERE c.oid = %s::regclass",
            [Event._meta.db_table],
        )
        row = cur.fetchone()
    if row is None:
        return False
    estimate, changed = row
    if estimate >= YOUNG:
        _state["done"] = True
        return False
    return changed > max(FIRST_CHECK, estimate)  # more than doubled (-1: never analyzed)


def _analyze() -> None:
    try:
        with connection.cursor() as cur:
            cur.execute(f"ANALYZE {connection.ops.quote_name(Event._meta.db_table)}")
    except Exception as exc:
        logger.warning("ANALYZE of the events table failed: %s", exc)
    finally:
        connection.close()  # this thread's own connection
        _state["busy"] = False
