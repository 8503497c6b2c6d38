"""Which numbers are HyperLogLog estimates: the response says so, path by path."""

import random
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analytics.models import RolledBucket, Rollup
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


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    sizes=st.lists(st.integers(513, 800), min_size=2, max_size=4),
    per_visitor=st.sampled_from([1, 2]),
    buy=st.booleans(),
    seed=st.integers(0, 2**32),
)
def test_a_union_of_sketches_never_counts_more_visitors_than_rollups_prove(api, cast, settings, sizes, per_visitor, buy, seed):
    """Days of disjoint visitors, each day's set above the exact limit (stored as registers):
    the true union is the sum of the days' exact counts, and with one event per visitor also the
    event count. A HyperLogLog estimate lands above it about half the time; the answer never does."""
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "analytics": 10**9}
    Event.objects.all().delete()
    Rollup.objects.all().delete()
    RolledBucket.objects.all().delete()
    rng = random.Random(seed)
    day = datetime(2024, 1, 10, 12, tzinfo=UTC)
    rows = []
    for d, size in enumerate(sizes):
        for v in range(size):
            visitor = rng.getrandbits(62)
            for i in range(per_visitor):
                when = day + timedelta(days=d, seconds=2 * v + i)
                kind = dict(kind=3, name="purchase", price=100, currency="USD") if buy else dict(kind=1, name="pageview")
                rows.append(Event(site=cast.site, path="/", occurred_at=when, visitor=visitor, session=visitor, **kind))
    Event.objects.bulk_create(rows)
    rebuild(site=cast.site, now=datetime(2024, 2, 1, tzinfo=UTC))
    end = (day + timedelta(days=len(sizes) - 1)).date().isoformat()
    params = {"start_date": "2024-01-10", "end_date": end, "metrics": "unique_visitors,page_views,events,conversion_rate"}
    body = api.get("/api/v1/analytics", {**params, "interval": "day", "breakdown": "page"}).json()
    data, true = body["data"], sum(sizes)
    assert [row["unique_visitors"] for row in body["series"]] == sizes  # each day: its exact count
    for row in [data, body["breakdown"][0]]:
        assert row["unique_visitors"] <= min(true, row["page_views"] + row["events"])
        assert abs(row["unique_visitors"] - true) <= true * 3 * RELATIVE_STANDARD_ERROR
        assert row["conversion_rate"] == (100.0 if buy else 0.0)
