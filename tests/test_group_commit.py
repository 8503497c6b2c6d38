"""Group commit: concurrent requests of one process share one INSERT, and each still gets
its own row's id, committed before it returns; a bad row fails only its own request."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, connections
from django.utils import timezone

from events.groupcommit import GroupWriter
from events.ingest import BATCH_EVENT, event_row, ingest_one, store_rows
from events.models import Event

pytestmark = pytest.mark.django_db(transaction=True)


def test_concurrent_events_each_get_their_own_committed_row(cast):
    def send(i):
        try:
            data = {"event_name": f"e{i}", "metadata": {"i": i}, "visitor_id": f"v{i % 5}", "timestamp": None}
            return i, ingest_one(site=cast.site, kind=BATCH_EVENT, data=data)
        finally:
            connections.close_all()  # this thread's connection

    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(send, range(120)))
    ids = [event_id for _, event_id in results]
    assert len(set(ids)) == 120
    stored = dict(Event.objects.filter(id__in=ids).values_list("id", "name"))
    assert {stored[event_id] for _, event_id in results} == {f"e{i}" for i in range(120)}
    assert all(stored[event_id] == f"e{i}" for i, event_id in results)  # each id is that request's row
    # One visitor's events share a session, whichever request wrote them.
    sessions = Event.objects.filter(id__in=ids).values_list("visitor", "session").distinct()
    assert len(sessions) == 5


def _row(site, name, **extra):
    data = {"event_name": name, "metadata": {}, "timestamp": None, "visitor_id": None}
    row = event_row(site=site, kind=BATCH_EVENT, data=data, now=timezone.now())
    row.update(extra)
    return row


def test_rows_waiting_together_are_written_together_and_a_bad_one_fails_alone(cast):
    calls = []

    def recording_store(rows):
        calls.append(len(rows))
        return store_rows(rows)

    writer = GroupWriter(recording_store)
    writer.busy = True  # as if a write were in progress: the requests below queue up
    rows = [_row(cast.site, f"ok{i}") for i in range(5)] + [_row(cast.site, "bad", kind=-1)]  # kind >= 0 is a CHECK
    outcomes = {}

    def request(row):
        try:
            outcomes[row["name"]] = ("id", writer.write(row))
        except Exception as exc:
            outcomes[row["name"]] = ("error", exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=request, args=(row,)) for row in rows]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while len(writer.waiting) < len(rows) and time.monotonic() < deadline:
        time.sleep(0.01)
    writer._lead()  # the in-progress write ends: its leader takes everything waiting
    for thread in threads:
        thread.join(10)
    assert calls[0] == 6  # one statement for all six, then (it failed) each on its own
    assert sorted(calls[1:]) == [1] * 6
    assert outcomes["bad"][0] == "error" and isinstance(outcomes["bad"][1], IntegrityError)
    ids = {name: value for name, (kind, value) in outcomes.items() if kind == "id"}
    assert sorted(ids) == [f"ok{i}" for i in range(5)]
    assert dict(Event.objects.filter(id__in=ids.values()).values_list("name", "id")) == ids
    assert not writer.busy and not writer.waiting


def test_a_lone_request_writes_at_once_in_its_own_thread(cast):
    calls = []

    def recording_store(rows):
        calls.append((threading.get_ident(), [row["name"] for row in rows]))
        return store_rows(rows)

    writer = GroupWriter(recording_store)
    event_id = writer.write(_row(cast.site, "alone"))
    assert calls == [(threading.get_ident(), ["alone"])]  # no waiting for company, no other thread
    assert Event.objects.get(id=event_id).name == "alone"
    assert not writer.busy and not writer.waiting


class _Interrupted(BaseException):
    """Like a worker being stopped mid-write: not an Exception, so nothing catches it on the way."""


def test_an_interrupted_write_acknowledges_nobody(cast):
    def interrupted_store(rows):
        raise _Interrupted

    writer = GroupWriter(interrupted_store)
    writer.busy = True
    errors = []

    def request():
        try:
            writer.write(_row(cast.site, "waiting"))
        except Exception as exc:
            errors.append(exc)

    thread = threading.Thread(target=request)
    thread.start()
    deadline = time.monotonic() + 10
    while not writer.waiting and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(_Interrupted):
        writer._lead()
    thread.join(10)
    assert [type(exc) for exc in errors] == [RuntimeError]  # an error (→ 500/503), never a 201 without a row
    assert not writer.busy


def test_the_insert_is_a_prepared_statement_on_postgresql(cast):
    """Django disables psycopg's prepared statements unless configured; without them the
    INSERT would be parsed and planned on every request."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("prepared statements are PostgreSQL's")
    for i in range(2):
        store_rows([_row(cast.site, f"prepared{i}")])
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE 'INSERT INTO %%json_populate_recordset%%'")
        assert cur.fetchone()[0] == 1


@pytest.mark.parametrize(
    ("query", "expected"),
    [("", 5), ("?prepare_threshold=0", 0), ("?prepare_threshold=none", None)],
)
def test_database_url_prepare_threshold(query, expected):
    from infinity.settings import database_from_url

    assert database_from_url(f"postgres://u@h:5432/db{query}")["OPTIONS"]["prepare_threshold"] == expected


def test_database_url_bad_prepare_threshold_is_a_clear_error():
    from django.core.exceptions import ImproperlyConfigured

    from infinity.settings import database_from_url

    with pytest.raises(ImproperlyConfigured, match="prepare_threshold"):
        database_from_url("postgres://u@h:5432/db?prepare_threshold=often")


def test_a_tracker_row_joins_the_session_of_its_earlier_visitor_id_in_a_shared_write(cast):
    """A group can mix API rows with tracker hits; a hit whose visitor has a session under
    yesterday's id (a visit crossing midnight) takes that id and session, the others keep theirs."""
    now = timezone.now()
    (yesterday_id,) = store_rows([_row(cast.site, "before-midnight", visitor=111, occurred_at=now - timedelta(minutes=5))])
    before = Event.objects.get(pk=yesterday_id)
    api = _row(cast.site, "api", visitor=222)
    hit = _row(cast.site, "pageview", visitor=333, earlier_visitor=111)
    stranger = _row(cast.site, "pageview", visitor=444, earlier_visitor=555)
    api_id, hit_id, stranger_id = store_rows([api, hit, stranger])
    stored = {e.pk: e for e in Event.objects.filter(pk__in=[api_id, hit_id, stranger_id])}
    assert (stored[hit_id].visitor, stored[hit_id].session) == (111, before.session)
    assert stored[api_id].visitor == 222 and stored[api_id].session not in (None, before.session)
    assert stored[stranger_id].visitor == 444 and stored[stranger_id].session not in (None, before.session)


def test_database_url_sets_a_connect_timeout_and_durable_commits():
    from infinity.settings import database_from_url

    options = database_from_url("postgres://u@h:5432/db")["OPTIONS"]
    assert options["connect_timeout"] == "5" and options["options"] == "-c synchronous_commit=on"
    options = database_from_url("postgres://u@h:5432/db?connect_timeout=2&options=-c%20work_mem%3D8MB")["OPTIONS"]
    assert options["connect_timeout"] == "2" and options["options"] == "-c work_mem=8MB -c synchronous_commit=on"


@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="PostgreSQL's synchronous_commit")
def test_commits_wait_for_the_wal_flush_whatever_the_database_default(transactional_db):
    # A 201 promises a durable row: a server or database default of synchronous_commit=off
    # would acknowledge before the WAL is flushed.
    name = connection.settings_dict["NAME"]
    with connection.cursor() as cursor:
        cursor.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    try:
        connection.close()
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            assert cursor.fetchone()[0] == "on"
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f'ALTER DATABASE "{name}" RESET synchronous_commit')


@pytest.mark.skipif("connection.vendor != 'sqlite'", reason="SQLite's synchronous")
def test_sqlite_commits_reach_the_disk_before_the_answer(db):
    # WAL with synchronous=NORMAL loses the last commits on a power failure: a 201 would lie.
    with connection.cursor() as cursor:
        assert cursor.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
