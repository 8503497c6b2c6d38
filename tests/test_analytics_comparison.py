"""compare=previous_period|year_over_year: the comparison period's totals and, with an interval, its series."""

from datetime import UTC, datetime

from events.models import Event


def _view(site, when, path="/"):
    Event.objects.create(site=site, kind=1, name="pageview", path=path, occurred_at=when, visitor=when.toordinal(), session=1)


def test_year_over_year_compares_the_same_dates_a_year_earlier(api, cast):
    _view(cast.site, datetime(2024, 3, 10, 12, tzinfo=UTC))
    _view(cast.site, datetime(2023, 3, 10, 12, tzinfo=UTC))
    _view(cast.site, datetime(2023, 3, 11, 12, tzinfo=UTC))
    params = {"start_date": "2024-03-01", "end_date": "2024-03-31", "metrics": "page_views", "interval": "day"}
    body = api.get("/api/v1/analytics", {**params, "compare": "year_over_year"}).json()
    assert body["data"] == {"page_views": 1}
    comparison = body["comparison"]
    assert comparison["period"] == {"start": "2023-03-01", "end": "2023-03-31"}
    assert comparison["data"] == {"page_views": 2}
    assert len(comparison["series"]) == 31 and comparison["series"][9] == {"date": "2023-03-10", "page_views": 1}
    assert body["query"]["compare"] == "year_over_year"


def test_the_previous_period_has_its_own_series_with_an_interval_only(api, cast):
    _view(cast.site, datetime(2024, 2, 28, 12, tzinfo=UTC))
    params = {"start_date": "2024-03-01", "end_date": "2024-03-07", "metrics": "page_views", "compare": "previous_period"}
    plain = api.get("/api/v1/analytics", params).json()
    assert plain["comparison"] == {"data": {"page_views": 1}, "period": {"start": "2024-02-23", "end": "2024-02-29"}}
    daily = api.get("/api/v1/analytics", {**params, "interval": "day"}).json()
    assert [p["page_views"] for p in daily["comparison"]["series"]] == [0, 0, 0, 0, 0, 1, 0]


def test_a_leap_day_compares_with_the_28th_of_february(api, cast):
    body = api.get(
        "/api/v1/analytics", {"start_date": "2024-02-29", "end_date": "2024-02-29", "compare": "year_over_year"}
    ).json()
    assert body["comparison"]["period"] == {"start": "2023-02-28", "end": "2023-02-28"}


def test_an_unknown_comparison_names_the_choices(api):
    response = api.get("/api/v1/analytics", {"compare": "last_decade"})
    assert response.status_code == 400
    assert "previous_period, year_over_year" in response.json()["error"]["message"]
