"""hours=N: the N hours up to now (the last 24 hours of a site list), not whole days."""

from datetime import timedelta

from django.utils import timezone

from events.models import Event


def _view(site, hours_ago, visitor):
    when = timezone.now() - timedelta(hours=hours_ago)
    Event.objects.create(site=site, kind=1, name="pageview", path="/", occurred_at=when, visitor=visitor, session=visitor)


def test_the_last_24_hours_count_what_happened_since_this_time_yesterday(api, cast):
    _view(cast.site, 2, visitor=1)
    _view(cast.site, 23, visitor=2)
    _view(cast.site, 25, visitor=3)  # more than a day ago
    body = api.get("/api/v1/analytics", {"hours": "24", "metrics": "unique_visitors,page_views", "interval": "hour"}).json()
    assert body["data"] == {"unique_visitors": 2, "page_views": 2}
    assert len(body["series"]) == 25  # the hour a day ago and this one, both partly in the window
    assert sum(p["page_views"] for p in body["series"]) == 2
    assert body["query"]["hours"] == 24
    compared = api.get("/api/v1/analytics", {"hours": "24", "metrics": "page_views", "compare": "previous_period"}).json()
    assert compared["comparison"]["data"] == {"page_views": 1}


def test_hours_is_instead_of_dates(api):
    for params in ({"hours": "24", "start_date": "2024-01-01"}, {"hours": "0"}, {"hours": "73"}, {"hours": "x"},
                   {"hours": "24", "compare": "year_over_year"}):  # fmt: skip
        response = api.get("/api/v1/analytics", params)
        assert response.status_code == 400, params
