"""Analytics' database-specific SQL: PostgreSQL and SQLite side by side.

Everything else in the package speaks the Django ORM and calls these when the two databases
need different SQL: metadata text and ASCII lowering (expression compilers), revenue sums,
the statement timeout, the settled event id, the rollup table's bulk insert and upkeep.
"""

import json
import string
import time
from contextlib import contextmanager

from django.db import OperationalError, connection, transaction
from django.db.models import CharField, F, Func, Max, Sum, Value
from django.db.models.functions import Coalesce

from events.models import Event

from .models import Rollup


def is_postgresql() -> bool:
    return connection.vendor == "postgresql"


class MetadataText(Func):
    """The text of the metadata value under ``key``; NULL when the key is missing or its value
    is JSON null.

    The key is always an object key (Django's ``KeyTextTransform`` reads "2024" or "-1" as an
    array index). The text is the same on both databases: a string as is, ``true``/``false``,
    a number as its JSON literal in positional notation, which is how PostgreSQL's jsonb
    prints it and how ``events.models.MetadataEncoder`` stores it for SQLite."""

    output_field = CharField()

    def __init__(self, key: str):
        super().__init__(F("metadata"))
        self.key = key

    def as_postgresql(self, compiler, connection, **extra):
        sql, params = compiler.compile(self.source_expressions[0])
        return f"({sql} ->> %s::text)", (*params, self.key)

    def as_sqlite(self, compiler, connection, **extra):
        sql, params = compiler.compile(self.source_expressions[0])
        if '"' in self.key:  # a JSON path label cannot hold '"': find the key with json_each
            text = "CASE j.type WHEN 'null' THEN NULL WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' "
            text += "ELSE CAST(j.value AS TEXT) END"
            return f"(SELECT {text} FROM json_each({sql}) AS j WHERE j.key = %s)", (*params, self.key)
        path = "$." + json.dumps(self.key)  # a quoted label: never an array index
        return (
            f"CASE json_type({sql}, %s) WHEN 'text' THEN json_extract({sql}, %s) WHEN 'null' THEN NULL ELSE {sql} -> %s END",
            (*params, path, *params, path, *params, path),
        )


class AsciiLower(Func):
    """Text with the ASCII letters A-Z lowered and every other character kept, so ``~`` ignores
    ASCII case alike on both databases whatever their locale (PostgreSQL's lower() follows the
    database's ctype; SQLite's knows only ASCII)."""

    output_field = CharField()

    def as_postgresql(self, compiler, connection, **extra):
        sql, params = compiler.compile(self.source_expressions[0])
        return f"translate({sql}, %s, %s)", (*params, string.ascii_uppercase, string.ascii_lowercase)

    def as_sqlite(self, compiler, connection, **extra):
        sql, params = compiler.compile(self.source_expressions[0])
        return f"lower({sql})", params


_LOW_BITS = 32


def revenue_sums(**extra) -> dict:
    """Aggregates of revenue (price × quantity) that ``revenue_total`` joins into one integer.

    SQLite's SUM of integers raises "integer overflow" past 2^63, which ten purchases at the
    largest price and quantity reach: there the high and low 32 bits of each amount are summed
    apart. PostgreSQL sums bigint into numeric."""
    amount = F("price") * Coalesce("quantity", Value(1))
    if is_postgresql():
        return {"rev": Sum(amount, **extra)}
    return {
        "rev_high": Sum(amount.bitrightshift(_LOW_BITS), **extra),
        "rev_low": Sum(amount.bitand((1 << _LOW_BITS) - 1), **extra),
    }


def revenue_total(sums) -> int:
    """The revenue of ``revenue_sums``' values, in their order."""
    if len(sums) == 2:
        high, low = sums
        return ((high or 0) << _LOW_BITS) + (low or 0)
    return int(sums[0] or 0)


class StatementTimeout(Exception):
    pass


@contextmanager
def statement_timeout(ms: int):
    """Cancel any statement of the block that runs longer than ``ms``; raises StatementTimeout."""
    try:
        if is_postgresql():
            with transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute("SELECT set_config('statement_timeout', %s, true)", [str(ms)])
                yield
        else:
            connection.ensure_connection()
            deadline = time.monotonic() + ms / 1000
            raw = connection.connection
            raw.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
            try:
                yield
            finally:
                raw.set_progress_handler(None, 0)
    except OperationalError as exc:
        text = str(exc).lower()
        if "statement timeout" in text or "interrupted" in text or "canceling statement" in text:
            raise StatementTimeout from None
        raise


_WRITERS = (
    "SELECT virtualtransaction FROM pg_locks WHERE locktype = 'relation' AND relation = %s::regclass"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    " AND mode = 'RowExclusiveLock' AND granted AND pid IS DISTINCT FROM pg_backend_pid()"  # prepared: no pid
)


def settled_event_id(timeout: float) -> int | None:
    """The highest committed event id such that no event with a lower id can still appear;
    None if an open transaction writing events did not end within ``timeout`` seconds.

    PostgreSQL hands out an id when a row is written, not when it commits, so an open
    transaction may hold an id below the highest visible one. Every writer holds the table's
    ROW EXCLUSIVE lock from before it takes an id until it ends (the batch takes it before
    reserving ids), so: read the highest id and, in the same statement, the transactions
    holding that lock, and wait until they have all ended. Nothing is locked by this.
    SQLite serializes writers and allocates ids inside the writing transaction."""
    if not is_postgresql():
        return Event.objects.aggregate(m=Max("id"))["m"] or 0
    table = Event._meta.db_table
    with connection.cursor() as cur:
        cur.execute(f"SELECT (SELECT max(id) FROM {connection.ops.quote_name(table)}), array({_WRITERS})", [table])
        top, writers = cur.fetchone()
        deadline = time.monotonic() + timeout
        while writers:
            if time.monotonic() > deadline:
                return None
            time.sleep(0.005)
            cur.execute(f"{_WRITERS} AND virtualtransaction = ANY(%s)", [table, writers])
            writers = [w for (w,) in cur.fetchall()]
    return top or 0


ROLLUP_COLUMNS = [
    "site_id", "grain", "start", "dimension", "value", "page_views", "events", "purchases", "revenue", "orders",
    "visitors", "visitor_count", "buyers", "buyer_count", "visits", "bounces", "duration_us", "visit_page_views",
]  # fmt: skip


def insert_rollups(rows: list) -> None:
    """Rows of ``ROLLUP_COLUMNS``: COPY on PostgreSQL, multi-row INSERTs on SQLite; both skip
    the per-field preparation of ``bulk_create``, which costs more than the build."""
    if not rows:
        return
    table = connection.ops.quote_name(Rollup._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(c) for c in ROLLUP_COLUMNS)
    with connection.cursor() as cursor:
        if is_postgresql():
            with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            return
        start = connection.ops.adapt_datetimefield_value(rows[0][2])  # one bucket: one start
        one = "(" + ", ".join(["%s"] * len(ROLLUP_COLUMNS)) + ")"
        for i in range(0, len(rows), 500):
            batch = rows[i : i + 500]
            params = [v for row in batch for v in (row[:2] + (start,) + row[3:])]
            cursor.execute(f"INSERT INTO {table} ({columns}) VALUES {', '.join([one] * len(batch))}", params)


def can_build_in_processes() -> bool:
    """Forked builders each need their own connection: PostgreSQL only, and not inside a
    transaction, whose rows the children could not see."""
    return is_postgresql() and not connection.in_atomic_block


def refresh_rollup_statistics() -> None:
    """After many new rollup rows: fresh planner statistics (the planner otherwise sorts where it
    should hash) and, outside a transaction, the visibility map for index-only scans."""
    if not is_postgresql():
        return
    verb = "ANALYZE" if connection.in_atomic_block else "VACUUM ANALYZE"
    with connection.cursor() as cursor:
        cursor.execute(f"{verb} {connection.ops.quote_name(Rollup._meta.db_table)}")


# --- rollup builds in the database -------------------------------------------------------------
# A bucket's tallies per (dimension, value) come from a few statements over the per-event rows of
# ``analytics.scan.scan_bucket_in_database`` (ORM queries, so every dimension's expression is the
# one queries use, in columns _v0 … _v<n-1>). Each groups by GROUPING SETS, one set per rolled
# dimension plus () for the totals, which PostgreSQL hashes in a single pass over the rows. A
# dimension's value is never NULL, so a result row's only non-NULL _v column names its set. Ids
# (visitors, sessions) travel as one bytea per group (int8send: 8 bytes big-endian each, repeats
# included) and are made distinct in numpy: no row per (group, id) is ever built.


def can_build_in_database() -> bool:
    return is_postgresql()


@contextmanager
def build_settings():
    """A transaction with memory for the builds' hash tables; no JIT, whose compile time is
    seconds for these wide aggregates and far more than it saves."""
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('jit', 'off', true), set_config('work_mem', '256MB', true)")
        yield


def _sets(alias: str, count: int, *extra: str) -> str:
    tail = "".join(f", {alias}.{c}" for c in extra)
    sets = ["(" + ", ".join(f"{alias}.{c}" for c in extra) + ")"]
    sets += [f'({alias}."_v{i}"{tail})' for i in range(count)]
    return "GROUP BY GROUPING SETS (" + ", ".join(sets) + ")"


def _values(alias: str, count: int) -> str:
    return ", ".join(f'{alias}."_v{i}"' for i in range(count))


def bucket_rows(sessions_sql: str, sessions_params, window_sql: str, window_params, count: int, span, window, kinds):
    """The grouped rows of a bucket ``span`` = (start, end), from ``window_sql``'s rows (session,
    occurred_at, id, kind, path, visitor, currency, price, quantity, _v0 … _v<count-1>) that can
    count in it and ``sessions_sql``'s (session, first) of the visits starting in it:

    - per visit, ordered by session: (session, page views, other events, duration µs, entry
      page, exit page), measured over its events before first + ``window``;
    - per grouping set and value, in one pass: (_v0 … _v<count-1>, page views, events,
      purchases, visitor ids, buyer ids) of the events in the span, and the ids of the visits
      that have an event with the value;
    - per grouping set, value and currency: (_v…, currency, revenue, purchases) of the span."""
    pageview, custom, purchase = kinds
    start, end = span
    events = f"({window_sql}) AS w JOIN s ON s.session = w.session WHERE w.occurred_at < s.first + %s"
    visits = f"""
        WITH s AS ({sessions_sql})
        SELECT w.session, count(*) FILTER (WHERE w.kind = %s), count(*) FILTER (WHERE w.kind <> %s),
               (extract(epoch FROM max(w.occurred_at) - min(s.first)) * 1000000)::bigint,
               (array_agg(w.path ORDER BY w.occurred_at, w.id) FILTER (WHERE w.kind = %s))[1],
               (array_agg(w.path ORDER BY w.occurred_at DESC, w.id DESC) FILTER (WHERE w.kind = %s))[1]
        FROM {events} GROUP BY w.session ORDER BY w.session"""
    inside = "w.occurred_at >= %s AND w.occurred_at < %s"
    groups = f"""
        WITH s AS ({sessions_sql})
        SELECT {_values("w", count)}, count(*) FILTER (WHERE w.kind = %s AND {inside}),
               count(*) FILTER (WHERE w.kind IN (%s, %s) AND {inside}), count(*) FILTER (WHERE w.kind = %s AND {inside}),
               string_agg(int8send(w.visitor), ''::bytea) FILTER (WHERE {inside}),
               string_agg(int8send(w.visitor), ''::bytea) FILTER (WHERE w.kind = %s AND {inside}),
               string_agg(int8send(w.session), ''::bytea) FILTER (WHERE w.occurred_at < s.first + %s)
        FROM ({window_sql}) AS w LEFT JOIN s ON s.session = w.session {_sets("w", count)}"""
    revenue = f"""
        SELECT {_values("w", count)}, w.currency, sum(w.price * coalesce(w.quantity, 1)), count(*)
        FROM ({window_sql}) AS w WHERE w.kind = %s AND {inside} {_sets("w", count, "currency")}"""
    with build_settings(), connection.cursor() as cursor:
        cursor.execute(visits, [*sessions_params, pageview, pageview, pageview, pageview, *window_params, window])
        sessions = cursor.fetchall()
        params = [*sessions_params, pageview, start, end, custom, purchase, start, end, purchase, start, end, start, end]
        cursor.execute(groups, [*params, purchase, start, end, window, *window_params])
        grouped = cursor.fetchall()
        cursor.execute(revenue, [*window_params, purchase, start, end])
        money = cursor.fetchall()
    return sessions, grouped, money


def metadata_keys(qs) -> list[str]:
    """The distinct top-level keys of ``qs``' metadata objects."""
    if not is_postgresql():
        keys = set()
        for metadata in qs.values_list("metadata", flat=True).iterator(chunk_size=5000):
            if isinstance(metadata, dict):
                keys.update(metadata)
        return sorted(keys)
    sql, params = qs.values("metadata").query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT DISTINCT jsonb_object_keys(m.metadata) FROM ({sql}) AS m WHERE jsonb_typeof(m.metadata) = 'object'", params
        )
        return sorted(key for (key,) in cursor.fetchall())
