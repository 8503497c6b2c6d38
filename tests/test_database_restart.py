"""A worker's database connection dies (a PostgreSQL restart, a failover, an idle timeout):
the request that finds it dead gets a 503 with Retry-After, nothing acknowledged is lost, and
the next request on that worker reconnects. No per-request "SELECT 1" is needed for that."""

import pytest
from django.db import connection

from events.models import Event

from .servers import gunicorn_servers, post_event

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="server-side connection loss is a PostgreSQL matter")
def test_a_killed_connection_costs_at_most_one_503_then_the_worker_recovers(cast):
    with gunicorn_servers(1, workers=1) as (url,):  # one worker: its connection is the one killed
        acknowledged = [body["event_id"] for status, _, body in (post_event(url, cast.key, "before") for _ in range(6))
                        if status == 201]  # fmt: skip
        assert len(acknowledged) == 6
        with connection.cursor() as cur:  # every other connection to the test database dies
            cur.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            assert cur.fetchone()[0] >= 1
        after = [post_event(url, cast.key, "after") for _ in range(6)]
    failures = [(status, headers, body) for status, headers, body in after if status != 201]
    assert len(failures) <= 1  # the request that found the connection dead
    for status, headers, body in failures:
        assert status == 503 and body["error"]["code"] == "SERVICE_UNAVAILABLE" and int(headers["Retry-After"]) >= 1
    assert [status for status, _, _ in after[len(failures) :]] == [201] * (6 - len(failures))
    stored = set(Event.objects.values_list("name", flat=True).order_by().distinct())
    assert stored == {"before", "after"}
    assert Event.objects.filter(name="after").count() == sum(1 for status, _, _ in after if status == 201)
    assert all(Event.objects.filter(id=int(event_id[4:])).exists() for event_id in acknowledged)
