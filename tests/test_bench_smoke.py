"""Each benchmark command starts and stops, driven through its command line as a user runs it.

Nothing here is timed and nothing reads how the benchmarks print their figures: a command
passes when it exits by itself (0, or 1 for a missed target), without a traceback, and its
real runs leave the rows they claim to write. The tiny runs use this test's own database, which
pytest-django empties afterwards.
"""

import os
import subprocess
import sys

import pytest
from django.db import connection

from events.models import Event
from tests.servers import database_url

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
DOCUMENTED = {"generate", "query", "rollup", "ingest", "batch"}  # docs/performance.md
TIMEOUT = 120  # seconds: a command that does not stop by then has hung


def bench(*args) -> subprocess.CompletedProcess:
    """``python -m bench ARGS`` from the checkout, as docs/performance.md runs it."""
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "DJANGO_SETTINGS_MODULE"}}
    env["REDIS_URL"] = REDIS_URL
    return subprocess.run(
        [sys.executable, "-m", "bench", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT
    )


def assert_ran(result: subprocess.CompletedProcess, *, codes=(0, 1)):
    output = result.stdout + result.stderr
    assert result.returncode in codes and "Traceback" not in output, output[-3000:]


def commands() -> list[str]:
    """The commands ``python -m bench`` lists when run without one."""
    result = bench()
    assert result.returncode == 2, result.stdout + result.stderr  # a usage error, not a crash
    listed = [line for line in result.stdout.splitlines() if line.startswith("commands:")]
    assert listed, result.stdout
    return [name.strip() for name in listed[0].split(":", 1)[1].split(",") if name.strip()]


def test_bench_lists_the_documented_commands():
    assert DOCUMENTED <= set(commands())


def test_every_bench_command_answers_help():
    for command in commands():
        result = bench(command, "--help")
        assert_ran(result, codes=(0,))
        assert "usage:" in result.stdout, (command, result.stdout)


def test_an_unknown_option_is_a_usage_error_not_a_crash():
    result = bench("ingest", "--no-such-option")
    assert_ran(result, codes=(2,))


@pytest.mark.django_db(transaction=True)
def test_generate_then_query_on_a_tiny_database():
    url = database_url()
    assert_ran(bench("generate", "-n", "200", "--db", url, "--no-rollups"))
    assert Event.objects.exists()
    assert_ran(bench("query", "--dbs", url, "--runs", "2", "--rounds", "1", "--only", "totals", "--no-rollup", "--workers", "1"))


@pytest.mark.django_db(transaction=True)
def test_rollup_times_the_rebuild_beside_the_plain_statement():
    from analytics.models import RolledBucket

    if connection.vendor != "postgresql":
        pytest.skip("bench rollup compares with a PostgreSQL GROUPING SETS statement")
    url = database_url()
    assert_ran(bench("generate", "-n", "300", "--db", url, "--no-rollups"))
    result = bench("rollup", "--db", url, "--jobs", "1")
    assert_ran(result)
    assert "events/s" in result.stdout and RolledBucket.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_ingest_runs_a_second_of_load_and_stores_what_it_acknowledged():
    url = database_url()
    before = Event.objects.count()
    args = ["--duration", "1", "--rounds", "1", "--warmup", "0.2", "--connections", "2", "--workers", "1", "--no-wrk"]
    assert_ran(bench("ingest", "--db", url, *args))
    assert Event.objects.count() > before


@pytest.mark.django_db(transaction=True)
def test_ingest_with_a_baseline_drives_both_checkouts():
    """``--baseline DIR`` runs a second checkout's server in turns with this one's: here this
    checkout twice. Each side stores under its own event name."""
    url = database_url()
    args = ["--duration", "1", "--rounds", "2", "--warmup", "0.2", "--connections", "2", "--workers", "1"]
    assert_ran(bench("ingest", "--db", url, "--baseline", ROOT, *args))
    assert Event.objects.filter(name__endswith="-baseline").exists()
    assert Event.objects.exclude(name__endswith="-baseline").exclude(name__endswith="-warmup").exists()


@pytest.mark.django_db(transaction=True)
def test_batch_runs_a_second_of_load_beside_its_copy():
    if connection.vendor != "postgresql":
        pytest.skip("bench batch compares the endpoint with PostgreSQL's COPY")
    url = database_url()
    before = Event.objects.count()
    args = ["--duration", "1", "--rounds", "1", "--connections", "1", "--size", "20", "--workers", "1"]
    assert_ran(bench("batch", "--db", url, *args))
    assert Event.objects.count() > before


def test_counters_measures_a_few_calls():
    if "counters" not in commands():
        pytest.skip("no counters command")
    assert_ran(bench("counters", "--calls", "20", "--redis", REDIS_URL))


@pytest.mark.django_db(transaction=True)
def test_batchloop_posts_its_batches_in_process():
    if connection.vendor != "postgresql":
        pytest.skip("bench batchloop reads its PostgreSQL backend's CPU")
    before = Event.objects.count()
    assert_ran(bench("batchloop", "--db", database_url(), "--batches", "1", "--size", "5"), codes=(0,))
    assert Event.objects.count() - before == 15  # two warm-up batches and the measured one
