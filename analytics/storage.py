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
