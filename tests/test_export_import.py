"""Raw events out and back in: GET /api/v1/export, manage.py export_events and import_events
(the way from SQLite to PostgreSQL), and Umami's website_event CSV."""

import csv
import io
import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection

from accounts.keys import create_api_key
from accounts.models import ALL_SCOPES, Site
from bench.env import ROOT
from events.export import COLUMNS
from events.models import Event, Kind
from tests.conftest import Api
from tests.test_collector import GERMAN_IP, IPHONE, Browser, page_view

EXPORT = "/api/v1/export"
DATA = Path(__file__).parent / "data"
DAY = {"start_date": "2024-01-01", "end_date": "2024-12-31"}


@pytest.fixture
def manager(cast):
    """A key of the cast's site with every scope, data:manage included."""
    _, raw = create_api_key(site=cast.site, name="manager", scopes=list(ALL_SCOPES))
    return Api(raw)


def send_history(api):
    """Custom events, purchases and a batch, over the API, on two days of 2024."""
    for i in range(6):
        api.post("/api/v1/events", {"event_name": "signup", "metadata": {"plan": ["pro", "free"][i % 2], "n": i * 0.5},
                                    "visitor_id": f"u{i % 3}", "timestamp": f"2024-03-0{1 + i % 2}T10:{i:02d}:00Z"})  # fmt: skip
    api.post("/api/v1/events/purchase", {"price": 2999, "currency": "EUR", "product_name": "Pro, yearly", "quantity": 2,
                                         "visitor_id": "u1", "timestamp": "2024-03-01T10:20:00Z"})  # fmt: skip
    same = {"event_name": "twin", "visitor_id": "u2", "timestamp": "2024-03-02T09:00:00Z", "metadata": {"q": 'a "quote"\n'}}
    api.post("/api/v1/events/batch", {"events": [same, same, {"event_name": "ünïcödé", "timestamp": "2024-03-02T23:59:59Z"}]})


def records(response):
    body = b"".join(response.streaming_content).decode()
    return [json.loads(line) for line in body.splitlines()]


def test_export_streams_every_event_of_the_range_as_ndjson(api, manager, cast):
    send_history(api)
    response = manager.get(EXPORT, DAY)
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"].startswith("application/x-ndjson")
    assert 'filename="example.com-events-2024-01-01-2024-12-31.ndjson"' in response["Content-Disposition"]
    rows = records(response)
    assert len(rows) == Event.objects.filter(site=cast.site).count() == 10
    assert all(list(row) == list(COLUMNS) for row in rows)
    assert [r["timestamp"] for r in rows] == sorted(r["timestamp"] for r in rows)
    purchase = next(r for r in rows if r["type"] == "purchase")
    assert purchase["price"] == 2999 and purchase["quantity"] == 2 and purchase["product_name"] == "Pro, yearly"
    assert purchase["timestamp"] == "2024-03-01T10:20:00.000000Z"
    stored = Event.objects.get(pk=int(purchase["event_id"].removeprefix("evt_")))
    assert purchase["visitor"] == str(stored.visitor) and purchase["session"] == str(stored.session)
    assert {r["metadata"].get("q") for r in rows if r["event_name"] == "twin"} == {'a "quote"\n'}


def test_export_as_csv_has_the_same_columns(api, manager, cast):
    send_history(api)
    response = manager.get(EXPORT, {**DAY, "format": "csv"})
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    reader = csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode()))
    rows = list(reader)
    assert tuple(reader.fieldnames) == COLUMNS and len(rows) == 10
    custom = next(r for r in rows if r["event_name"] == "signup")
    assert custom["price"] == "" and json.loads(custom["metadata"])["plan"] in {"pro", "free"}


def test_the_range_is_whole_days_in_the_site_timezone(api, manager, cast):
    cast.site.timezone = "Europe/Berlin"
    cast.site.save()
    for stamp in ("2024-03-01T22:59:59Z", "2024-03-01T23:00:00Z", "2024-03-02T22:59:59Z", "2024-03-02T23:00:00Z"):
        api.post("/api/v1/events", {"event_name": "e", "timestamp": stamp})
    rows = records(manager.get(EXPORT, {"start_date": "2024-03-02", "end_date": "2024-03-02"}))
    assert [r["timestamp"][:19] for r in rows] == ["2024-03-01T23:00:00", "2024-03-02T22:59:59"]


def test_an_export_holds_only_the_key_site_events(api, cast):
    send_history(api)
    _, outsider = create_api_key(site=cast.outsider_site, name="o", scopes=list(ALL_SCOPES))
    Api(cast.outsider_key).post("/api/v1/events", {"event_name": "theirs", "timestamp": "2024-03-01T10:00:00Z"})
    rows = records(Api(outsider).get(EXPORT, {**DAY, "site": "example.com", "site_id": cast.site.pk}))
    assert [r["event_name"] for r in rows] == ["theirs"]


def test_export_needs_the_data_manage_scope(api, cast):
    assert api.get(EXPORT, DAY).json()["error"]["code"] == "FORBIDDEN"
    assert Api("im_bogus").get(EXPORT, DAY).status_code == 401


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "start_date"),
        ({"start_date": "2024-01-01"}, "end_date"),
        ({**DAY, "start_date": "2024-13-01"}, "start_date"),
        ({**DAY, "end_date": "yesterday"}, "end_date"),
        ({**DAY, "start_date": "2024-1-1"}, "start_date"),
        ({**DAY, "end_date": "0001-01-01"}, "end_date"),
        ({**DAY, "end_date": "9999-12-31"}, "end_date"),
        ({"start_date": "2024-02-01", "end_date": "2024-01-31"}, "start_date"),
        ({**DAY, "format": "xml"}, "format"),
        ({**DAY, "format": ""}, "format"),
    ],
)
def test_bad_export_parameters_are_a_400_naming_them(manager, params, field):
    response = manager.get(EXPORT, params)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "INVALID_REQUEST" and error["field"] == field


def test_the_schema_documents_the_export(anon):
    operation = anon.get("/api/v1/schema", {"format": "json"}).json()["paths"][EXPORT]["get"]
    assert {p["name"] for p in operation["parameters"]} >= {"start_date", "end_date", "format"}
    assert set(operation["responses"]["200"]["content"]) == {"application/x-ndjson", "text/csv"}


# --- the commands -----------------------------------------------------------------------


def run_command(*args, **kwargs):
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err, **kwargs)
    return out.getvalue(), err.getvalue()


def snapshot(site):
    """Every event of the site but its id, as a sorted list."""
    fields = [f.name for f in Event._meta.concrete_fields if f.name not in ("id", "site")]
    return sorted(tuple(json.dumps(v, sort_keys=True, default=str) for v in row)
                  for row in Event.objects.filter(site=site).values_list(*fields))  # fmt: skip


@pytest.mark.parametrize("suffix", [".ndjson", ".csv"])
def test_export_and_import_copy_a_site_and_a_rerun_stores_nothing(api, cast, tmp_path, suffix):
    send_history(api)
    Browser(user_agent=IPHONE, ip=GERMAN_IP).send(page_view(url="https://example.com/pricing?utm_source=news",
                                                            referrer="https://www.google.com/search?q=x"))  # fmt: skip
    path = tmp_path / f"out{suffix}"
    out, err = run_command("export_events", str(path), site="example.com")
    assert "Exported 11 events" in out
    copy = Site.objects.create(domain="copy.example.com")
    out, _ = run_command("import_events", str(path), site="copy.example.com")
    assert "Imported 11 new events" in out
    assert snapshot(copy) == snapshot(cast.site)
    out, _ = run_command("import_events", str(path), site="copy.example.com")
    assert "Imported 0 new events" in out and "11 already there" in out
    assert Event.objects.filter(site=copy).count() == 11  # the batch's twins included, once each


def test_export_command_takes_a_range_and_refuses_bad_input(api, cast, tmp_path):
    send_history(api)
    out, _ = run_command("export_events", str(tmp_path / "a.csv"), site="example.com", start="2024-03-02", end="2024-03-02")
    assert "Exported 6 events" in out
    assert (tmp_path / "a.csv").read_text().splitlines()[0] == ",".join(COLUMNS)
    for kwargs, message in [
        ({"site": "nowhere.org"}, "No site"),
        ({"site": "example.com", "start": "2024-03-03", "end": "2024-03-01"}, "on or before"),
        ({"site": "example.com", "start": "March"}, "not a date"),
        ({"site": "example.com"}, "exists"),
    ]:
        with pytest.raises(CommandError, match=message):
            run_command("export_events", str(tmp_path / "a.csv"), **kwargs)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"type": "custom", "event_name": "e", "timestamp": "soon"}\n', "line 1: timestamp"),
        ('{"type": "custom", "event_name": "e", "timestamp": "2024-01-01T00:00:00Z"}\n{"type": "bogus"}\n', "line 2: type"),
        ('{"type": "custom", "event_name": "e", "timestamp": "2024-01-01T00:00:00Z", "visitor": "x"}\n', "visitor"),
        ('{"type": "custom", "event_name": "e", "timestamp": "2024-01-01T00:00:00Z", "country": "DEU"}\n', "country"),
        ('{"type": "custom", "event_name": "e", "timestamp": "2024-01-01T00:00:00Z", "site_id": 2}\n', "unknown column"),
        ("[1, 2]\n", "JSON object"),
        ("{nope\n", "not JSON"),
        ("type,event_name\ncustom,e\n", "header lacks timestamp"),
        ("type,event_name,timestamp\ncustom,e,2024-01-01T00:00:00Z,extra\n", "more fields"),
    ],
)
def test_a_bad_record_stops_the_import_naming_its_line(cast, tmp_path, content, message):
    path = tmp_path / ("bad.csv" if content.startswith("type") else "bad.ndjson")
    path.write_text(content)
    with pytest.raises(CommandError, match=message):
        run_command("import_events", str(path), site="example.com")
    assert not Event.objects.filter(site=cast.site).exists()


def test_progress_is_logged_without_a_terminal(cast, tmp_path, monkeypatch):
    from infinity import progress

    monkeypatch.setattr(progress, "INTERVAL", 0.0)
    path = tmp_path / "many.ndjson"
    line = {"type": "custom", "event_name": "e", "timestamp": "2024-01-01T00:00:00Z"}
    path.write_text("".join(json.dumps({**line, "timestamp": f"2024-01-01T00:00:{i % 60:02d}Z"}) + "\n" for i in range(50)))
    _, err = run_command("import_events", str(path), site="example.com")
    assert "import example.com: 50/50 records (100.0 %)" in err and "records/s" in err


# --- Umami --------------------------------------------------------------------------------


def test_umami_website_events_are_imported_with_their_visits(cast, tmp_path):
    out, _ = run_command("import_events", str(DATA / "umami_website_event.csv"), site="example.com")
    assert "Imported 8 new events" in out and "skipped 1 (Umami event_type '3')" in out
    rows = list(Event.objects.filter(site=cast.site).order_by("occurred_at", "id"))
    first = rows[0]
    assert (first.kind, first.name, first.path, first.hostname) == (Kind.PAGEVIEW, "pageview", "/", "example.com")
    assert (first.source, first.referrer) == ("Google", "https://www.google.com/search")
    assert (first.country, first.browser, first.os, first.device) == ("DE", "Chrome", "macOS", "desktop")
    assert first.occurred_at == datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)
    signup = next(r for r in rows if r.kind == Kind.CUSTOM)
    assert signup.name == "signup" and signup.session == first.session and signup.visitor == first.visitor
    assert len({r.session for r in rows}) == 4 and len({r.visitor for r in rows}) == 3
    assert {r.utm_source for r in rows} >= {"newsletter"}
    assert "Imported 0 new events" in run_command("import_events", str(DATA / "umami_website_event.csv"), site="example.com")[0]
    metrics = "page_views,unique_visitors,visits,events,bounce_rate"
    response = Api(cast.key).get("/api/v1/analytics", {"start_date": "2024-05-01", "end_date": "2024-05-02", "metrics": metrics})
    assert response.json()["data"] == {"page_views": 7, "unique_visitors": 3, "visits": 4, "events": 1, "bounce_rate": 50.0}


# --- moving from one database to the other ---------------------------------------------------

QUERIES = [
    {"metrics": "page_views,unique_visitors,visits,bounce_rate,visit_duration,views_per_visit,events"},
    {"metrics": "purchases,revenue,average_order_value,conversion_rate"},
    {"metrics": "page_views,unique_visitors,events", "interval": "day"},
    {"metrics": "unique_visitors,events", "breakdown": "event_name"},
    {"metrics": "events", "breakdown": "metadata.plan", "filters": "event_name==signup"},
    {"metrics": "page_views,visits,bounce_rate", "breakdown": "page"},
    {"metrics": "page_views", "breakdown": "source"},
    {"metrics": "page_views,unique_visitors", "breakdown": "country", "interval": "week", "timezone": "Asia/Kolkata"},
    {"metrics": "events,unique_visitors,visits", "interval": "hour", "start_date": "2024-03-01", "end_date": "2024-03-02"},
    {"metrics": "revenue,purchases", "breakdown": "product_name", "compare": "previous_period"},
]
ANSWER_SCRIPT = """
import json, sys
from bench import env; env.setup_django()
from django.core.management import call_command
from rest_framework.test import APIClient
from accounts.keys import create_api_key
from accounts.models import Site, SCOPE_ANALYTICS_READ
call_command("migrate", verbosity=0)
site = Site.objects.create(domain="example.com", timezone="America/New_York")
call_command("import_events", sys.argv[1], site="example.com")
call_command("import_events", sys.argv[1], site="example.com")
_, key = create_api_key(site=site, name="k", scopes=[SCOPE_ANALYTICS_READ])
client = APIClient(HTTP_AUTHORIZATION="Bearer " + key)
queries = json.loads(sys.argv[2])
answers = [client.get("/api/v1/analytics", q).json() for q in queries]
call_command("rollup", jobs=1, verbosity=0)
answers += [client.get("/api/v1/analytics", q).json() for q in queries]
print(json.dumps(answers))
"""


@pytest.fixture
def other_database(tmp_path):
    """A DATABASE_URL of an empty database of the other vendor (dropped afterwards)."""
    if connection.vendor == "postgresql":
        yield f"sqlite:///{tmp_path / 'moved.sqlite3'}"
        return
    admin = os.environ.get("TEST_DATABASE_URL", "postgres://root@127.0.0.1:5432/test").replace("postgres://", "postgresql://", 1)
    name = f"test_move_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError:
        pytest.skip("no PostgreSQL to move to")
    yield admin.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.django_db(transaction=True)
def test_moving_to_the_other_database_gives_the_same_answers(cast, tmp_path, other_database):
    """Events sent to this database (SQLite in the SQLite run), exported, imported twice into an
    empty one of the other vendor: every analytics answer is the same, raw and rolled up."""
    cast.site.timezone = "America/New_York"
    cast.site.save()
    api = Api(cast.key)
    send_history(api)
    now = datetime.now(UTC)
    agents = [IPHONE, "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"]
    for i in range(12):
        browser = Browser(user_agent=agents[i % 2], ip=[GERMAN_IP, "81.2.69.142", "8.8.8.8"][i % 3])
        browser.send(page_view(url=f"https://example.com/{['', 'pricing', 'docs'][i % 3]}",
                               referrer=["https://www.google.com/", "", "https://news.ycombinator.com/x"][i % 3]))  # fmt: skip
    api.post("/api/v1/events", {"event_name": "signup", "metadata": {"plan": "pro"}, "timestamp": now.isoformat()})
    path = tmp_path / "site.ndjson"
    run_command("export_events", str(path), site="example.com")
    days = {"start_date": "2024-02-20", "end_date": (now + timedelta(days=1)).date().isoformat()}
    queries = [{**days, **q} for q in QUERIES]
    here = [Api(cast.key).get("/api/v1/analytics", q).json() for q in queries]
    assert not [answer for answer in here if "error" in answer]
    env = {**os.environ, "DATABASE_URL": other_database, "SECRET_KEY": settings.SECRET_KEY, "DEBUG": "true",
           "ALLOWED_HOSTS": "testserver", "DATA_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}  # fmt: skip
    env.pop("REDIS_URL", None)
    done = subprocess.run([sys.executable, "-c", ANSWER_SCRIPT, str(path), json.dumps(queries)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    there = json.loads(done.stdout.strip().splitlines()[-1])
    assert there[: len(queries)] == here
    assert there[len(queries) :] == here
