"""A pair of dimensions has its own, higher cap on values per rolled bucket."""

from datetime import UTC, datetime, timedelta

from analytics import rollups
from analytics.models import RolledBucket
from events.models import Event


def test_a_pair_keeps_more_values_than_a_single_dimension(api, cast, monkeypatch):
    monkeypatch.setattr(rollups, "MAX_VALUES_PER_DIMENSION", 3)
    monkeypatch.setattr(rollups, "MAX_VALUES_PER_PAIR", 10)
    day = datetime(2024, 1, 10, 12, tzinfo=UTC)
    for i, (source, page) in enumerate((s, p) for s in ("Google", "Bing") for p in ("/a", "/b", "/c", "/d")):
        Event.objects.create(site=cast.site, kind=1, name="pageview", path=page, source=source,
                             occurred_at=day + timedelta(minutes=i), visitor=i, session=i)  # fmt: skip
    rollups.rebuild(site=cast.site, now=datetime(2024, 2, 1, tzinfo=UTC))
    rolled = set(RolledBucket.objects.get(site=cast.site, start__date="2024-01-10").dimensions)
    assert "page" not in rolled  # 4 pages > 3
    assert "source|page" in rolled  # 8 pairs <= 10
    body = api.get("/api/v1/analytics", {"start_date": "2024-01-10", "end_date": "2024-01-10", "metrics": "page_views",
                                         "breakdown": "page", "filters": "source==Google"}).json()  # fmt: skip
    assert [(r["value"], r["page_views"]) for r in body["breakdown"]] == [("/a", 1), ("/b", 1), ("/c", 1), ("/d", 1)]
