"""GET /api/v1/analytics totals: real counts with the documented semantics, checked by brute force."""

import random
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.db import connection

from events.models import Event, Kind

ANALYTICS = "/api/v1/analytics"


def send(api, name="e", **fields):
    response = api.post("/api/v1/events", {"event_name": name, **fields})
    assert response.status_code == 201
    return response


def totals(api, **params):
    response = api.get(ANALYTICS, params)
    assert response.status_code == 200, response.content
    return response.json()["data"]


def test_event_is_visible_to_the_next_query(api):
    assert totals(api)["events"] == 0
    send(api)
    assert totals(api)["events"] == 1


def test_omitted_metrics_means_all_and_dates_default_to_last_30_days(api):
    today = datetime.now(UTC).date()
    body = api.get(ANALYTICS).json()
    assert body["period"] == {"start": (today - timedelta(days=29)).isoformat(), "end": today.isoformat()}
    assert set(body["data"]) >= {"page_views", "unique_visitors", "events"}


def test_requested_metrics_only_in_requested_order(api):
    send(api, visitor_id="a")
    body = api.get(ANALYTICS, {"metrics": "events,unique_visitors"}).json()
    assert list(body["data"]) == ["events", "unique_visitors"]
    assert body["data"] == {"events": 1, "unique_visitors": 1}


def test_dates_are_inclusive(api):
    send(api, timestamp="2024-01-01T00:00:00Z")
    send(api, timestamp="2024-01-31T23:59:59.999999Z")
    send(api, timestamp="2024-02-01T00:00:00Z")
    send(api, timestamp="2023-12-31T23:59:59Z")
    assert totals(api, start_date="2024-01-01", end_date="2024-01-31")["events"] == 2
    assert totals(api, start_date="2024-02-01", end_date="2024-02-01")["events"] == 1


def test_days_are_in_the_site_timezone(api, cast):
    cast.site.timezone = "America/New_York"
    cast.site.save()
    # 2024-01-15 04:30Z is still Jan 14 in New York; 05:30Z is Jan 15.
    send(api, timestamp="2024-01-15T04:30:00Z")
    send(api, timestamp="2024-01-15T05:30:00Z")
    send(api, timestamp="2024-01-16T04:59:59Z")
    send(api, timestamp="2024-01-16T05:00:00Z")
    assert totals(api, start_date="2024-01-15", end_date="2024-01-15")["events"] == 2
    assert totals(api, start_date="2024-01-14", end_date="2024-01-14")["events"] == 1


def test_events_count_by_their_own_timestamp_not_arrival(api):
    send(api, timestamp="2024-01-15T10:30:00Z")
    assert totals(api, start_date="2024-01-15", end_date="2024-01-15")["events"] == 1
    assert totals(api)["events"] == 0


def test_events_include_purchases_but_not_page_views(api, cast):
    send(api)
    api.post("/api/v1/events/purchase", {"price": 1, "currency": "USD", "product_name": "P"})
    Event.objects.create(site=cast.site, kind=Kind.PAGEVIEW, name="pageview", occurred_at=datetime.now(UTC), visitor=7)
    data = totals(api)
    assert (data["events"], data["page_views"], data["unique_visitors"]) == (2, 1, 1)


def test_visitor_id_is_one_visitor_across_the_range_and_anonymous_events_count_for_none(api):
    for day in ("2024-01-01", "2024-01-10", "2024-01-31"):
        send(api, visitor_id="alice", timestamp=f"{day}T12:00:00Z")
    send(api, visitor_id="bob", timestamp="2024-01-05T12:00:00Z")
    send(api, timestamp="2024-01-05T12:00:00Z")
    send(api, timestamp="2024-01-06T12:00:00Z")
    data = totals(api, start_date="2024-01-01", end_date="2024-01-31")
    assert (data["unique_visitors"], data["events"]) == (2, 6)


def test_outsider_events_are_not_counted(api, cast):
    send(api, visitor_id="a")
    api.post("/api/v1/events", {"event_name": "e", "visitor_id": "b"}, key=cast.outsider_key)
    assert totals(api) == {"page_views": 0, "unique_visitors": 1, "events": 1}


def test_counts_match_brute_force(api, cast):
    """Random events over several timezones' worth of edges, compared with a count over raw rows."""
    rng = random.Random(20261127)
    cast.site.timezone = "Asia/Kolkata"
    cast.site.save()
    tz = ZoneInfo("Asia/Kolkata")
    base = datetime(2024, 3, 1, tzinfo=UTC)
    for _ in range(150):
        when = base + timedelta(minutes=rng.randrange(0, 60 * 24 * 20))
        visitor = rng.choice([None, "a", "b", "c", "d", "e"])
        if rng.random() < 0.3:
            api.post(
                "/api/v1/events/purchase",
                {"price": 5, "currency": "EUR", "product_name": "P", "timestamp": when.isoformat(), "visitor_id": visitor},
            )
        else:
            send(api, timestamp=when.isoformat(), visitor_id=visitor)
    rows = list(Event.objects.filter(site=cast.site).values("occurred_at", "visitor", "kind"))
    for _ in range(15):
        start = date(2024, 3, 1) + timedelta(days=rng.randrange(0, 20))
        end = start + timedelta(days=rng.randrange(0, 6))
        inside = [r for r in rows if start <= r["occurred_at"].astimezone(tz).date() <= end]
        expected = {
            "page_views": sum(r["kind"] == Kind.PAGEVIEW for r in inside),
            "unique_visitors": len({r["visitor"] for r in inside if r["visitor"] is not None}),
            "events": sum(r["kind"] in (Kind.CUSTOM, Kind.PURCHASE) for r in inside),
        }
        got = totals(api, start_date=start.isoformat(), end_date=end.isoformat(), metrics="page_views,unique_visitors,events")
        assert got == expected, (start, end)


@pytest.mark.parametrize(
    "params, field",
    [
        ({"metrics": "page_views,bogus_metric"}, "metrics"),
        ({"metrics": "PAGE_VIEWS"}, "metrics"),
        ({"start_date": "2024-13-01"}, "start_date"),
        ({"start_date": "01/02/2024"}, "start_date"),
        ({"end_date": "2024-02-30"}, "end_date"),
        ({"end_date": "yesterday"}, "end_date"),
        ({"start_date": "2024-01-01T00:00:00Z"}, "start_date"),
        ({"start_date": "2024-02-01", "end_date": "2024-01-01"}, "start_date"),
        ({"start_date": "2010-01-01", "end_date": "2024-01-01"}, "start_date"),
    ],
)
def test_bad_query_is_a_400_naming_the_parameter(api, params, field):
    response = api.get(ANALYTICS, params)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "INVALID_REQUEST"
    assert error["field"] == field


def test_unknown_metric_message_names_it(api):
    error = api.get(ANALYTICS, {"metrics": "bogus_metric"}).json()["error"]
    assert "bogus_metric" in error["message"]


def test_start_after_end_message(api):
    error = api.get(ANALYTICS, {"start_date": "2024-02-01", "end_date": "2024-01-01"}).json()["error"]
    assert error["message"] == "start_date must be on or before end_date"


def test_analytics_query_count_is_pinned(api, django_assert_num_queries):
    api.get(ANALYTICS)  # warm: last_used_at, the worker's key cache
    # rolled-bucket lookup + one aggregate; on PostgreSQL also the statement timeout's
    # transaction (here a SAVEPOINT, SET LOCAL statement_timeout, RELEASE)
    with django_assert_num_queries(2 if connection.vendor == "sqlite" else 5):
        assert api.get(ANALYTICS, {"start_date": "2024-01-01", "end_date": "2024-01-31"}).status_code == 200
