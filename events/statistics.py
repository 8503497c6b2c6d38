"""Fresh planner statistics while the events table is young.

PostgreSQL plans the session lookups from the statistics of the last ANALYZE. On a new
installation that ANALYZE saw an empty table, and until autovacuum analyzes it again (never
on a server with autovacuum off, as on the machine this was measured on) the planner
estimates every range of the table at about one row. It then answered a batch's session
lookup from the (site, time) index, reading every event of the site in the hour around each
item: 27 s requests in the batch benchmark's first run on a new database. The row
comparisons in ``ingest._latest_session_sql`` keep the batch lookup on the right index in
that case but not in every stale state, and the single-event INSERT's lookup took the wrong
index regardless; this module keeps the statistics current instead.

After ``FIRST_CHECK`` rows a worker stores, then after as many again as it has stored in all
(so the checks double), up to every ``CHECK_EVERY_ROWS`` rows, a background thread reads the
table's row estimate and the rows changed since its last ANALYZE (one catalog query) and,
when the table has more than doubled since, ANALYZEs it. The first checks come early
because the first seconds matter: even with the row comparisons, the batch lookups took
0.36–0.87 s each (PostgreSQL's log, the batch benchmark's first run on a new database) until
the first ANALYZE. Once the estimate passes ``YOUNG`` rows the worker stops checking: from
there autovacuum's 10 % rule keeps up, where autovacuum runs.
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
_state = {"total": 0, "next": FIRST_CHECK, "busy": False, "done": False}


def note_stored(count: int) -> None:
    """Count ``count`` rows this process stored; when a check is due, start it in a thread.

    The writer only counts: it runs in the group-commit leader and inside a batch's
    transaction, where a catalog query would delay every waiting request and a failing one
    would abort the batch."""
    if _state["done"] or connection.vendor != "postgresql":
        return
    with _lock:
        _state["total"] += count
        due = _state["total"] >= _state["next"] and not _state["busy"]
        if due:  # the next check once as many rows again have been stored, at most CHECK_EVERY_ROWS on
            _state["next"] = _state["total"] + min(CHECK_EVERY_ROWS, _state["total"])
            _state["busy"] = True
    if due:
        threading.Thread(target=_refresh, name="events-statistics", daemon=True).start()


def _refresh() -> None:
    """In this thread's own connection: ANALYZE the table if it has more than doubled since."""
    try:
        with connection.cursor() as cur:
            cur.execute(
                "SELECT c.reltuples, s.n_mod_since_analyze FROM pg_class c JOIN pg_stat_user_tables s ON s.relid = c.oid"
                " WHERE c.oid = %s::regclass",
                [Event._meta.db_table],
            )
            row = cur.fetchone()
            if row is not None and row[0] >= YOUNG:
                _state["done"] = True
            elif row is not None and row[1] > max(FIRST_CHECK, row[0]):  # more than doubled (-1: never analyzed)
                cur.execute(f"ANALYZE {connection.ops.quote_name(Event._meta.db_table)}")
    except Exception as exc:  # statistics are housekeeping: never fail a write
        logger.warning("could not refresh the events table's statistics: %s", exc)
    finally:
        connection.close()
        _state["busy"] = False
