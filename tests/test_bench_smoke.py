"""The benchmark harness works on a few hundred rows (functional only: nothing here is timed)."""

import http.server
import threading
from collections import Counter
from datetime import UTC, datetime

import pytest
from django.test import Client

from accounts.keys import verify_key
from accounts.models import Site
from bench import generate
from bench.client import build_request, percentile, run_load
from bench.common import ms, percent, times
from events.models import Event, Kind


def test_generated_lines_have_every_column_and_a_realistic_mix():
    site_ids = {domain: i + 1 for i, (domain, *_rest) in enumerate(generate.SITES)}
    now = datetime(2026, 3, 10, 15, 30, tzinfo=UTC)
    lines = list(generate.generate_lines(3000, site_ids, seed=7, now=now))
    assert len(lines) == 3000
    rows = [dict(zip(generate.COLUMNS, generate.line_values(line), strict=True)) for line in lines]
    kinds = Counter(row["kind"] for row in rows)
    assert kinds["1"] > 2500 and kinds["2"] > 0 and kinds["3"] > 0
    assert {row["site_id"] for row in rows} == {str(i) for i in site_ids.values()}
    stamps = [row["occurred_at"] for row in rows]
    assert stamps == sorted(stamps)  # stored in arrival order
    assert min(stamps) >= "2025-12-11" and max(stamps) <= "2026-03-10 15:30:00"
    signups = [row for row in rows if row["name"] == "signup"]
    assert all('"plan"' in row["metadata"] for row in signups)
    purchases = [row for row in rows if row["kind"] == "3"]
    assert all(row["currency"] in {"USD", "EUR", "GBP", "JPY"} and int(row["price"]) > 0 for row in purchases)
    assert len({row["path"] for row in rows}) > 50
    assert len({row["source"] for row in rows}) > 5


def test_same_seed_same_rows():
    ids = {domain: 1 for domain, *_rest in generate.SITES}
    now = datetime(2026, 3, 10, tzinfo=UTC)
    first = [line.split("\t")[:9] for line in generate.generate_lines(500, ids, seed=3, now=now)]
    second = [line.split("\t")[:9] for line in generate.generate_lines(500, ids, seed=3, now=now)]
    assert first == second


@pytest.mark.django_db(transaction=False)
def test_load_creates_sites_events_and_a_working_key():
    count, _seconds, raw, site_ids = generate.load(400, migrate=False)
    assert count == Event.objects.count()
    assert 360 <= count <= 400  # exactly n unless the random traffic falls short
    main = Site.objects.get(domain=generate.MAIN_SITE)
    assert site_ids[generate.MAIN_SITE] == main.pk
    assert Site.objects.get(domain="shop.example.com").timezone == "Europe/Berlin"
    key = verify_key(raw)
    assert key is not None and key.site_id == main.pk
    event = Event.objects.filter(kind=Kind.PURCHASE).first() or Event.objects.filter(kind=Kind.CUSTOM).first()
    assert event is not None and isinstance(event.metadata, dict)
    with pytest.raises(SystemExit):
        generate.load(10, migrate=False)  # refuses to mix with existing rows without --reset
    count, *_ = generate.load(50, reset=True, migrate=False)
    assert Event.objects.count() == count <= 50


def test_bare_baseline_view_exists_only_in_bench_urls(settings, db):
    client = Client()
    assert client.post("/bench/bare").status_code == 404
    settings.ROOT_URLCONF = "bench.urls"
    response = client.post("/bench/bare", data=b"{}", content_type="application/json")
    assert response.status_code == 201
    assert response.json()["success"] is True


@pytest.mark.django_db(transaction=True)
def test_ingest_parts_are_the_event_endpoint_with_one_part_changed(settings, api, cast):
    """``bench ingest --parts``: each variant validates like POST /events and answers its 201
    with rate-limit headers; only the one without Redis stores its rows."""
    settings.ROOT_URLCONF = "bench.urls"
    from bench.urls import PARTS

    for part in PARTS:
        response = api.post(f"/api/v1/bench/event-{part}", {"event_name": f"part-{part}", "visitor_id": "v"})
        assert response.status_code == 201, (part, response.content)
        assert response.json()["event_id"].startswith("evt_")
        assert response["X-RateLimit-Limit"] == str(settings.RATE_LIMITS["events"])
        bad = api.post(f"/api/v1/bench/event-{part}", {"metadata": {}})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "INVALID_REQUEST"
        refused = api.post(f"/api/v1/bench/event-{part}", {"event_name": "x"}, key=cast.analytics_key)
        assert refused.status_code == 403
    stored = set(Event.objects.filter(name__startswith="part-").values_list("name", flat=True))
    assert stored == {"part-without-redis"}


def test_percentile_nearest_rank():
    values = [i / 1000 for i in range(1, 101)]
    assert percentile(values, 50) == 0.05
    assert percentile(values, 95) == 0.095
    assert percentile(values, 99) == 0.099
    assert percentile([], 95) == 0.0


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        body = self.rfile.read(length)
        self._reply(201 if body == b"ok" else 400, b'{"n": 1}')

    def do_GET(self):
        self._reply(200, b'{"data": {"events": 1}}')

    def _reply(self, status, payload):
        self.send_response(status)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


OK = build_request("POST", "/x", "127.0.0.1", {}, b"ok")  # _Handler answers 201
BAD = build_request("POST", "/x", "127.0.0.1", {}, b"no")  # and 400


def _serve_handler():
    """The base URL of a _Handler server on a free loopback port, until the fixture ends."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


handler_base = pytest.fixture(_serve_handler, name="handler_base")
second_handler_base = pytest.fixture(_serve_handler, name="second_handler_base")


def test_query_bench_takes_the_databases_in_turn(monkeypatch, handler_base, second_handler_base):
    """``bench query`` times each query in slices, the databases in alternating order, and adds
    each database's slices up, so a slow stretch of the machine falls on both sides of the growth."""
    from bench import query

    timed = []

    def recording_run_load(base, make_request, **kwargs):
        result = run_load(base, make_request, **kwargs)
        if kwargs["duration"] == 120:  # a timed slice, not the warm-up
            timed.append((base, kwargs["max_requests"]))
        return result

    monkeypatch.setattr(query, "run_load", recording_run_load)
    servers = {"small": (handler_base, "k1"), "big": (second_handler_base, "k2")}
    out = query.measure(servers, 10, 4, datetime(2026, 3, 10, tzinfo=UTC).date(), queries=query.QUERIES[:1])
    a, b = handler_base, second_handler_base
    assert timed == [(a, 3), (b, 3), (b, 3), (a, 3), (a, 2), (b, 2), (b, 2), (a, 2)]
    name = query.QUERIES[0][0]
    for db in servers:
        result, sample = out[db][name]
        assert result.completed == 10 and set(result.statuses) == {200}
        assert sample == {"data": {"events": 1}}


def test_load_client_counts_statuses_and_stops_at_max_requests(handler_base):
    result = run_load(handler_base, lambda seq: BAD if seq % 5 == 4 else OK, connections=3, duration=20, max_requests=25,
                      keep_bodies=True)  # fmt: skip
    assert result.completed == 25
    assert result.statuses == {201: 20, 400: 5}
    assert result.errors == 5
    assert result.bodies[0] == b'{"n": 1}'


def test_cpu_snapshot_counts_the_server_processes_by_their_bind_address():
    import subprocess
    import sys
    import time

    from bench import cpu

    burn = (
        "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass\n"
        "print('done', flush=True)\ntime.sleep(30)"
    )
    proc = subprocess.Popen([sys.executable, "-c", burn, "--bind", "127.0.0.1:59999"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "done"
        time.sleep(0.05)
        seen = cpu.snapshot("http://127.0.0.1:59999")
        assert seen["server"] >= 0.25
        assert set(seen) == {"server", "postgres", "redis"}
        assert cpu.snapshot("http://127.0.0.1:59998")["server"] == 0.0
        before, after = {"server": 1.0, "postgres": 0.5, "redis": 0.0}, {"server": 2.0, "postgres": 1.0, "redis": 0.0}
        assert cpu.per_request(before, after, 1000) == {"server": 1.0, "postgres": 0.5, "redis": 0.0}  # ms per request
    finally:
        proc.kill()
        proc.wait()


def test_cpu_snapshot_keeps_the_cpu_of_children_that_ended():
    """A PostgreSQL backend that exits (Django recycling connections) must not take its CPU
    out of the sum: it moves into the parent's reaped-children time."""
    import subprocess
    import sys

    from bench import cpu

    child = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass"
    parent = (
        f"import subprocess, sys, time\nsubprocess.run([sys.executable, '-c', {child!r}])\n"
        "print('done', flush=True)\ntime.sleep(30)"
    )
    proc = subprocess.Popen([sys.executable, "-c", parent, "--bind", "127.0.0.1:59997"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "done"
        assert cpu.snapshot("http://127.0.0.1:59997")["server"] >= 0.25
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.django_db(transaction=True)
def test_a_connection_closed_before_a_snapshot_is_reaped_first():
    """The batch benchmark closes its connection right before a slice's first snapshot: its
    backend must be gone by then, or its whole CPU (the previous COPY) lands in that slice."""
    import os

    from django.db import connection

    from bench import cpu

    if connection.vendor != "postgresql":
        pytest.skip("a PostgreSQL backend process")
    connection.ensure_connection()
    pid = connection.connection.info.backend_pid
    cpu.close_and_reap(connection)
    assert not os.path.exists(f"/proc/{pid}")
    assert connection.connection is None


@pytest.mark.parametrize(
    "cmdline, group",
    [
        (b"/usr/lib/postgresql/15/bin/postgres\0-D\0/var/lib/postgresql/15/main\0", "postgres"),  # the postmaster
        (b"postgres: 15/main: root bench_ingest 127.0.0.1(51234) idle\0", "postgres"),
        (b"postgres: 15/main: autovacuum worker\0", "postgres"),
        (b"/usr/bin/redis-server 127.0.0.1:6379\0", "redis"),
        (b"/venv/bin/gunicorn\0infinity.wsgi:application\0--bind\x00127.0.0.1:8123\0", "server"),
        (b"/usr/bin/python3\0-m\0bench\0", None),
        (b"/usr/bin/postgres-exporter\0", None),
    ],
)
def test_cpu_groups_processes_by_command_line(cmdline, group):
    from bench import cpu

    assert cpu.group_of(cmdline, b"127.0.0.1:8123") == group


def test_ingest_phases_are_interleaved_and_merged(monkeypatch, handler_base):
    """``bench ingest`` runs its phases in slices taken in turn and adds each phase's up."""
    from bench import ingest

    order = []

    def recording_run_load(base, make_request, **kwargs):
        order.append(make_request(0))
        return run_load(base, make_request, **kwargs)

    monkeypatch.setattr(ingest, "run_load", recording_run_load)
    phases = {"ok": lambda seq: OK, "bad": lambda seq: BAD}
    results, used = ingest.interleaved(handler_base, phases, connections=2, duration=0.6, rounds=3)
    assert order == [OK, BAD, OK, BAD, OK, BAD]
    assert set(results["ok"].statuses) == {201} and set(results["bad"].statuses) == {400}
    assert results["ok"].completed > 0 and results["bad"].errors == results["bad"].completed > 0
    assert 0.5 < results["ok"].duration < 1.2  # three slices of 0.2 s
    assert set(used["ok"]) == {"server", "postgres", "redis"}


def test_a_ratio_short_of_its_target_never_prints_as_the_target():
    assert percent(35568 / 71145) == "49.9%"  # a batch run that printed "50%" beside MISSED
    assert percent(0.5) == "50.0%" and percent(0.6) == "60.0%"
    assert percent(0.59999) == "59.9%" and percent(1.0) == "100.0%" and percent(0.57) == "57.0%"
    assert percent(2.01) == "201.0%" and percent(0.491) == "49.1%"  # 2.01 * 1000 is 2009.99...


def test_a_latency_or_growth_over_its_bound_never_prints_as_the_bound():
    assert ms(0.05004) == "50.1 ms" and ms(0.0501) == "50.1 ms"  # rounded, 50.04 read "50.0 ms"
    assert ms(0.05) == "50.0 ms" and ms(0.0051) == "5.1 ms" and ms(0.0) == "0.0 ms"  # 51.00...01
    assert times(1.5004) == "1.51x" and times(1.5) == "1.50x" and times(1.1) == "1.10x"  # 110.00...01
