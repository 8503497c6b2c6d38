"""Rollups: closed buckets are read from the rollup table, late events are counted at once."""

import os
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from analytics import engine, rollups, storage
from analytics.models import RolledBucket, Rollup, RollupCursor
from analytics.query import parse_query
from analytics.scan import ALL, scan
from events.models import Event

DAY = datetime(2024, 1, 10, tzinfo=UTC)


def _visit(site, start, visitor, session, paths, **fields):
    for i, path in enumerate(paths):
        Event.objects.create(site=site, kind=1, name="pageview", occurred_at=start + timedelta(minutes=i), path=path,
                             visitor=visitor, session=session, **fields)  # fmt: skip


def test_closed_days_are_answered_from_rollups(api, cast):
    _visit(cast.site, DAY + timedelta(hours=9), 1, 11, ["/", "/pricing"], country="DE")
    rollups.rebuild(site=cast.site, now=DAY + timedelta(days=3))
    assert RolledBucket.objects.filter(site=cast.site, grain="day", start=DAY).exists()
    Event.objects.filter(site=cast.site).update(path="/changed")  # rollups are not re-read from events
    body = api.get("/api/v1/analytics", {"start_date": "2024-01-10", "end_date": "2024-01-10", "breakdown": "page",
                                         "metrics": "page_views,visits"}).json()  # fmt: skip
    assert [row["value"] for row in body["breakdown"]] == ["/", "/pricing"]


def test_late_event_in_a_rolled_day_is_counted_at_once(api, cast):
    _visit(cast.site, DAY + timedelta(hours=9), 1, 11, ["/"])
    rollups.rebuild(site=cast.site, now=DAY + timedelta(days=3))
    params = {"start_date": "2024-01-10", "end_date": "2024-01-10", "metrics": "page_views,events"}
    assert api.get("/api/v1/analytics", params).json()["data"] == {"page_views": 1, "events": 0}
    response = api.post("/api/v1/events", {"event_name": "signup", "timestamp": "2024-01-10T15:00:00Z"})
    assert response.status_code == 201
    assert api.get("/api/v1/analytics", params).json()["data"] == {"page_views": 1, "events": 1}
    rollups.refresh(now=DAY + timedelta(days=3))  # the timer rebuilds the day
    assert Rollup.objects.filter(site=cast.site, start=DAY, dimension="").get().events == 1


def test_open_day_is_rolled_up_by_closed_hours_and_matches_raw_events(cast):
    for h in range(0, 10):
        _visit(cast.site, DAY + timedelta(hours=h, minutes=50), h % 3, 100 + h, ["/", "/a", "/b"][: 1 + h % 3])
    now = DAY + timedelta(hours=10, minutes=5)
    rollups.refresh(now=now, site=cast.site)
    hours = RolledBucket.objects.filter(site=cast.site, grain="hour")
    assert hours.count() == 10  # every hour that ended a minute before 10:05
    assert hours.filter(final=True).count() == 8  # hours 0–7 end at least VISIT_WINDOW + GRACE before 10:05
    for interval, metrics in [(None, "page_views,unique_visitors,visits,bounce_rate,visit_duration"),
                              ("hour", "visits,page_views,bounce_rate"), ("hour", "page_views,unique_visitors")]:  # fmt: skip
        params = {"start_date": "2024-01-10", "end_date": "2024-01-10", "breakdown": "page", "metrics": metrics}
        if interval:
            params["interval"] = interval
        query = parse_query(params, site=cast.site, now=now)
        lo, hi = query.utc_range
        assert _finished(query, engine.collect(query)) == _finished(query, scan(query, lo, hi, interval, query.breakdown))


def _finished(query, tallies):
    return engine.summarize(query, tallies)


def test_a_query_never_writes_and_answers_alike_before_and_after_the_timer(api, cast):
    for minute in range(4):
        Event.objects.create(site=cast.site, kind=1, name="pageview", occurred_at=DAY + timedelta(hours=9, minutes=minute))
    Event.objects.create(site=cast.site, kind=1, name="pageview", occurred_at=DAY + timedelta(days=1, hours=9))
    params = {"start_date": "2024-01-10", "end_date": "2024-01-11", "metrics": "page_views", "breakdown": "page"}
    with CaptureQueriesContext(connection) as queries:
        before = api.get("/api/v1/analytics", params).json()
    analytics_sql = [q["sql"] for q in queries if "analytics_" in q["sql"]]
    assert analytics_sql and all(sql.lstrip().upper().startswith("SELECT") for sql in analytics_sql)
    assert not RolledBucket.objects.exists() and not RollupCursor.objects.exists()
    assert before["data"] == {"page_views": 5}
    rollups.refresh(site=cast.site, now=DAY + timedelta(days=3))  # the timer
    assert RolledBucket.objects.filter(site=cast.site, start=DAY).exists()
    assert api.get("/api/v1/analytics", params).json() == before


def test_hours_of_a_former_site_timezone_are_not_counted_twice(cast):
    # After a site moves from UTC to Asia/Kathmandu (+05:45), its UTC hours stay until the timer
    # drops them, while hours of the new timezone (starting at :15 past) may be built beside them.
    now = DAY + timedelta(hours=12, minutes=30)
    for h in range(12):
        Event.objects.create(site=cast.site, kind=1, name="pageview", occurred_at=DAY + timedelta(hours=h, minutes=40), path="/")
    rollups.refresh(now=now, site=cast.site)  # the timer: the UTC hours of the day
    cast.site.timezone = "Asia/Kathmandu"
    cast.site.save()
    params = {"start_date": "2024-01-10", "end_date": "2024-01-10", "metrics": "page_views", "timezone": "UTC"}
    rollups.build_due(cast.site, now)  # the Kathmandu hours, the UTC ones still there
    assert RolledBucket.objects.filter(site=cast.site, grain="hour", timezone="Asia/Kathmandu").count() >= 6
    assert RolledBucket.objects.filter(site=cast.site, grain="hour", timezone="UTC").count() >= 6
    for interval in (None, "hour", "day"):
        query = parse_query({**params, **({"interval": interval} if interval else {})}, site=cast.site, now=now)
        tallies = engine.collect(query)
        assert sum(t.page_views for (_, value), t in tallies.items() if value is ALL) == 12


def test_rollup_command_rolls_up_and_rebuilds(cast, capsys):
    _visit(cast.site, DAY, 1, 11, ["/"])
    call_command("rollup")
    assert "buckets rolled up" in capsys.readouterr().out
    assert RolledBucket.objects.filter(site=cast.site, grain="day", start=DAY).exists()
    call_command("rebuild_rollups")
    assert Rollup.objects.filter(site=cast.site, start=DAY, dimension="page", value="/").exists()


@pytest.mark.django_db(transaction=True)
def test_rollup_every_keeps_rolling_up_until_terminated(cast):
    """``manage.py rollup --every`` (what scripts/serve runs beside the server), as a real
    process on this test's database: it rolls up a closed day, rebuilds a rolled day that got
    events after the loop started (late events), and exits cleanly on SIGTERM.

    The days are recent: the loop rolls up every bucket from a site's first event to now, and
    from 2024 that would be over a thousand buckets."""
    import signal
    import subprocess
    import sys
    import time

    from django.conf import settings

    from tests.servers import database_url

    first = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=3)
    second = first + timedelta(days=1)

    def wait_for(rows, what):
        deadline = time.monotonic() + 30
        while not rows.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, f"{what} not rolled up"
            time.sleep(0.1)

    def page_rolled(day, page):
        rows = Rollup.objects.filter(site=cast.site, grain="day", start=day, dimension="page", value=page)
        wait_for(rows, f"{day:%Y-%m-%d} with {page}")

    _visit(cast.site, first, 1, 11, ["/"])
    env = {**os.environ, "DATABASE_URL": database_url(), "SECRET_KEY": settings.SECRET_KEY, "DEBUG": "true"}
    command = [sys.executable, "manage.py", "rollup", "--every", "0.2", "--jobs", "1"]
    proc = subprocess.Popen(command, env=env, cwd=settings.BASE_DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        page_rolled(first, "/")
        # Closed too, so the loop rolls it up empty (each bucket commits on its own, so maybe
        # just after the first): once it has, these events make it stale.
        wait_for(RolledBucket.objects.filter(site=cast.site, grain="day", start=second), f"{second:%Y-%m-%d}")
        _visit(cast.site, second + timedelta(hours=12), 2, 12, ["/later"])
        page_rolled(second, "/later")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert out.count("buckets rolled up") >= 2
    later = Rollup.objects.get(site=cast.site, grain="day", start=second, dimension="")
    assert later.page_views == 1


def test_every_takes_a_positive_interval_and_runs_need_every(cast):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="--every"):
        call_command("rollup", "--every", "0")
    with pytest.raises(CommandError, match="--runs"):
        call_command("rollup", "--runs", "2")
    with pytest.raises(CommandError, match="--rebuild"):
        call_command("rollup", "--every", "60", "--rebuild")


def test_rollup_every_stops_after_its_runs(cast, capsys):
    _visit(cast.site, DAY, 1, 11, ["/"])
    call_command("rollup", "--every", "0.05", "--runs", "3", "--jobs", "1")
    assert capsys.readouterr().out.count("buckets rolled up") == 3
    assert RolledBucket.objects.filter(site=cast.site, grain="day", start=DAY).exists()


def _rollup_rows(site):
    columns = [f.name for f in Rollup._meta.concrete_fields if f.name != "id"]
    return sorted(tuple(str(v) for v in row) for row in Rollup.objects.filter(site=site).values_list(*columns))


_ORIGINAL_BUILD_ONE = rollups._build_one


def _recording_build_one(task):
    """``rollups._build_one`` that notes which process ran it (forked children inherit the patch)."""
    with open(os.environ["BUILD_LOG"], "a") as log:
        log.write(f"{os.getpid()}\n")
    return _ORIGINAL_BUILD_ONE(task)


@pytest.mark.django_db(transaction=True)
def test_a_rebuild_in_several_processes_builds_the_same_rollups(cast, monkeypatch, tmp_path):
    """PostgreSQL builds buckets in forked processes (``--jobs``); SQLite one at a time. Either
    way the rows are those of a one-process build."""
    from django.db import connection

    log = tmp_path / "builders"
    log.touch()
    monkeypatch.setenv("BUILD_LOG", str(log))
    monkeypatch.setattr(rollups, "_build_one", _recording_build_one)
    for day in range(4):
        for h in (3, 9, 15):
            _visit(cast.site, DAY + timedelta(days=day, hours=h), h + day, 1000 * day + h, ["/", "/a", "/b"][: 1 + h % 3],
                   country="DE" if h == 9 else "FR")  # fmt: skip
    now = DAY + timedelta(days=6)
    built = rollups.rebuild(site=cast.site, now=now, jobs=1)
    single = _rollup_rows(cast.site)
    assert built > 2 and len(single) > built
    assert log.read_text() == ""  # one job: built in this process, no pool
    assert rollups.rebuild(site=cast.site, now=now, jobs=2) == built
    assert _rollup_rows(cast.site) == single
    builders = set(log.read_text().split())
    if connection.vendor == "postgresql":
        assert builders and str(os.getpid()) not in builders  # built by the forked processes
    else:
        assert not builders  # SQLite: one bucket at a time, in this process


def test_the_jobs_option_must_be_positive(cast):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="--jobs"):
        call_command("rollup", "--jobs", "0")


# --- events whose transaction commits late (PostgreSQL hands out ids before COMMIT) --------


class _OpenInsert:
    """An event INSERTed in a transaction of its own connection, left open until ``commit_in``
    seconds later (from a thread), as a batch or a slow worker's write would be."""

    def __init__(self, site, occurred_at):
        import psycopg
        from django.db import connection

        settings = connection.settings_dict
        self.conn = psycopg.connect(dbname=settings["NAME"], user=settings["USER"], host=settings["HOST"] or None,
                                    port=settings["PORT"] or None, password=settings["PASSWORD"] or None)  # fmt: skip
        fields = [f for f in Event._meta.concrete_fields if not f.primary_key]
        row = {f.column: f.get_default() for f in fields}
        row.update(site_id=site.pk, kind=1, name="pageview", occurred_at=occurred_at, received_at=occurred_at,
                   visitor=77, session=777, path="/late", metadata="{}")  # fmt: skip
        columns = ", ".join(row)
        placeholders = ", ".join(["%s"] * len(row))
        (self.id,) = self.conn.execute(
            f"INSERT INTO {Event._meta.db_table} ({columns}) VALUES ({placeholders}) RETURNING id", list(row.values())
        ).fetchone()
        self.thread = None

    def commit_in(self, seconds):
        import threading
        import time

        def commit():
            time.sleep(seconds)
            self.conn.commit()
            self.conn.close()

        self.thread = threading.Thread(target=commit)
        self.thread.start()

    def join(self):
        self.thread.join()


def _day_counts(site, now):
    """(page_views from engine.collect, page_views counted raw) for DAY."""
    query = parse_query({"start_date": "2024-01-10", "end_date": "2024-01-10", "metrics": "page_views"}, site=site, now=now)
    lo, hi = query.utc_range
    counted = engine.summarize(query, engine.collect(query))["data"]["page_views"]
    return counted, engine.summarize(query, scan(query, lo, hi, None, None))["data"]["page_views"]


def _skip_unless_postgresql():
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("SQLite serializes writers: an open transaction cannot hold an id below a committed one")


@pytest.mark.django_db(transaction=True)
def test_a_bucket_built_while_an_earlier_id_is_uncommitted_still_counts_it(cast):
    _skip_unless_postgresql()
    now = DAY + timedelta(days=3)
    _visit(cast.site, DAY + timedelta(hours=9), 1, 11, ["/"])
    late = _OpenInsert(cast.site, DAY + timedelta(hours=12))  # holds its id, not committed yet
    _visit(cast.site, now, 2, 22, ["/now"])  # committed, with a higher id
    late.commit_in(1.0)
    bucket = rollups.build_bucket(cast.site, "day", DAY, DAY + timedelta(days=1))
    late.join()
    assert bucket.watermark >= late.id  # the build waited for the open transaction
    assert Rollup.objects.get(site=cast.site, grain="day", start=DAY, dimension="").page_views == 2
    assert _day_counts(cast.site, now) == (2, 2)


@pytest.mark.django_db(transaction=True)
def test_an_event_committed_after_the_late_check_passed_its_id_is_still_noticed(cast):
    _skip_unless_postgresql()
    from django.db import connection

    now = DAY + timedelta(days=3)
    _visit(cast.site, DAY + timedelta(hours=9), 1, 11, ["/"])
    rollups.rebuild(site=cast.site, now=now)  # DAY rolled up; the late-event cursor exists
    rollups.check_late(now)
    late = _OpenInsert(cast.site, DAY + timedelta(hours=12))  # a backfill into the rolled day, still open
    with connection.cursor() as cur:  # thousands of ids are taken and committed meanwhile
        cur.execute("SELECT setval(pg_get_serial_sequence(%s, 'id'), nextval(pg_get_serial_sequence(%s, 'id')) + 5000)",
                    [Event._meta.db_table] * 2)  # fmt: skip
    _visit(cast.site, now, 2, 22, ["/now"])
    late.commit_in(1.0)
    rollups.check_late(now)  # waits for the open transaction, then reads its event
    late.join()
    assert _day_counts(cast.site, now) == (2, 2)
    rollups.refresh(now=now, site=cast.site)
    assert Rollup.objects.get(site=cast.site, grain="day", start=DAY, dimension="").page_views == 2


@pytest.mark.django_db(transaction=True)
def test_ids_reserved_for_a_batch_hold_back_the_settled_id_until_it_ends(cast):
    """A batch takes its ids from the sequence before its COPY writes them; from that moment its
    transaction must count as writing events, or a settled id could pass ids whose rows do not
    exist yet."""
    _skip_unless_postgresql()
    import threading

    from django.db import connection, transaction

    from events.storage import backend as event_storage

    _visit(cast.site, DAY, 1, 11, ["/"])
    seen = {}

    def settle():  # in another connection, while the ids are held
        try:
            seen["top"] = storage.settled_event_id(0.3)
        finally:
            connection.close()

    with transaction.atomic():
        ids = event_storage().reserve_ids(2)
        thread = threading.Thread(target=settle)
        thread.start()
        thread.join()
    assert seen["top"] is None  # it waited for the reserving transaction (and gave up)
    assert len(ids) == 2 and ids[0] < ids[1]
    assert storage.settled_event_id(0.3) is not None  # that transaction is over


def test_a_rebuild_logs_its_progress_when_not_on_a_terminal(cast, capsys, monkeypatch):
    from infinity import progress

    monkeypatch.setattr(progress, "INTERVAL", 0.0)  # a line per bucket instead of one every few seconds
    for day in range(3):
        _visit(cast.site, DAY + timedelta(days=day, hours=9), 1, 11 + day, ["/"])
    call_command("rebuild_rollups", "--jobs", "1")
    err = capsys.readouterr().err.splitlines()
    lines = [line for line in err if " rollups: " in line]
    assert lines and all("buckets/s" in line for line in lines), err
    assert any(" left" in line for line in lines)  # time left while buckets remain
    built = RolledBucket.objects.filter(site=cast.site).count()
    assert f"{built:,}/{built:,} buckets (100.0 %)" in lines[-1]
    call_command("rebuild_rollups", "--jobs", "1", verbosity=0)
    assert " rollups: " not in capsys.readouterr().err


def test_the_last_24_hours_read_yesterdays_hours_and_a_day_reads_its_day_bucket(cast):
    """A closed recent day keeps its hours beside its day bucket: an hours=24 window starting
    partway through it is answered from those hours, a query of whole days from the day bucket,
    never both; both equal the raw count. Older days keep only their day bucket."""
    yesterday = DAY - timedelta(days=1)
    for h in range(0, 34, 2):  # yesterday 00:50 to today 08:50, some visits crossing hours
        _visit(cast.site, yesterday + timedelta(hours=h, minutes=50), h % 5, 500 + h, ["/", "/a", "/b"][: 1 + h % 3])
    now = DAY + timedelta(hours=10, minutes=5)
    rollups.refresh(now=now, site=cast.site)
    assert RolledBucket.objects.filter(site=cast.site, grain="day", start=yesterday).exists()
    hours = RolledBucket.objects.filter(site=cast.site, grain="hour", start__gte=yesterday, start__lt=DAY, final=True)
    assert hours.count() == 24

    window = {"hours": "24", "metrics": "page_views,unique_visitors,visits,bounce_rate"}
    day = {"start_date": "2024-01-09", "end_date": "2024-01-10", "metrics": "page_views,unique_visitors,visits"}
    for params, grains_yesterday in [({**window, "interval": "hour"}, {"hour"}), (window, {"hour"}),
                                     ({**day, "interval": "day"}, {"day"}), (day, {"day"})]:  # fmt: skip
        query = parse_query({**params, "breakdown": "page"}, site=cast.site, now=now)
        lo, hi = query.utc_range
        chosen = rollups.usable_buckets(query, rollups.plan(query), lo, hi)
        assert {b.grain for b in chosen if yesterday <= b.start < DAY} == grains_yesterday, params
        raw = sum((min(gap_hi, now) - gap_lo for gap_lo, gap_hi in engine._gaps(lo, hi, chosen)), timedelta())
        assert raw <= timedelta(hours=3), params  # the hours whose visits are not final yet and part of one
        assert _finished(query, engine.collect(query)) == _finished(query, scan(query, lo, hi, query.interval, query.breakdown))

    rollups.refresh(now=now + timedelta(days=3), site=cast.site)  # the days fall out of the recent ones
    assert not RolledBucket.objects.filter(site=cast.site, grain="hour", start__lt=DAY).exists()
    assert RolledBucket.objects.filter(site=cast.site, grain="day", start=yesterday).exists()
    query = parse_query(day, site=cast.site, now=now + timedelta(days=3))
    lo, hi = query.utc_range
    assert _finished(query, engine.collect(query)) == _finished(query, scan(query, lo, hi, None, None))
