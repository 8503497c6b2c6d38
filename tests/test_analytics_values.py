"""Dimension values and filters answer the same on SQLite and PostgreSQL, raw and from rollups.

The cases are where the two databases or the two paths could part: metadata keys that look
like numbers, the text of non-string metadata values, ``~`` with non-ASCII letters, the case
of an ``==`` filter answered from pair rollups, revenue past 2^63 on SQLite, and breakdown
rows whose only metric is a rate of 0.
"""

from datetime import UTC, datetime, timedelta

import pytest

from analytics import rollups
from events.models import Event

DAY = datetime(2024, 1, 10, 12, tzinfo=UTC)
ONE_DAY = {"start_date": "2024-01-10", "end_date": "2024-01-10"}


def _event(site, kind=1, **fields):
    fields.setdefault("name", {1: "pageview", 2: "signup", 3: "purchase"}[kind])
    return Event.objects.create(site=site, kind=kind, occurred_at=DAY, **fields)


def _get(api, **params):
    response = api.get("/api/v1/analytics", {**ONE_DAY, **params})
    assert response.status_code == 200, response.content
    return response.json()


@pytest.mark.parametrize("key", ["2024", "0", "-1", "7 "])
def test_a_metadata_key_that_looks_like_a_number_is_an_object_key(api, cast, key):
    # Django's KeyTextTransform reads such keys as array indexes; a key is always an object key.
    _event(cast.site, 2, metadata={key: "x", "plan": "pro"})
    assert _get(api, metrics="events", breakdown=f"metadata.{key}")["breakdown"] == [{"value": "x", "events": 1}]
    assert _get(api, metrics="events", filters=f"metadata.{key}==x")["data"] == {"events": 1}
    rollups.rebuild(site=cast.site, now=DAY + timedelta(days=3))
    assert _get(api, metrics="events", breakdown=f"metadata.{key}")["breakdown"] == [{"value": "x", "events": 1}]


@pytest.mark.parametrize(
    "value, text",
    [
        (None, None),  # JSON null is the empty value, like a missing key (SQLite said "null")
        (True, "true"),
        (2, "2"),
        (3.0, "3.0"),
        (0.25, "0.25"),
        (-0.0, "0.0"),
        (1e-07, "0.0000001"),  # numbers in positional notation, as PostgreSQL prints them (SQLite said "1.0e-07")
        (1.5e20, "150000000000000000000"),
    ],
)
@pytest.mark.parametrize("path", ["/api/v1/events", "/api/v1/events/batch"])
def test_a_metadata_value_has_one_text_on_both_databases(api, cast, value, text, path):
    body = {"event_name": "e", "metadata": {"k": value}, "timestamp": "2024-01-10T12:00:00Z"}
    if path.endswith("batch"):
        response = api.post(path, {"events": [body]})
        assert response.status_code == 200 and response.json()["accepted"] == 1, response.content
    else:
        assert api.post(path, body).status_code == 201
    assert _get(api, metrics="events", breakdown="metadata.k")["breakdown"] == [{"value": text, "events": 1}]
    assert _get(api, metrics="events", filters=f"metadata.k=={text or ''}")["data"] == {"events": 1}
    assert _get(api, metrics="events", filters=f"metadata.k!={text or ''}")["data"] == {"events": 0}


def test_contains_folds_ascii_letters_only_for_event_and_visit_dimensions_alike(api, cast):
    # '/Élan' is both the page and the entry page of this visit: '~' must answer the same for both,
    # folding ASCII letters only (SQLite's LIKE can do no more).
    _event(cast.site, path="/Élan/Pricing", visitor=1, session=1)
    for dimension in ("page", "entry_page"):
        for needle, found in [("pricing", 1), ("PRICING", 1), ("Élan", 1), ("ÉLAN", 1), ("élan", 0)]:
            body = _get(api, metrics="visits", filters=f"{dimension}~{needle}")
            assert body["data"] == {"visits": found}, (dimension, needle)


@pytest.mark.parametrize(
    "filters, breakdown, metrics",
    [("country==de", "source", "page_views,visits"), ("event_name==Signup", "metadata.plan", "events")],
)
def test_an_equals_filter_is_case_sensitive_when_answered_from_pair_rollups(api, cast, filters, breakdown, metrics):
    # Pair rollups (country|source, event_name|metadata.<key>) are read by value prefix; SQLite's
    # LIKE ignores ASCII case, so 'country==de' must not break down the 'DE' events.
    _event(cast.site, path="/", country="DE", source="Google", visitor=1, session=1)
    _event(cast.site, 2, name="signup", metadata={"plan": "pro"}, visitor=2)
    _event(cast.site, 2, name="Signup", metadata={"plan": "free"}, visitor=3)
    raw = _get(api, metrics=metrics, filters=filters, breakdown=breakdown)
    rollups.rebuild(site=cast.site, now=DAY + timedelta(days=3))
    assert _get(api, metrics=metrics, filters=filters, breakdown=breakdown) == raw
    if breakdown == "source":
        assert raw["breakdown"] == []
    else:
        assert raw["breakdown"] == [{"value": "free", "events": 1}]


@pytest.mark.parametrize("rolled", [False, True])
def test_revenue_past_two_to_the_63_is_exact(api, cast, rolled):
    # Ten purchases at the largest price and quantity pass SQLite's 64-bit integer SUM.
    for _ in range(10):
        _event(cast.site, 3, price=10**12, quantity=10**6, currency="USD", product_name="x")
    _event(cast.site, 3, price=1, quantity=3, currency="USD", product_name="y")
    if rolled:
        rollups.rebuild(site=cast.site, now=DAY + timedelta(days=3))
    body = _get(api, metrics="revenue,average_order_value", breakdown="product_name")
    assert body["data"] == {"revenue": {"USD": 10**19 + 3}, "average_order_value": {"USD": (10**19 + 3 + 5) // 11}}
    assert body["breakdown"][0] == {"value": "x", "revenue": {"USD": 10**19}, "average_order_value": {"USD": 10**18}}


def test_a_breakdown_row_with_a_rate_of_zero_is_shown(api, cast):
    # '/deep' was visited and never bounced from: bounce rate 0.0 over one visit is a
    # measurement, not an empty row. '/gone' has no visit of the query at all.
    _event(cast.site, path="/bounced", visitor=1, session=1)
    for i, path in enumerate(["/deep", "/more"]):
        Event.objects.create(site=cast.site, kind=1, name="pageview", occurred_at=DAY + timedelta(minutes=i), path=path,
                             visitor=2, session=2)  # fmt: skip
    body = _get(api, metrics="bounce_rate", breakdown="entry_page")
    assert body["breakdown"] == [{"value": "/bounced", "bounce_rate": 100.0}, {"value": "/deep", "bounce_rate": 0.0}]
    body = _get(api, metrics="conversion_rate", breakdown="page")
    assert [row["value"] for row in body["breakdown"]] == ["/bounced", "/deep", "/more"]
