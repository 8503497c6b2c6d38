"""current_visitors: distinct visitors with an event in the last five minutes, from the API."""

from datetime import timedelta

import pytest
from django.utils import timezone

from events.models import Event


def _event(site, minutes_ago, visitor, path="/"):
    when = timezone.now() - timedelta(minutes=minutes_ago)
    Event.objects.create(site=site, kind=1, name="pageview", path=path, occurred_at=when, visitor=visitor, session=visitor)


def test_current_visitors_are_the_distinct_visitors_of_the_last_five_minutes(api, cast):
    _event(cast.site, 1, visitor=1)
    _event(cast.site, 2, visitor=1, path="/pricing")
    _event(cast.site, 4, visitor=2, path="/pricing")
    _event(cast.site, 8, visitor=3)  # too long ago
    _event(cast.outsider_site, 1, visitor=4)  # another site
    Event.objects.create(site=cast.site, kind=1, name="pageview", path="/", occurred_at=timezone.now(), visitor=None)
    body = api.get("/api/v1/analytics", {"metrics": "current_visitors"}).json()
    assert body == {"data": {"current_visitors": 2}, "period": body["period"]}
    assert api.get("/api/v1/analytics", {"metrics": "current_visitors", "filters": "page==/pricing"}).json()["data"] == {
        "current_visitors": 2
    }
    mixed = api.get("/api/v1/analytics", {"metrics": "page_views,current_visitors", "filters": "page==/"}).json()
    assert mixed["data"] == {"page_views": 3, "current_visitors": 1}
    assert mixed["query"]["metrics"] == ["page_views", "current_visitors"]


@pytest.mark.parametrize("extra", [{"interval": "day"}, {"breakdown": "page"}, {"compare": "previous_period"}])
def test_current_visitors_are_one_number(api, extra):
    response = api.get("/api/v1/analytics", {"metrics": "current_visitors", **extra})
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "metrics"
