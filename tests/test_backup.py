"""An operator backs up the database while the server writes, restores the backup into a new
database, and the server on it answers every analytics question as the original did.

``manage.py backup`` and ``manage.py restore`` run as separate processes, as an operator runs
them, against a real gunicorn server taking events meanwhile: SQLite's online backup API on
SQLite, pg_dump and pg_restore on PostgreSQL (the same test on each database).
"""

import contextlib
import json
import os
import random
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import timedelta
from urllib.parse import urlencode, urlsplit

import psycopg
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

from bench.env import ROOT
from bench.servers import running_server
from events.models import Event, Kind

from .servers import database_url, gunicorn_servers, post_event

pytestmark = pytest.mark.django_db(transaction=True)

METRICS = "page_views,unique_visitors,events,visits,bounce_rate,visit_duration,views_per_visit,purchases,revenue"


def _seed(site, *, days=20, visitors=150):
    """Visits of the last ``days`` days before yesterday: page views, custom events, purchases."""
    rng = random.Random(23)
    midnight = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    rows = []
    for _ in range(visitors):
        visitor, session = rng.getrandbits(62), rng.getrandbits(62)
        t = midnight - timedelta(days=rng.randint(2, days + 1)) + timedelta(seconds=rng.randint(0, 86000))
        for _ in range(rng.randint(1, 5)):
            kind = rng.choice([Kind.PAGEVIEW, Kind.PAGEVIEW, Kind.PAGEVIEW, Kind.CUSTOM, Kind.PURCHASE])
            row = Event(site=site, kind=kind, occurred_at=t, visitor=visitor, session=session,
                        country=rng.choice(["DE", "FR", "US", ""]))  # fmt: skip
            if kind == Kind.PAGEVIEW:
                row.name, row.path = "pageview", rng.choice(["/", "/pricing", "/docs", "/blog/1"])
            elif kind == Kind.CUSTOM:
                row.name, row.metadata = rng.choice(["signup", "download"]), {"plan": rng.choice(["free", "pro"])}
            else:
                row.name, row.price, row.currency, row.quantity = "purchase", rng.randint(100, 9000), "EUR", 1
                row.product_name = rng.choice(["Pro", "Team"])
            rows.append(row)
            t += timedelta(seconds=rng.randint(5, 600))
    Event.objects.bulk_create(rows)
    return midnight.date() - timedelta(days=days + 1), midnight.date() - timedelta(days=2)


def _questions(start, end):
    base = {"start_date": start.isoformat(), "end_date": end.isoformat(), "metrics": METRICS}
    return [
        base,
        {**base, "interval": "day"},
        {**base, "breakdown": "page", "limit": 50},
        {**base, "breakdown": "country"},
        {**base, "breakdown": "event_name"},
        {**base, "breakdown": "metadata.plan", "metrics": "events,unique_visitors"},
        {**base, "filters": "country==DE", "breakdown": "product_name"},
    ]


def _answers(base_url, key, questions):
    out = []
    for params in questions:
        request = urllib.request.Request(f"{base_url}/api/v1/analytics?{urlencode(params)}",
                                         headers={"Authorization": f"Bearer {key}"})  # fmt: skip
        with urllib.request.urlopen(request, timeout=60) as response:
            out.append(json.loads(response.read()))
    return out


def _manage(*args, database):
    env = {**os.environ, "DEBUG": "true", "DATABASE_URL": database, "SECRET_KEY": connection_secret()}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def connection_secret():
    from django.conf import settings

    return settings.SECRET_KEY


@contextlib.contextmanager
def new_database(tmp_path):
    """A URL for a new, empty database of the kind under test; dropped afterwards."""
    source = database_url()
    if connection.vendor == "sqlite":
        yield f"sqlite:///{tmp_path / 'restored.sqlite3'}"
        return
    parts = urlsplit(source)
    name = f"{parts.path.lstrip('/')}_restored"
    admin = parts._replace(path="/postgres", scheme="postgresql").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield parts._replace(path=f"/{name}").geturl()
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _rows(url):
    """Every event row of the database at ``url``, by id (all columns)."""
    query = "SELECT * FROM events_event ORDER BY id"
    if url.startswith("sqlite:///"):
        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as conn:
            return [tuple(str(v) for v in row) for row in conn.execute(query)]
    with psycopg.connect(url.replace("postgres://", "postgresql://", 1)) as conn:
        return [tuple(str(v) for v in row) for row in conn.execute(query)]


def test_a_backup_taken_while_the_server_writes_restores_to_the_same_answers(cast, tmp_path):
    start, end = _seed(cast.site)
    call_command("rollup", jobs=1, verbosity=0)  # the rollups travel with the backup
    questions = _questions(start, end)
    backup_file = tmp_path / "infinity.backup"
    source = database_url()
    writes, stop = [], threading.Event()
    with gunicorn_servers(1, workers=1, RATE_LIMIT_EVENTS="1000000") as (url,):

        def write():
            while not stop.is_set():
                writes.append(post_event(url, cast.key, "during backup")[0])

        writer = threading.Thread(target=write)
        writer.start()
        try:
            time.sleep(0.5)
            backed_up = _manage("backup", str(backup_file), database=source)
            time.sleep(0.5)
        finally:
            stop.set()
            writer.join()
        assert backed_up.returncode == 0, backed_up.stderr
        assert backed_up.stdout.startswith(f"Backed up to {backup_file}")
        original = _answers(url, cast.key, questions)
    assert original[0]["data"]["page_views"] > 200 and original[0]["data"]["revenue"]["EUR"] > 0

    with new_database(tmp_path) as restored_url:
        restored = _manage("restore", str(backup_file), database=restored_url)
        assert restored.returncode == 0, restored.stderr
        assert restored.stdout.startswith(f"Restored {backup_file}")
        env = {"DEBUG": "true", "SECRET_KEY": connection_secret(), "DATABASE_URL": restored_url, "REDIS_URL": None}
        with running_server(server="gunicorn:gthread", workers=1, env=env, settings_module="infinity.settings",
                            ready_path="/api/v1/health?live") as restored_server:  # fmt: skip
            assert _answers(restored_server, cast.key, questions) == original
        copy = _rows(restored_url)
    rows = _rows(source)
    # One moment: the copy holds exactly the source's events up to its last one, torn by no write.
    assert copy == rows[: len(copy)]
    during = [row for row in copy if "during backup" in row]
    assert 0 < len(during) < writes.count(201) == Event.objects.filter(name="during backup").count()


def test_backup_does_not_overwrite_a_file(cast, tmp_path):
    existing = tmp_path / "taken"
    existing.write_text("keep me")
    with pytest.raises(CommandError, match="exists"):
        call_command("backup", str(existing))
    assert existing.read_text() == "keep me"


def test_restore_refuses_what_is_not_a_backup_of_this_kind_of_database(db, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a backup")
    with pytest.raises(CommandError, match="neither an SQLite backup nor a pg_dump archive"):
        call_command("restore", str(text))
    other = tmp_path / "other.backup"
    other.write_bytes(b"PGDMP" + b"\0" * 64 if connection.vendor == "sqlite" else b"SQLite format 3\x00" + b"\0" * 64)
    with pytest.raises(CommandError, match="backup and the configured database is"):
        call_command("restore", str(other))
    with pytest.raises(CommandError, match="is not a file"):
        call_command("restore", str(tmp_path / "missing"))


def test_restore_refuses_a_database_with_data_unless_told(cast, tmp_path):
    backup_file = tmp_path / "infinity.backup"
    call_command("backup", str(backup_file), stdout=open(os.devnull, "w"))
    with pytest.raises(CommandError, match="--replace"):
        call_command("restore", str(backup_file))
