"""Which numbers are HyperLogLog estimates: the response says so, path by path."""

from datetime import UTC, datetime, timedelta

from analytics.rollups import rebuild
from analytics.sketch import RELATIVE_STANDARD_ERROR
from events.models import Event


def test_a_union_of_large_visitor_sets_is_flagged_as_an_estimate(api, cast):
    day = datetime(2024, 1, 10, 12, tzinfo=UTC)
    rows = []
    for d in range(2):  # 600 visitors a day, 300 of them on both days: each day's set is stored as registers
        for v in range(600):
            when = day + timedelta(days=d, seconds=v)
            path = "/" if v % 2 else "/a"
            rows.append(
                Event(site=cast.site, kind=1, name="pageview", path=path, occurred_at=when, visitor=v + 300 * d, session=v)
            )
    Event.objects.bulk_create(rows)
    rebuild(site=cast.site, now=datetime(2024, 2, 1, tzinfo=UTC))
    params = {"start_date": "2024-01-10", "end_date": "2024-01-11", "metrics": "unique_visitors,page_views"}
    body = api.get("/api/v1/analytics", {**params, "interval": "day", "breakdown": "page", "compare": "previous_period"}).json()
    assert body["series"][0]["unique_visitors"] == 600  # one day: the exact count stored with the day
    assert abs(body["data"]["unique_visitors"] - 900) <= 900 * 3 * RELATIVE_STANDARD_ERROR
    assert body["estimated"] == {
        "relative_standard_error": RELATIVE_STANDARD_ERROR,
        "values": ["data.unique_visitors"],
    }
    one_day = api.get("/api/v1/analytics", {**params, "end_date": "2024-01-10", "breakdown": "page"}).json()
    assert "estimated" not in one_day and one_day["data"]["unique_visitors"] == 600
    reference = api.get("/api/v1/analytics", params).json()  # the reference's own shape, untouched
    assert set(reference) == {"data", "period"}
