"""Where events meet the database: every statement the events app sends, PostgreSQL and SQLite
side by side.

``backend()`` is the store of the default database. Both stores have the same interface:

- ``insert(rows)``: single events and tracker hits in one transaction, committed on return. A
  row with a visitor joins the session of its visitor's latest event within ``SESSION_GAP``
  either side (or of its ``earlier_visitor``'s, taking that id); otherwise it keeps the new
  session it carries.
- ``nearby_sessions(site_id, rows)``: for a batch, each row's latest stored event by the same
  rule, as (microseconds since the epoch, session).
- ``copy(rows)``: a batch's rows, sessions assigned, inside the caller's transaction.

Every lookup of the session rule is built by ``latest_session_sql``.
"""

import json
import logging
import re
import threading
import time
from contextlib import contextmanager, nullcontext
from datetime import UTC, date, datetime
from functools import lru_cache

import psycopg
from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction

from .models import Event, IdempotencyKey
from .sessions import SESSION_GAP, micros

logger = logging.getLogger("events.storage")
TABLE = Event._meta.db_table
# The columns a tracker lookup returns: its time picks the later of a visitor's two ids.
LATEST_COLUMNS = "e.occurred_at, e.visitor, e.session"
NULL = "\\N"  # COPY's text format


def latest_session_sql(*, site: str, visitor: str, low: str, high: str, columns: str = LATEST_COLUMNS) -> str:
    """``columns`` of the latest event with a session of ``visitor`` on ``site`` strictly between
    ``low`` and ``high`` (SQL expressions: the new event's time ± SESSION_GAP).

    The bounds are row comparisons on (visitor, occurred_at): together they imply the visitor,
    and only the (site, visitor, occurred_at) index can use them, so stale statistics cannot
    lead the planner to the (site, occurred_at) index. Without a separate equality on the
    visitor the backward index scan starts at the window, not at the visitor's newest event.
    The same bounds on ``occurred_at`` alone let a partitioned table (``MonthlyPartitions``)
    read only the months the window touches."""
    return (
        f"SELECT {columns} FROM {TABLE} e WHERE e.site_id = {site}"
        f" AND (e.visitor, e.occurred_at) > ({visitor}, {low}) AND (e.visitor, e.occurred_at) < ({visitor}, {high})"
        f" AND e.occurred_at > {low} AND e.occurred_at < {high}"
        " AND e.session IS NOT NULL ORDER BY e.visitor DESC, e.occurred_at DESC LIMIT 1"
    )


def latest_of_sql(*, site: str, visitors: list[str], low: str, high: str) -> str:
    """(occurred_at, visitor, session) of the latest of several visitor ids' latest events."""
    lookups = [latest_session_sql(site=site, visitor=v, low=low, high=high) for v in visitors]
    if len(lookups) == 1:
        return lookups[0]
    union = " UNION ALL ".join(f"SELECT * FROM ({lookup}) l{i}" for i, lookup in enumerate(lookups))
    return f"SELECT u.occurred_at, u.visitor, u.session FROM ({union}) u ORDER BY u.occurred_at DESC LIMIT 1"


@lru_cache(maxsize=4096)
def _isoformat(value) -> str:
    """Timestamps as text for JSON and COPY; a batch and concurrent requests share a few."""
    return value.isoformat()


def _concrete_fields():
    fields = [f for f in Event._meta.concrete_fields if not f.primary_key]
    if any(f.attname != f.column for f in fields):
        raise ImproperlyConfigured("rows are keyed by attribute name and stored by column name: they must agree")
    return fields


class PostgreSQL:
    """Rows go in as one prepared statement (single events) or one COPY (a batch), whatever their
    number; each finds its session inside the statement."""

    GAP = f"interval '{int(SESSION_GAP.total_seconds())} seconds'"
    # A batch's lookup: parameters (visitors as a bigint[] literal, times as a timestamptz[]
    # literal, site id); rows (1-based index, microseconds since the epoch, session).
    NEARBY_SQL = (
        "SELECT b.i, (extract(epoch FROM e.occurred_at) * 1000000)::bigint, e.session"
        " FROM unnest(%s::bigint[], %s::timestamptz[]) WITH ORDINALITY AS b(visitor, at, i) CROSS JOIN LATERAL ("
        + latest_session_sql(site="%s", visitor="b.visitor", low=f"b.at - {GAP}", high=f"b.at + {GAP}",
                             columns="e.occurred_at, e.session")
        + ") e"
    )  # fmt: skip
    # The lookup's rows come in index order only from the (site, visitor, occurred_at) index:
    # with sorts off the planner takes no other, even for a site newer than the statistics.
    # SET LOCAL lasts to the end of the batch's transaction, so JIT goes too, or the id
    # reservation's ORDER BY, costed past jit_above_cost without sorts, would be compiled.
    LOOKUP_GUARD = "SET LOCAL enable_sort = off; SET LOCAL jit = off"
    COPY_VARYING = ("site_id", "kind", "name", "occurred_at", "received_at", "visitor", "session", "metadata",
                    "price", "currency", "quantity", "product_name")  # fmt: skip
    COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})

    def __init__(self):
        self._inserts: dict[bool, str] = {}
        self._copy_plan: tuple[str, str, str] | None = None
        self._cursors = threading.local()
        self.statistics = FreshStatistics()

    # --- single events and tracker hits ---------------------------------------------------

    def insert_sql(self, *, earlier: bool) -> str:
        """The INSERT of any number of rows, given as one JSON array; ``earlier``: rows may carry an
        ``earlier_visitor`` whose session they join under that id.

        ``json_populate_recordset`` turns the array into rows of the table's type, each column a
        row omits taken from the model's defaults, so the client encodes all rows with one
        ``json.dumps`` and PostgreSQL plans the statement once per connection."""
        if earlier not in self._inserts:
            qn = connection.ops.quote_name
            fields = _concrete_fields()
            defaults = {f.column: f.default for f in fields if f.has_default() and not callable(f.default)}
            base = f"json_populate_record(NULL::{qn(TABLE)}, '{json.dumps(defaults).replace(chr(39), chr(39) * 2)}'::json)"
            window = {"low": f"b.occurred_at - {self.GAP}", "high": f"b.occurred_at + {self.GAP}"}
            if earlier:
                latest = latest_of_sql(site="b.site_id", visitors=["b.visitor", "(j.doc->>'earlier_visitor')::bigint"], **window)
                source = (
                    "json_array_elements(%s::json) WITH ORDINALITY AS j(doc, ordinality)"
                    f" CROSS JOIN LATERAL json_populate_record({base}, j.doc) AS b LEFT JOIN LATERAL ({latest}) s ON true"
                    " ORDER BY j.ordinality"
                )
                found = {"visitor": "s.visitor", "session": "s.session"}
            else:
                source = f"json_populate_recordset({base}, %s::json) WITH ORDINALITY AS b ORDER BY b.ordinality"
                lookup = latest_session_sql(site="b.site_id", visitor="b.visitor", columns="e.session", **window)
                found = {"session": f"({lookup})"}
            columns = [f"COALESCE({found[f.column]}, b.{qn(f.column)})" if f.column in found else f"b.{qn(f.column)}"
                       for f in fields]  # fmt: skip
            self._inserts[earlier] = (
                f"INSERT INTO {qn(TABLE)} ({', '.join(qn(f.column) for f in fields)}) SELECT {', '.join(columns)}"
                f" FROM {source} RETURNING {qn('id')}"
            )
        return self._inserts[earlier]

    def insert(self, rows: list[dict]) -> list[int]:
        # The two-id lookup costs every row a second probe: only groups with a tracker hit pay it.
        sql = self.insert_sql(earlier=any(row.get("earlier_visitor") is not None for row in rows))
        payload = [{**row, "occurred_at": _isoformat(row["occurred_at"]), "received_at": _isoformat(row["received_at"])}
                   for row in rows]  # fmt: skip
        # ensure_ascii off: UTF-8 as is (the parsers refuse lone surrogates).
        with self._cursor(sql) as cur:
            cur.execute(sql, [json.dumps(payload, ensure_ascii=False, check_circular=False)], prepare=True)
            ids = [event_id for (event_id,) in cur.fetchall()]
        self.statistics.note_stored(len(ids))
        return ids

    # --- batches ---------------------------------------------------------------------------

    def nearby_sessions(self, site_id: int, rows: list[dict]) -> dict[int, tuple[int, int]]:
        with connection.cursor() as cur:
            # Django's client-side binding sends the guard and the lookup in one round trip; arrays
            # as literals, far cheaper than adapting each value.
            cur.execute(
                f"{self.LOOKUP_GUARD}; {self.NEARBY_SQL}",
                [
                    "{" + ",".join([str(r["visitor"]) for r in rows]) + "}",
                    "{" + ",".join([_isoformat(r["occurred_at"]) for r in rows]) + "}",
                    site_id,
                ],
            )
            for _ in range(self.LOOKUP_GUARD.count(";") + 1):  # past the SETs' results
                cur.nextset()
            return {i - 1: (at, session) for i, at, session in cur.fetchall()}

    def copy(self, rows: list[dict]) -> list[int]:
        """COPY in text format: PostgreSQL writes its rows many at a time, an INSERT one by one."""
        copy_sql, constant, _ = self.copy_plan()
        ids = self.reserve_ids(len(rows))
        esc = self.COPY_ESCAPES
        lines = []
        for event_id, row, metadata in zip(ids, rows, copy_metadata_texts([row["metadata"] for row in rows]), strict=True):
            price, quantity, visitor, session = row.get("price"), row.get("quantity"), row["visitor"], row["session"]
            lines.append(
                f"{event_id}\t{row['site_id']}\t{row['kind']}\t{row['name'].translate(esc)}\t"
                f"{_isoformat(row['occurred_at'])}\t{_isoformat(row['received_at'])}\t"
                f"{NULL if visitor is None else visitor}\t{NULL if session is None else session}\t{metadata}\t"
                f"{NULL if price is None else price}\t{row.get('currency', '').translate(esc)}\t"
                f"{NULL if quantity is None else quantity}\t{row.get('product_name', '').translate(esc)}{constant}\n"
            )
        with self._cursor(copy_sql) as cur, cur.copy(copy_sql) as copy:
            copy.write("".join(lines).encode())
        self.statistics.note_stored(len(ids))
        return ids

    def copy_plan(self) -> tuple[str, str, str]:
        """(the COPY statement, the text of the constant columns after the varying ones, the id
        sequence's name)."""
        if self._copy_plan is None:
            fields = {f.column: f for f in _concrete_fields()}
            if not set(self.COPY_VARYING) <= set(fields):
                raise ImproperlyConfigured(f"COPY names columns the table lacks: {set(self.COPY_VARYING) - set(fields)}")
            constant = [f for column, f in fields.items() if column not in self.COPY_VARYING]
            if not all(f.has_default() and isinstance(f.default, str) for f in constant):
                raise ImproperlyConfigured("a column the batch leaves out needs a text default")
            qn = connection.ops.quote_name
            with connection.cursor() as cur:
                cur.execute("SELECT pg_get_serial_sequence(%s, 'id')", [TABLE])
                (sequence,) = cur.fetchone()
            names = ", ".join(qn(c) for c in ("id", *self.COPY_VARYING, *(f.column for f in constant)))
            self._copy_plan = (
                f"COPY {qn(TABLE)} ({names}) FROM STDIN",
                "".join("\t" + f.default.translate(self.COPY_ESCAPES) for f in constant),
                sequence,
            )
        return self._copy_plan

    def reserve_ids(self, count: int) -> list[int]:
        """Inside a transaction: ``count`` new event ids, in order, for rows written with their ids.
        The table's ROW EXCLUSIVE lock comes first, as an INSERT takes it before its ids: the
        rollups count the transactions holding it as writers (``settled_event_id``)."""
        sequence = self.copy_plan()[2]
        sql = (
            f"LOCK TABLE {connection.ops.quote_name(TABLE)} IN ROW EXCLUSIVE MODE;"
            f" SELECT nextval('{sequence}') FROM generate_series(1, {count:d}) ORDER BY 1"
        )
        with self._cursor(sql) as cur:
            cur.execute(sql)
            cur.nextset()
            return [event_id for (event_id,) in cur.fetchall()]

    @contextmanager
    def _cursor(self, sql: str):
        """This thread's psycopg cursor with server-side binding (Django's binds on the client,
        which cannot prepare), with Django's error classes and query log."""
        db = connections[DEFAULT_DB_ALIAS]
        db.ensure_connection()
        cur = getattr(self._cursors, "cursor", None)
        if cur is None or cur.closed or cur.connection is not db.connection:
            cur = self._cursors.cursor = psycopg.Cursor(db.connection)
        started = time.monotonic()
        with db.wrap_database_errors:
            yield cur
        if db.queries_logged:
            db.queries_log.append({"sql": sql, "time": f"{time.monotonic() - started:.3f}"})


def copy_metadata_texts(values: list[dict]) -> list[str]:
    """Each flat metadata dict as JSON escaped for COPY, cut out of one ``json.dumps`` of them all.

    The list is encoded with ``\\x00`` between items, which json.dumps never writes itself, and
    in a flat object a separator never follows ``}``: so ``}\\x00{`` occurs exactly between two
    items. When a value is a container the pieces do not add up, and each is encoded alone."""
    text = json.dumps(values, ensure_ascii=False, check_circular=False, separators=("\x00", ":"))
    pieces = text[1:-1].replace("}\x00{", "}\x01{").replace("\x00", ",").replace("\\", "\\\\").split("\x01")
    if len(pieces) == len(values):
        return pieces
    return [json.dumps(v, ensure_ascii=False, separators=(",", ":")).replace("\\", "\\\\") for v in values]


class FreshStatistics:
    """Keeps the planner statistics of a young events table current.

    The session lookups are planned from the last ANALYZE, which on a new installation saw an
    empty table; until autovacuum runs (if it ever does) the planner misjudges every range and
    reads whole sites. So after ``first_check`` rows this process stores, then each time its
    total doubles (at most every ``check_every`` rows), a background thread ANALYZEs the table
    if it has more than doubled since; past ``young`` rows autovacuum's own rule keeps up."""

    first_check = 1_000
    check_every = 20_000
    young = 1_000_000

    def __init__(self):
        self._lock = threading.Lock()
        self.total = 0
        self.next = self.first_check
        self.busy = False
        self.done = False

    def note_stored(self, count: int) -> None:
        """Count stored rows; the check runs in a thread, so it never delays or fails a write."""
        if self.done:
            return
        with self._lock:
            self.total += count
            due = self.total >= self.next and not self.busy
            if due:
                self.next = self.total + min(self.check_every, self.total)
                self.busy = True
        if due:
            threading.Thread(target=self._refresh, name="events-statistics", daemon=True).start()

    def _refresh(self) -> None:
        try:
            with connection.cursor() as cur:
                # Summed over the partitions: a partitioned table's own row keeps no counts.
                cur.execute(
                    "SELECT sum(greatest(c.reltuples, 0)) - (count(*) FILTER (WHERE c.reltuples >= 0) = 0)::int,"
                    " sum(s.n_mod_since_analyze) FROM pg_class c JOIN pg_stat_user_tables s ON s.relid = c.oid"
                    " WHERE c.relkind = 'r' AND (c.oid = %s::regclass"
                    " OR c.oid IN (SELECT relid FROM pg_partition_tree(%s::regclass) WHERE isleaf))",
                    [TABLE, TABLE],
                )
                total, modified = cur.fetchone()  # NULLs while the statistics views hold no row of it
                if total is not None and total >= self.young:
                    self.done = True
                elif total is not None and modified > max(self.first_check, total):  # total is -1 before any ANALYZE
                    cur.execute(f"ANALYZE {connection.ops.quote_name(TABLE)}")
        except Exception as exc:  # housekeeping: never fail a write
            logger.warning("could not refresh the events table's statistics: %s", exc)
        finally:
            connection.close()
            self.busy = False


class SQLite:
    """The embedded database: one writer at a time, so rows go in one by one, each after its
    session lookup, several in one transaction."""

    def insert(self, rows: list[dict]) -> list[int]:
        ids = []
        with transaction.atomic() if len(rows) > 1 else nullcontext():
            for row in rows:
                fields = dict(row)
                earlier = fields.pop("earlier_visitor", None)
                if fields["visitor"] is not None:
                    found = self._latest(fields["site_id"], [fields["visitor"], earlier], fields["occurred_at"])
                    if found is not None:
                        _, fields["visitor"], fields["session"] = found
                event = Event(**fields)
                event.save(force_insert=True)
                ids.append(event.pk)
        return ids

    def nearby_sessions(self, site_id: int, rows: list[dict]) -> dict[int, tuple[int, int]]:
        nearby = {}
        for index, row in enumerate(rows):
            found = self._latest(site_id, [row["visitor"]], row["occurred_at"])
            if found is not None:
                nearby[index] = (micros(found[0]), found[2])
        return nearby

    def copy(self, rows: list[dict]) -> list[int]:
        return [event.pk for event in Event.objects.bulk_create([Event(**row) for row in rows])]

    def _latest(self, site_id: int, visitors: list, at) -> tuple | None:
        """(occurred_at, visitor, session) of the latest event of ``visitors`` within the gap."""
        visitors = [v for v in visitors if v is not None]
        sql = self._latest_sql(len(visitors))
        adapt = connection.ops.adapt_datetimefield_value
        params = {"site": site_id, "low": adapt(at - SESSION_GAP), "high": adapt(at + SESSION_GAP)}
        params.update((f"v{i}", v) for i, v in enumerate(visitors))
        with connection.cursor() as cur:
            cur.execute(sql, params)
            found = cur.fetchone()
        if found is None:
            return None
        return found[0].replace(tzinfo=UTC), found[1], found[2]  # SQLite keeps UTC without a zone

    @staticmethod
    @lru_cache(maxsize=2)
    def _latest_sql(count: int) -> str:
        return latest_of_sql(site="%(site)s", visitors=[f"%(v{i})s" for i in range(count)], low="%(low)s", high="%(high)s")


BACKENDS = {"postgresql": PostgreSQL(), "sqlite": SQLite()}


def backend() -> PostgreSQL | SQLite:
    """The store for the default database's vendor."""
    store = BACKENDS.get(connection.vendor)
    if store is None:
        raise ImproperlyConfigured(f"events cannot be stored in {connection.vendor}: PostgreSQL or SQLite")
    return store


# --- idempotency keys (events.idempotency) ------------------------------------------------


def claim_keys(claims: list[tuple[int, str, str, int]], *, now, expired_before) -> set[tuple[int, str]]:
    """Inside the transaction that stored the events: insert each (site id, key, body hash, event
    id) unless the site holds the key since ``expired_before``; the (site id, key) inserted. A
    key held by a concurrent transaction waits for its end (the primary key); callers pass each
    (site, key) once and sorted, so two transactions never wait for each other."""
    qn = connection.ops.quote_name
    table = qn(IdempotencyKey._meta.db_table)
    if connection.vendor == "postgresql":
        sql = (
            f"INSERT INTO {table} (site_id, {qn('key')}, body_hash, event_id, created_at)"
            " SELECT c.site_id, c.key, c.body_hash, c.event_id, %s"
            " FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::bigint[]) AS c(site_id, key, body_hash, event_id)"
            + _KEY_UPSERT.format(table=table, key=qn("key"))
        )
        params = [now, *(list(column) for column in zip(*claims, strict=True)), expired_before]
        with backend()._cursor(sql) as cur:
            cur.execute(sql, params, prepare=True)
            return {(site_id, key) for site_id, key, _ in cur.fetchall()}
    adapt = connection.ops.adapt_datetimefield_value
    values = ", ".join(["(%s, %s, %s, %s, %s)"] * len(claims))
    params = [value for claim in claims for value in (*claim, adapt(now))] + [adapt(expired_before)]
    with connection.cursor() as cur:
        cur.execute(
            f"INSERT INTO {table} (site_id, {qn('key')}, body_hash, event_id, created_at) VALUES {values}"
            + _KEY_UPSERT.format(table=table, key=qn("key")),
            params,
        )
        return {(site_id, key) for site_id, key, _ in cur.fetchall()}


# A key claimed more than a day ago (the parameter) is taken over: it no longer counts.
_KEY_UPSERT = (
    " ON CONFLICT (site_id, {key}) DO UPDATE SET body_hash = excluded.body_hash, event_id = excluded.event_id,"
    " created_at = excluded.created_at WHERE {table}.created_at < %s RETURNING site_id, {key}, event_id"
)


def insert_claimed(rows: list[dict], claims: list[tuple[int, str, str]], *, now, expired_before) -> dict:
    """Single events (``insert``'s rows, without ``earlier_visitor``), each with its claim (site
    id, key, body hash), one per (site, key), sorted: store those whose key is free (or expired)
    with their keys, atomically; {(site id, key): event id} of those stored.

    PostgreSQL: one statement, as cheap as ``insert``'s: the key rows are inserted first, each
    taking its event's id from the sequence, and only the events of the keys inserted follow,
    under those ids. SQLite: the events, then their keys, then the events whose key was held are
    deleted again, in one transaction."""
    if connection.vendor != "postgresql":
        with transaction.atomic():
            ids = backend().insert(rows)
            won = claim_keys([(*claim, event_id) for claim, event_id in zip(claims, ids, strict=True)],
                             now=now, expired_before=expired_before)  # fmt: skip
            lost = [event_id for claim, event_id in zip(claims, ids, strict=True) if claim[:2] not in won]
            if lost:
                Event.objects.filter(pk__in=lost).delete()
        return {claim[:2]: event_id for claim, event_id in zip(claims, ids, strict=True) if claim[:2] in won}
    sql = _claimed_insert_sql()
    payload = [{**row, "occurred_at": _isoformat(row["occurred_at"]), "received_at": _isoformat(row["received_at"]),
                "idempotency_key": claim[1]} for row, claim in zip(rows, claims, strict=True)]  # fmt: skip
    sites, keys, hashes = (list(column) for column in zip(*claims, strict=True))
    params = [now, sites, keys, hashes, expired_before, json.dumps(payload, ensure_ascii=False, check_circular=False)]
    with backend()._cursor(sql) as cur:
        cur.execute(sql, params, prepare=True)
        stored = {(site_id, key): event_id for site_id, key, event_id in cur.fetchall()}
    backend().statistics.note_stored(len(stored))
    return stored


@lru_cache(maxsize=1)
def _claimed_insert_sql() -> str:
    """``insert``'s statement (``PostgreSQL.insert_sql(earlier=False)``) behind the claim of its
    rows' keys, each row stored under the event id its claim took, or not at all."""
    qn = connection.ops.quote_name
    fields = _concrete_fields()
    sequence = backend().copy_plan()[2]
    defaults = {f.column: f.default for f in fields if f.has_default() and not callable(f.default)}
    base = f"json_populate_record(NULL::{qn(TABLE)}, '{json.dumps(defaults).replace(chr(39), chr(39) * 2)}'::json)"
    gap = PostgreSQL.GAP
    lookup = latest_session_sql(site="b.site_id", visitor="b.visitor", columns="e.session",
                                low=f"b.occurred_at - {gap}", high=f"b.occurred_at + {gap}")  # fmt: skip
    columns = [f"COALESCE(({lookup}), b.session)" if f.column == "session" else f"b.{qn(f.column)}" for f in fields]
    keys = qn(IdempotencyKey._meta.db_table)
    return (
        f"WITH claimed AS (INSERT INTO {keys} (site_id, {qn('key')}, body_hash, event_id, created_at)"
        f" SELECT c.site_id, c.key, c.body_hash, nextval('{sequence}'), %s"
        " FROM unnest(%s::bigint[], %s::text[], %s::text[]) WITH ORDINALITY AS c(site_id, key, body_hash, n) ORDER BY c.n"
        + _KEY_UPSERT.format(table=keys, key=qn("key"))
        + f"), stored AS (INSERT INTO {qn(TABLE)} (id, {', '.join(qn(f.column) for f in fields)})"
        f" SELECT c.event_id, {', '.join(columns)}"
        f" FROM json_array_elements(%s::json) WITH ORDINALITY AS j(doc, ordinality)"
        f" CROSS JOIN LATERAL json_populate_record({base}, j.doc) AS b"
        f" JOIN claimed c ON c.site_id = b.site_id AND c.{qn('key')} = j.doc->>'idempotency_key'"
        f" ORDER BY j.ordinality RETURNING id)"
        f" SELECT c.site_id, c.{qn('key')}, c.event_id FROM claimed c"
    )


# --- export (events.export) and import (events.importers) ---------------------------------

EXPORT_PAGE = 5000


def stream_events(site_id: int, window: tuple | None, fields: tuple[str, ...]):
    """The site's events with ``window[0] <= occurred_at < window[1]`` (all for None) as tuples
    of ``fields``, in (occurred_at, id) order, in constant memory. PostgreSQL: one server-side
    cursor in one transaction, so one snapshot. SQLite: pages by keyset, each its own read, so
    no read transaction holds back the WAL's checkpoints while a slow client downloads."""
    rows = Event.objects.filter(site_id=site_id)
    if window is not None:
        rows = rows.filter(occurred_at__gte=window[0], occurred_at__lt=window[1])
    if connection.vendor == "postgresql":
        with transaction.atomic():  # a cursor WITHOUT HOLD: in autocommit Django's would be materialized first
            yield from rows.order_by("occurred_at", "id").values_list(*fields).iterator(chunk_size=EXPORT_PAGE)
        return
    page = rows
    while True:
        found = list(page.order_by("occurred_at", "id").values_list("occurred_at", "id", *fields)[:EXPORT_PAGE])
        for row in found:
            yield row[2:]
        if len(found) < EXPORT_PAGE:
            return
        at, last = found[-1][:2]
        # The lower bound moves with the page, so the (site, occurred_at) index starts there.
        page = rows.filter(occurred_at__gte=at).exclude(occurred_at=at, id__lte=last)


IMPORT_TABLE = "events_import"
# An imported row is already stored when the site holds as many rows equal in these.
IMPORT_IDENTITY = ("occurred_at", "received_at", "kind", "name", "visitor", "session", "path")


def import_rows(rows: list[dict]) -> int:
    """Store rows (every Event field but the id; one site) that the site does not hold yet, in one
    transaction; how many were new. The rows go into a scratch table (COPY on PostgreSQL), and
    one INSERT takes those of which the site holds fewer equal rows (``IMPORT_IDENTITY``) than
    the chunk does; they get new ids from the table's sequence."""
    if not rows:
        return 0
    qn = connection.ops.quote_name
    fields = [f.column for f in _concrete_fields()]
    names = ", ".join(qn(c) for c in fields)
    postgres = connection.vendor == "postgresql"
    nullable = {f.column for f in _concrete_fields() if f.null}
    # Null-safe equality only where nulls occur: "IS NOT DISTINCT FROM" cannot bound an index scan.
    same = {c: (" IS NOT DISTINCT FROM " if postgres else " IS ") if c in nullable else " = " for c in IMPORT_IDENTITY}
    matches = " AND ".join(f"e.{qn(c)}{same[c]}i.{qn(c)}" for c in IMPORT_IDENTITY)
    insert = (
        f"INSERT INTO {qn(TABLE)} ({names}) SELECT {', '.join(f'i.{qn(c)}' for c in fields)} FROM ("
        f"SELECT s.*, row_number() OVER (PARTITION BY {', '.join(f's.{qn(c)}' for c in IMPORT_IDENTITY)}) AS copy_number"
        f" FROM {IMPORT_TABLE} s) i WHERE i.copy_number > (SELECT count(*) FROM {qn(TABLE)} e"
        f" WHERE e.site_id = %s AND {matches}) ORDER BY i.occurred_at"
    )
    site_id = rows[0]["site_id"]
    with transaction.atomic():
        with connection.cursor() as cur:
            if postgres:
                cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS {IMPORT_TABLE} ON COMMIT DELETE ROWS AS"
                            f" SELECT {names} FROM {qn(TABLE)} WITH NO DATA")  # fmt: skip
                cur.execute(f"TRUNCATE {IMPORT_TABLE}")  # empty already, unless an outer transaction holds the last chunk
                # Each row's count of equal events must come from the (site, occurred_at) index: the
                # statistics of a table filled by the import itself say it is empty, and a scan per row
                # would be quadratic.
                cur.execute("SET LOCAL enable_seqscan = off; SET LOCAL jit = off")
                with cur.cursor.copy(f"COPY {IMPORT_TABLE} ({names}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row([json.dumps(row[c], ensure_ascii=False) if c == "metadata" else row[c] for c in fields])
            else:
                cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS {IMPORT_TABLE} AS SELECT {names} FROM {qn(TABLE)} WHERE 0")
                cur.execute(f"DELETE FROM {IMPORT_TABLE}")
                adapt = connection.ops.adapt_datetimefield_value
                metadata = Event._meta.get_field("metadata")
                encode = lambda value: metadata.get_db_prep_value(value, connection)  # noqa: E731  (the stored JSON text)
                values = [
                    [adapt(row[c]) if c in ("occurred_at", "received_at") else encode(row[c]) if c == "metadata" else row[c]
                     for c in fields]
                    for row in rows
                ]  # fmt: skip
                cur.executemany(f"INSERT INTO {IMPORT_TABLE} ({names}) VALUES ({', '.join(['%s'] * len(fields))})", values)
            cur.execute(insert, [site_id])
            return cur.rowcount


# --- monthly partitions (PostgreSQL) ---------------------------------------------------------


def month_bounds(month: date) -> tuple[datetime, datetime]:
    """[first instant, first instant of the next month) of ``month`` in UTC: a partition's range."""
    lo = datetime(month.year, month.month, 1, tzinfo=UTC)
    return lo, datetime(month.year + month.month // 12, month.month % 12 + 1, 1, tzinfo=UTC)


class MonthlyPartitions:
    """The PostgreSQL events table as a range-partitioned table: one partition per UTC month of
    ``occurred_at``, named ``events_event_pYYYYMM``, and a default partition that takes any row
    no month partition covers, so no insert is ever refused.

    A partitioned table's primary key must hold the partition key, so it is (id, occurred_at):
    ids still come from one identity sequence and stay unique, but nothing can reference an
    event by a foreign key (nothing does). Every other index is the model's, leading with the
    site, built on each partition."""

    DEFAULT = f"{TABLE}_default"
    NAME = re.compile(rf"^{TABLE}_p(\d{{4}})(\d{{2}})$")
    # DETACH waits for running queries, and inserts queue behind it: this long at most, then the
    # next run tries again.
    LOCK_TIMEOUT = "SET LOCAL lock_timeout = '3s'"

    @staticmethod
    def name(month: date) -> str:
        return f"{TABLE}_p{month:%Y%m}"

    def is_partitioned(self) -> bool:
        with connection.cursor() as cur:
            cur.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)", [TABLE])
            row = cur.fetchone()
        return row is not None and row[0] == "p"

    def months(self) -> list[date]:
        """The months that have a partition, oldest first."""
        with connection.cursor() as cur:
            cur.execute(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass",
                [TABLE],
            )
            names = [self.NAME.match(name) for (name,) in cur.fetchall()]
        return sorted(date(int(m[1]), int(m[2]), 1) for m in names if m)

    def default_months(self) -> list[date]:
        """The months of the rows the default partition holds."""
        with connection.cursor() as cur:
            cur.execute(f"SELECT DISTINCT date_trunc('month', occurred_at AT TIME ZONE 'UTC')::date FROM {self.DEFAULT}")
            return sorted(month for (month,) in cur.fetchall())

    def create(self, month: date) -> bool:
        """Attach ``month``'s partition unless it exists, moving its rows out of the default partition;
        whether it was created. Built beside the table and attached, which locks the table only
        against other DDL (CREATE … PARTITION OF would block every insert meanwhile)."""
        name, (lo, hi) = self.name(month), month_bounds(month)
        bounds = f"FROM ('{lo.isoformat()}') TO ('{hi.isoformat()}')"
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute(self.LOCK_TIMEOUT)
            cur.execute("SELECT to_regclass(%s) IS NOT NULL", [name])
            if cur.fetchone()[0]:
                return False
            cur.execute(f"CREATE TABLE {name} (LIKE {TABLE} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE)")
            cur.execute(
                f"WITH moved AS (DELETE FROM {self.DEFAULT} WHERE occurred_at >= %s AND occurred_at < %s RETURNING *)"
                f" INSERT INTO {name} SELECT * FROM moved",
                [lo, hi],
            )
            cur.execute(f"ALTER TABLE {TABLE} ATTACH PARTITION {name} FOR VALUES {bounds}")
        return True

    def drop(self, month: date) -> None:
        """Inside the caller's transaction: detach ``month``'s partition and drop it with its rows."""
        name = self.name(month)
        with connection.cursor() as cur:
            cur.execute(self.LOCK_TIMEOUT)
            cur.execute(f"ALTER TABLE {TABLE} DETACH PARTITION {name}")
            cur.execute(f"DROP TABLE {name}")

    def partition(self, months: list[date], *, progress=None) -> int:
        """Turn the plain events table into a partitioned one holding the same rows (a partition
        for every month with rows and every month in ``months``); the rows copied."""
        return self._rebuild(partitioned=True, months=months, progress=progress)

    def unpartition(self) -> int:
        """The reverse: a plain table with the primary key (id) again; the rows copied."""
        return self._rebuild(partitioned=False, months=[], progress=None)

    def _rebuild(self, *, partitioned: bool, months: list[date], progress) -> int:
        """Build the other kind of table beside the current one under a lock that lets queries read
        and makes writers wait, copy the rows month by month, add the keys, indexes and
        constraints the current one has, and swap names, all in one transaction: a failure leaves
        the table as it was. The identity sequence goes on where it was."""
        new = f"{TABLE}_new"
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute(f"LOCK TABLE {TABLE} IN EXCLUSIVE MODE")
            cur.execute(
                "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                " WHERE i.indrelid = %s::regclass AND NOT i.indisprimary ORDER BY c.relname",
                [TABLE],
            )
            indexes = cur.fetchall()
            cur.execute(
                "SELECT conname, contype, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass"
                " AND contype IN ('p', 'c', 'f') ORDER BY conname",
                [TABLE],
            )
            constraints = cur.fetchall()
            (key_name,) = [name for name, kind, _ in constraints if kind == "p"]
            cur.execute("SELECT pg_get_serial_sequence(%s, 'id')", [TABLE])
            (sequence,) = cur.fetchone()
            scheme = " PARTITION BY RANGE (occurred_at)" if partitioned else ""
            cur.execute(f"CREATE TABLE {new} (LIKE {TABLE} INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING STORAGE"
                        f" INCLUDING COMMENTS){scheme}")  # fmt: skip
            ranges = [(None, None)]  # a plain table: every row in one statement
            if partitioned:
                cur.execute(f"SELECT min(occurred_at), max(occurred_at) FROM {TABLE}")
                first, last = cur.fetchone()
                held = set(months)
                month = None if first is None else date(first.year, first.month, 1)
                while month is not None and month <= last.date():
                    held.add(month)
                    month = month_bounds(month)[1].date()
                ranges = [month_bounds(month) for month in sorted(held)]
                for lo, hi in ranges:
                    cur.execute(f"CREATE TABLE {self.name(lo.date())} PARTITION OF {new}"
                                f" FOR VALUES FROM ('{lo.isoformat()}') TO ('{hi.isoformat()}')")  # fmt: skip
                cur.execute(f"CREATE TABLE {self.DEFAULT} PARTITION OF {new} DEFAULT")
            copied = 0
            for lo, hi in ranges:  # every row's month is among them
                where, params = ("occurred_at >= %s AND occurred_at < %s", [lo, hi]) if lo else ("true", [])
                cur.execute(f"INSERT INTO {new} SELECT * FROM {TABLE} WHERE {where}", params)
                copied += cur.rowcount
                if progress is not None:
                    progress(lo, copied)
            cur.execute(f"SELECT last_value, is_called FROM {sequence}")
            last_value, is_called = cur.fetchone()
            cur.execute("SELECT setval(pg_get_serial_sequence(%s, 'id'), %s, %s)", [new, last_value, is_called])
            cur.execute("SELECT pg_get_serial_sequence(%s, 'id')", [new])
            (new_sequence,) = cur.fetchone()
            # The current table's index names are taken (they are unique per schema): rename them first.
            cur.execute(f'ALTER TABLE {TABLE} RENAME CONSTRAINT "{key_name}" TO "{key_name[:50]}_retired"')
            for name, _ in indexes:
                cur.execute(f'ALTER INDEX "{name}" RENAME TO "{name[:50]}_retired"')
            key = "(id, occurred_at)" if partitioned else "(id)"
            cur.execute(f'ALTER TABLE {new} ADD CONSTRAINT "{key_name}" PRIMARY KEY {key}')
            for _, definition in indexes:
                cur.execute(re.sub(r" ON (ONLY )?\S+ USING ", f" ON {new} USING ", definition, count=1))
            for name, kind, definition in constraints:
                if kind != "p":
                    cur.execute(f'ALTER TABLE {new} ADD CONSTRAINT "{name}" {definition}')
            cur.execute(f"DROP TABLE {TABLE}")
            cur.execute(f"ALTER TABLE {new} RENAME TO {TABLE}")
            cur.execute(f"ALTER SEQUENCE {new_sequence} RENAME TO {sequence.rsplit('.', 1)[-1]}")
            cur.execute(f"ANALYZE {TABLE}")
        return copied


def partitions() -> MonthlyPartitions | None:
    """The partitions of the events table: None unless it is a partitioned PostgreSQL table."""
    store = PARTITIONS.get(connection.vendor)
    return store if store is not None and store.is_partitioned() else None


PARTITIONS = {"postgresql": MonthlyPartitions()}
