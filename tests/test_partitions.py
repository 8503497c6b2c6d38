"""PostgreSQL: the events table partitioned by month. An existing installation's plain table is
converted by ``manage.py partition_events`` with every answer unchanged and ingest going on; the
rollup timer keeps the coming months' partitions ready; rows of a month without a partition wait
in the default one and move when it is created."""

import io
from datetime import UTC, date, datetime, timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from analytics import rollups
from events import storage
from events.models import Event
from events.partitions import ensure_partitions, months_ahead

pytestmark = pytest.mark.skipif("connection.vendor != 'postgresql'", reason="partitions are PostgreSQL's")

EVENTS = "/api/v1/events"
BATCH = "/api/v1/events/batch"
QUERIES = [
    {"metrics": "page_views,unique_visitors,events,visits,bounce_rate,revenue"},
    {"metrics": "page_views,visits", "breakdown": "page", "interval": "month"},
    {"metrics": "events,unique_visitors", "breakdown": "event_name", "filters": "country==DE"},
]


def _partitions_of(table):
    with connection.cursor() as cur:
        cur.execute("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass",
                    [table])  # fmt: skip
        return sorted(name for (name,) in cur.fetchall())


def _indexes(table):
    with connection.cursor() as cur:
        cur.execute("SELECT indexdef FROM pg_indexes WHERE tablename = %s ORDER BY indexname", [table])
        return [d for (d,) in cur.fetchall()]


def _answers(api, start, end):
    out = []
    for q in QUERIES:
        response = api.get("/api/v1/analytics", {**q, "start_date": start.isoformat(), "end_date": end.isoformat()})
        assert response.status_code == 200, response.json()
        body = response.json()
        body.pop("query", None)
        out.append(body)
    return out


def _history(cast):
    """A year of events over both sites, months apart, some through the API (its session rule)."""
    now = timezone.now()
    rows = []
    for day in range(0, 400, 3):
        at = now - timedelta(days=day, minutes=day)
        for i in range(3):
            rows.append(Event(site=cast.site, kind=1, name="pageview", occurred_at=at + timedelta(minutes=i), visitor=day % 7,
                              session=day, path=f"/p{i}", country="DE" if i else "FR"))  # fmt: skip
        rows.append(Event(site=cast.outsider_site, kind=2, name="signup", occurred_at=at, visitor=day))
        rows.append(Event(site=cast.site, kind=3, name="purchase", occurred_at=at, price=1000 + day, currency="EUR", quantity=1))
    Event.objects.bulk_create(rows)


def test_partition_events_converts_a_plain_table_with_the_same_answers_and_ingest_goes_on(api, cast):
    store = storage.PARTITIONS["postgresql"]
    if store.is_partitioned():
        store.unpartition()  # the table of an installation from before partitions
    assert not store.is_partitioned() and _partitions_of(storage.TABLE) == []
    _history(cast)
    for i in range(5):
        sent = {"event_name": "signup", "visitor_id": f"u{i}", "metadata": {"plan": "pro"}}
        assert api.post(EVENTS, sent).status_code == 201
    rollups.refresh(site=cast.site)  # closed days rolled up, today raw
    today = timezone.now().date()
    before = _answers(api, today - timedelta(days=420), today)
    count, top = Event.objects.count(), Event.objects.order_by("-pk").values_list("pk", flat=True).first()
    connection.check_constraints()  # a test's deferred foreign-key checks would keep the old table from being dropped

    out = io.StringIO()
    call_command("partition_events", stdout=out)

    assert "events table partitioned by month" in out.getvalue()
    assert store.is_partitioned()
    months = store.months()
    assert len(months) >= 14 and set(months_ahead(timezone.now())) <= set(months)
    assert Event.objects.count() == count
    assert _answers(api, today - timedelta(days=420), today) == before
    with connection.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {store.DEFAULT}")
        assert cur.fetchone()[0] == 0  # every month has its partition
    # Every index of the parent leads with the site but the primary key, which must hold the partition key.
    defs = _indexes(storage.TABLE)
    assert any("(id, occurred_at)" in d for d in defs)
    assert all("(site_id," in d for d in defs if "(id, occurred_at)" not in d) and len(defs) == 3
    # Ingest goes on: single events, batches (COPY) and their session lookups; ids go on after the old ones.
    response = api.post(EVENTS, {"event_name": "signup", "visitor_id": "u1", "timestamp": timezone.now().isoformat()})
    assert response.status_code == 201
    new_id = int(response.json()["event_id"].removeprefix("evt_"))
    assert new_id > top
    batch = [{"event_name": "later", "visitor_id": f"u{i}", "timestamp": timezone.now().isoformat()} for i in range(30)]
    assert api.post(BATCH, {"events": batch}).json()["accepted"] == 30
    assert Event.objects.count() == count + 31
    first = Event.objects.get(pk=new_id)
    assert first.session == Event.objects.filter(name="signup", visitor=first.visitor).exclude(pk=new_id).get().session
    assert len(set(Event.objects.values_list("pk", flat=True))) == count + 31

    call_command("partition_events", stdout=io.StringIO())  # a second run finds nothing to do


def test_rows_of_a_month_without_a_partition_wait_in_the_default_one_and_move_in(cast):
    store = storage.partitions()
    if store is None:
        pytest.skip("the events table is not partitioned")
    Event.objects.bulk_create([Event(site=cast.site, kind=2, name="old", occurred_at=datetime(2019, 2, d, tzinfo=UTC))
                               for d in (1, 28)])  # fmt: skip
    assert date(2019, 2, 1) in store.default_months()
    connection.check_constraints()
    assert date(2019, 2, 1) in ensure_partitions()
    assert date(2019, 2, 1) in store.months() and date(2019, 2, 1) not in store.default_months()
    assert Event.objects.filter(name="old").count() == 2
    with connection.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {store.name(date(2019, 2, 1))}")
        assert cur.fetchone()[0] == 2
    assert ensure_partitions() == []
