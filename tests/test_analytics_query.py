"""The analytics query API: validation, echo, filters syntax, timeouts."""

from datetime import UTC, datetime

import pytest

from analytics import engine
from events.models import Event


def _event(site, when, kind=1, **fields):
    fields.setdefault("name", "pageview")
    return Event.objects.create(site=site, kind=kind, occurred_at=when, **fields)


@pytest.mark.parametrize(
    "params, field",
    [
        ({"bogus": "1"}, "bogus"),
        ({"metrics": "page_views,bogus_metric"}, "metrics"),
        ({"interval": "minute"}, "interval"),
        ({"interval": "hour", "start_date": "2024-01-01", "end_date": "2024-02-15"}, "interval"),
        ({"breakdown": "planet"}, "breakdown"),
        ({"breakdown": "page", "limit": "0"}, "limit"),
        ({"breakdown": "page", "limit": "1001"}, "limit"),
        ({"breakdown": "page", "limit": "ten"}, "limit"),
        ({"filters": "page=/pricing"}, "filters"),
        ({"filters": "planet==earth"}, "filters"),
        ({"filters": "page==/a\\x"}, "filters"),
        ({"filters": "metadata.==x"}, "filters"),
        ({"timezone": "Mars/Olympus_Mons"}, "timezone"),
        ({"timezone": "../../etc/passwd"}, "timezone"),
        ({"compare": "last_year"}, "compare"),
        ({"start_date": "2019-01-01", "end_date": "2024-12-31"}, "start_date"),
        ({"end_date": "0001-01-05"}, "end_date"),  # the default start, 29 days earlier, is before year 1
        ({"start_date": "9999-12-30"}, "start_date"),
        ({"breakdown": "entry_page", "metrics": "page_views"}, "metrics"),
        ({"filters": "exit_page==/", "metrics": "visits,revenue"}, "metrics"),
        ({"breakdown": "page", "limit": "²"}, "limit"),  # str.isdigit() takes it, int() does not
        ({"breakdown": "page", "limit": "①"}, "limit"),
        ({"start_date": "2024-W01-1"}, "start_date"),  # a week date: not YYYY-MM-DD
        ({"filters": "page==/a\x00"}, "filters"),  # PostgreSQL text cannot hold NUL
        ({"filters": "page~\x00"}, "filters"),
        ({"filters": "metadata.\x00==x"}, "filters"),
        ({"breakdown": "metadata.a\x00b"}, "breakdown"),
    ],
)
def test_invalid_query_is_a_400_naming_the_parameter(api, params, field):
    response = api.get("/api/v1/analytics", params)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "INVALID_REQUEST"
    assert error["field"] == field


def test_reference_request_keeps_the_reference_shape_and_extended_requests_echo_the_query(api):
    plain = api.get("/api/v1/analytics", {"start_date": "2024-01-01", "end_date": "2024-01-31"}).json()
    assert set(plain) == {"data", "period"}
    extended = api.get(
        "/api/v1/analytics",
        {"start_date": "2024-01-01", "end_date": "2024-01-31", "breakdown": "page", "filters": "page==/a\\;b;country==DE"},
    ).json()
    assert extended["query"] == {
        "start_date": "2024-01-01", "end_date": "2024-01-31", "metrics": ["page_views", "unique_visitors", "events"],
        "timezone": "UTC", "interval": None, "breakdown": "page", "limit": 10, "filters": "page==/a\\;b;country==DE",
        "compare": None,
    }  # fmt: skip


def test_escaped_semicolon_is_part_of_the_filter_value(api, cast):
    when = datetime(2024, 1, 10, 12, tzinfo=UTC)
    _event(cast.site, when, path="/a;b", country="DE")
    _event(cast.site, when, path="/a", country="DE")
    body = api.get("/api/v1/analytics", {"start_date": "2024-01-10", "end_date": "2024-01-10", "filters": "page==/a\\;b"}).json()
    assert body["data"]["page_views"] == 1


def test_outsider_key_sees_none_of_the_site_events(api, cast):
    _event(cast.site, datetime(2024, 1, 10, 12, tzinfo=UTC), path="/a", visitor=1, session=1)
    params = {"start_date": "2024-01-01", "end_date": "2024-01-31", "metrics": "page_views,visits", "breakdown": "page"}
    mine = api.get("/api/v1/analytics", params).json()
    theirs = api.get("/api/v1/analytics", params, key=cast.outsider_key).json()
    assert mine["data"] == {"page_views": 1, "visits": 1}
    assert theirs["data"] == {"page_views": 0, "visits": 0} and theirs["breakdown"] == []


def test_revenue_is_per_currency_in_minor_units_and_never_summed(api, cast):
    when = datetime(2024, 1, 10, 12, tzinfo=UTC)
    _event(cast.site, when, kind=3, name="purchase", price=2999, quantity=1, currency="USD", visitor=1)
    _event(cast.site, when, kind=3, name="purchase", price=750, quantity=2, currency="EUR", visitor=2)
    _event(cast.site, when, kind=3, name="purchase", price=1000, quantity=1, currency="EUR", visitor=2)
    body = api.get(
        "/api/v1/analytics",
        {
            "start_date": "2024-01-10",
            "end_date": "2024-01-10",
            "metrics": "revenue,average_order_value,purchases,conversion_rate",
        },
    ).json()
    assert body["data"] == {
        "revenue": {"EUR": 2500, "USD": 2999},
        "average_order_value": {"EUR": 1250, "USD": 2999},
        "purchases": 3,
        "conversion_rate": 100.0,
    }


def test_series_is_zero_filled_in_the_query_timezone(api, cast):
    _event(cast.site, datetime(2024, 1, 1, 23, 30, tzinfo=UTC), visitor=1)  # Jan 2 in Berlin
    body = api.get(
        "/api/v1/analytics",
        {
            "start_date": "2024-01-01",
            "end_date": "2024-01-03",
            "interval": "day",
            "timezone": "Europe/Berlin",
            "metrics": "page_views",
        },
    ).json()
    assert body["series"] == [
        {"date": "2024-01-01", "page_views": 0},
        {"date": "2024-01-02", "page_views": 1},
        {"date": "2024-01-03", "page_views": 0},
    ]


def test_a_query_over_the_statement_timeout_is_a_400_not_a_500(api, monkeypatch):
    from django.db import connection

    def slow(query, **kwargs):
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute("SELECT pg_sleep(1)")
            else:
                cursor.execute(
                    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50000000) SELECT count(*) FROM n"
                )
        return {}

    monkeypatch.setattr(engine, "STATEMENT_TIMEOUT_MS", 50)
    monkeypatch.setattr(engine, "collect", slow)
    response = api.get("/api/v1/analytics", {"start_date": "2024-01-01", "end_date": "2024-01-31"})
    assert response.status_code == 400
    assert "narrow the date range" in response.json()["error"]["message"]
