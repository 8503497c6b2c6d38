"""The session lookups are planned on the (site, visitor, occurred_at) index on a young table
too. With the statistics of the empty table (a new installation, where ANALYZE last saw no
rows) the planner could pick the (site, occurred_at) index and read every event of the site
in the hour around each row.
"""

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from events import storage
from events.models import Event
from events.visitors import hash_caller_visitor

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


def _plan(sql, params) -> str:
    with connection.cursor() as cur:
        cur.execute("EXPLAIN " + sql, params)
        return "\n".join(row[0] for row in cur.fetchall())


def _assert_visitor_index(plan):
    # Each partition of a partitioned table has its own copy of each index, named after its columns.
    assert re.search(r"using (event_site_visitor_time|\w+_site_id_visitor_occurred_at_idx)", plan), plan
    assert not re.search(r"using (event_site_time |\w+_site_id_occurred_at_idx)", plan), plan


@pytest.mark.django_db(transaction=True)
def test_a_young_table_is_analyzed_as_it_grows(api, cast, monkeypatch):
    """The statistics ANALYZE took of the empty table are replaced once the table has grown
    (``storage.FreshStatistics``), so the single-event INSERT is planned from real ones."""
    import time

    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's planner statistics")
    statistics = storage.backend().statistics
    for name, value in {"first_check": 200, "check_every": 200, "done": False, "next": 200}.items():
        monkeypatch.setattr(statistics, name, value)
    table = Event._meta.db_table
    with connection.cursor() as cur:
        cur.execute(f"ANALYZE {table}")  # as on a new installation: the statistics of an empty table

    def estimate():
        with connection.cursor() as cur:
            cur.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass", [table])
            return cur.fetchone()[0]

    assert estimate() <= 0
    deadline = time.monotonic() + 30
    sent = 0
    while estimate() < 1000:  # the stored-row counts reach the statistics views within ~1 s
        assert time.monotonic() < deadline, f"no ANALYZE after {sent} events"
        items = [{"event_name": "signup", "visitor_id": f"v{sent + i}", "timestamp": "2026-01-15T11:30:00Z"} for i in range(500)]
        assert api.post("/api/v1/events/batch", {"events": items}).json()["accepted"] == 500
        sent += 500
        time.sleep(0.2)
    row = {"site_id": cast.site.pk, "kind": 2, "name": "signup", "occurred_at": NOW.isoformat(),
           "received_at": NOW.isoformat(), "visitor": 7, "session": 1, "metadata": {}}  # fmt: skip
    for earlier in (False, True):
        _assert_visitor_index(_plan(storage.backend().insert_sql(earlier=earlier), [json.dumps([row])]))
    visitors = "{" + ",".join(str(v) for v in range(500)) + "}"
    times = "{" + ",".join((NOW - timedelta(seconds=7 * v)).isoformat() for v in range(500)) + "}"
    _assert_visitor_index(_plan(storage.PostgreSQL.NEARBY_SQL, [visitors, times, cast.site.pk]))


@pytest.mark.django_db
def test_a_lookup_does_not_read_the_visitors_later_history(cast):
    """A batch item dated before a long run of its visitor's later events (a backfill, or a
    busy visitor) is looked up at the right spot of the index: the index pages it reads do
    not grow with the events stored after its window. It counts buffers (EXPLAIN), not time."""
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's buffer counts")
    from events.models import Kind

    visitor, at = 42, NOW - timedelta(days=3)
    later = [at + timedelta(hours=1, minutes=m) for m in range(6000)]  # ~30 leaf pages of index entries
    rows = [Event(site=cast.site, kind=Kind.CUSTOM, name="signup", occurred_at=when, received_at=NOW, visitor=visitor,
                  session=2) for when in [at - timedelta(minutes=10), *later]]  # fmt: skip
    Event.objects.bulk_create(rows)
    with connection.cursor() as cur:
        cur.execute(f"ANALYZE {Event._meta.db_table}")
        cur.execute("EXPLAIN (ANALYZE, BUFFERS, TIMING OFF, FORMAT JSON) " + storage.PostgreSQL.NEARBY_SQL,
                    [f"{{{visitor}}}", f"{{{at.isoformat()}}}", cast.site.pk])  # fmt: skip
        plan = cur.fetchone()[0][0]["Plan"]
    assert plan["Actual Rows"] == 1  # found the event 10 minutes before
    buffers = plan["Shared Hit Blocks"] + plan["Shared Read Blocks"]
    assert buffers <= 8, f"the lookup read {buffers} buffers"


@pytest.mark.django_db
def test_a_new_sites_batch_is_looked_up_by_visitor(api, cast):
    """A site added to an installation whose statistics predate it: ANALYZE saw only the other
    sites' events, so the planner estimates the new site's rows at about none and the (site,
    time) index looks cheaper; the table never doubles, so ``FreshStatistics`` does not step
    in. Counted by the index scans of the batch's own transaction: the lookup's guard leaves
    the planner no index but the visitor's."""
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's planner")
    from django.utils import timezone

    from events.models import Kind

    now = timezone.now().replace(microsecond=0)
    theirs = [hash_caller_visitor(site_id=cast.outsider_site.pk, visitor_id=f"v{i}") for i in range(5000)]
    ours = [hash_caller_visitor(site_id=cast.site.pk, visitor_id=f"v{i}") for i in range(5000)]
    other = [Event(site=cast.outsider_site, kind=Kind.CUSTOM, name="x", occurred_at=now - timedelta(seconds=s // 500),
                   received_at=now, visitor=theirs[s % 5000], session=s % 5000) for s in range(60_000)]  # fmt: skip
    Event.objects.bulk_create(other, batch_size=5000)
    table = Event._meta.db_table
    with connection.cursor() as cur:
        cur.execute(f"ANALYZE {table}")  # the statistics know only the other site
    mine = [Event(site=cast.site, kind=Kind.CUSTOM, name="x", occurred_at=now - timedelta(seconds=s // 500), received_at=now,
                  visitor=ours[s % 5000], session=s % 5000) for s in range(10_000)]  # fmt: skip
    Event.objects.bulk_create(mine, batch_size=5000)

    def scans():
        with connection.cursor() as cur:
            # Summed over the partitions' indexes when the table is partitioned (events.storage.MonthlyPartitions).
            cur.execute(
                "SELECT i.name, pg_stat_get_xact_numscans(i.name::regclass) + coalesce((SELECT sum(pg_stat_get_xact_numscans("
                "t.relid)) FROM pg_partition_tree(i.name::regclass) t WHERE t.isleaf), 0) FROM unnest(%s::text[]) i(name)",
                [["event_site_time", "event_site_visitor_time"]],
            )
            return dict(cur.fetchall())

    before = scans()
    items = [{"event_name": "signup", "visitor_id": f"v{i}"} for i in range(500)]
    assert api.post("/api/v1/events/batch", {"events": items}).json()["accepted"] == 500
    after = scans()
    assert after["event_site_time"] == before["event_site_time"], "the lookup scanned the (site, time) index"
    assert after["event_site_visitor_time"] > before["event_site_visitor_time"]


@pytest.mark.django_db
def test_the_lookups_guard_compiles_nothing_after_it(cast):
    """With sorts off, a statement that must sort anyway — the id reservation after the lookup,
    ``ORDER BY`` over its nextval() — is costed past ``jit_above_cost`` and would be JIT-compiled
    on every batch; the guard turns JIT off with the sorts."""
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's planner")
    from django.db import transaction

    with transaction.atomic(), connection.cursor() as cur:
        storage.backend().nearby_sessions(cast.site.pk, [{"visitor": 7, "occurred_at": NOW}])
        cur.execute("SHOW enable_sort")
        assert cur.fetchone()[0] == "off"
        cur.execute("EXPLAIN (FORMAT JSON) SELECT nextval('events_event_id_seq') FROM generate_series(1, 500) ORDER BY 1")
        plan = cur.fetchone()[0][0]
    assert "JIT" not in plan, plan["JIT"]
