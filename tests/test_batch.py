"""POST /api/v1/events/batch: per-item validation and results, one transaction, one rate-limit hit."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from accounts.keys import revoke_key
from accounts.models import ApiKey
from events.models import Event, Kind
from events.sessions import new_session_id
from events.visitors import hash_caller_visitor

URL = "/api/v1/events/batch"

SIGNUP = {"event_name": "user_signup", "metadata": {"plan": "premium"}, "visitor_id": "u_1", "timestamp": "2024-01-15T10:30:00Z"}
PURCHASE = {
    "type": "purchase",
    "price": 2999,
    "currency": "usd",
    "product_name": "Premium Plan",
    "quantity": 2,
    "metadata": {"billing": "monthly"},
    "visitor_id": "u_1",
    "timestamp": "2024-01-15T10:31:00Z",
}


def event_for(result):
    return Event.objects.get(pk=int(result["event_id"].removeprefix("evt_")))


def test_mixed_batch_stores_every_item_and_reports_each(api, cast):
    response = api.post(URL, {"events": [SIGNUP, PURCHASE, {"event_name": "download", "type": "event"}]})
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True and body["accepted"] == 3 and body["rejected"] == 0
    assert [r["index"] for r in body["results"]] == [0, 1, 2]
    assert all(r["success"] and r["event_id"].startswith("evt_") for r in body["results"])

    signup, purchase, download = (event_for(r) for r in body["results"])
    assert (signup.site_id, signup.kind, signup.name, signup.metadata) == (
        cast.site.pk,
        Kind.CUSTOM,
        "user_signup",
        {"plan": "premium"},
    )
    assert signup.occurred_at == datetime(2024, 1, 15, 10, 30, tzinfo=UTC)
    assert signup.visitor == hash_caller_visitor(site_id=cast.site.pk, visitor_id="u_1")
    assert (purchase.kind, purchase.name, purchase.price, purchase.currency, purchase.quantity, purchase.product_name) == (
        Kind.PURCHASE, "purchase", 2999, "USD", 2, "Premium Plan",
    )  # fmt: skip
    assert purchase.visitor == signup.visitor
    assert purchase.session == signup.session is not None  # one minute apart: one session
    assert download.visitor is None and download.session is None and download.occurred_at is not None
    assert Event.objects.count() == 3


def test_invalid_items_are_reported_and_valid_ones_still_stored(api):
    items = [
        SIGNUP,
        {"type": "purchase", "currency": "USD", "product_name": "Plan"},
        {"event_name": ""},
        "not an object",
        {"type": "refund", "event_name": "x"},
        {"event_name": "ok", "timestamp": "2999-01-01T00:00:00Z"},
        {"event_name": "last"},
    ]
    response = api.post(URL, {"events": items})
    assert response.status_code == 200
    body = response.json()
    assert (body["success"], body["accepted"], body["rejected"]) == (False, 2, 5)
    results = body["results"]
    assert [r["success"] for r in results] == [True, False, False, False, False, False, True]
    assert results[1]["error"] == {"code": "INVALID_REQUEST", "message": "price is required", "field": "price"}
    assert results[2]["error"]["field"] == "event_name"
    assert results[3]["error"]["message"] == "Each event must be a JSON object"
    assert results[4]["error"]["field"] == "type"
    assert results[5]["error"]["field"] == "timestamp"
    assert "event_id" not in results[1]
    assert sorted(Event.objects.values_list("name", flat=True)) == ["last", "user_signup"]
    assert event_for(results[6]).name == "last"


def test_same_messages_as_the_single_endpoints(api):
    bad = {"type": "purchase", "price": 1.5, "currency": "USD", "product_name": "Plan"}
    single = api.post("/api/v1/events/purchase", bad).json()["error"]
    batch = api.post(URL, {"events": [bad]}).json()["results"][0]["error"]
    assert batch == single


@pytest.mark.parametrize(
    "body, message",
    [
        ({}, "events is required"),
        ({"events": None}, "events is required"),
        ({"events": {"event_name": "x"}}, "events must be a list of events"),
        ({"events": []}, "events must contain at least 1 event"),
        ({"events": [{"event_name": "x"}] * 501}, "events must contain at most 500 events"),
        ([{"event_name": "x"}], "Request body must be a JSON object"),
    ],
)
def test_malformed_batches_are_400_and_store_nothing(api, body, message):
    response = api.post(URL, body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "INVALID_REQUEST"
    assert response.json()["error"]["message"] == message
    assert Event.objects.count() == 0


def test_500_items_are_accepted(api):
    items = [{"event_name": f"e{i % 7}", "visitor_id": f"v{i % 50}", "metadata": {"i": i}} for i in range(500)]
    response = api.post(URL, {"events": items})
    assert response.status_code == 200
    assert response.json()["accepted"] == 500
    assert Event.objects.count() == 500
    ids = [r["event_id"] for r in response.json()["results"]]
    assert len(set(ids)) == 500
    assert sorted(Event.objects.values_list("metadata__i", flat=True)) == list(range(500))


def test_body_limit_is_one_megabyte(api):
    item = {"event_name": "big", "metadata": {f"k{i}": "x" * 1000 for i in range(30)}}  # ≈ 31 KB
    under = {"events": [item] * 33}  # ≈ 1,020,000 bytes
    assert len(json.dumps(under)) < 1024 * 1024
    assert api.post(URL, under).status_code == 200
    over = {"events": [item] * 40}
    response = api.post(URL, over)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert Event.objects.count() == 33


def test_a_batch_is_one_request_against_the_events_limit(api, settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "events": 3}
    first = api.post(URL, {"events": [{"event_name": "x"}] * 100})
    assert first["X-RateLimit-Limit"] == "3"
    assert first["X-RateLimit-Remaining"] == "2"
    api.post("/api/v1/events", {"event_name": "single"})  # the single endpoint shares the counter
    assert api.post(URL, {"events": [{"event_name": "x"}]}).status_code == 200
    refused = api.post(URL, {"events": [{"event_name": "x"}]})
    assert refused.status_code == 429
    assert refused["Retry-After"]
    assert Event.objects.count() == 102


def test_keys_scopes_and_tenancy(api, cast):
    assert api.post(URL, {"events": [SIGNUP]}, key="im_nope").status_code == 401
    assert api.post(URL, {"events": [SIGNUP]}, key=cast.analytics_key).status_code == 403
    assert (
        api.post(URL, {"events": [SIGNUP, {"event_name": "x", "site": cast.outsider_site.pk}]}, key=cast.events_key).status_code
        == 200
    )
    assert set(Event.objects.values_list("site_id", flat=True)) == {cast.site.pk}
    revoke_key(ApiKey.objects.get(name="events only"))
    assert api.post(URL, {"events": [SIGNUP]}, key=cast.events_key).status_code == 401


def test_sessions_join_stored_events_and_each_other(api, cast):
    visitor = hash_caller_visitor(site_id=cast.site.pk, visitor_id="u_9")
    stored = api.post("/api/v1/events", {"event_name": "a", "visitor_id": "u_9", "timestamp": "2024-03-01T10:00:00Z"}).json()
    stored_session = event_for(stored).session
    items = [
        {"event_name": "b", "visitor_id": "u_9", "timestamp": "2024-03-01T10:20:00Z"},  # joins the stored session
        {"event_name": "d", "visitor_id": "u_9", "timestamp": "2024-03-01T12:10:00Z"},  # 100 min later: new session
        {"event_name": "c", "visitor_id": "u_9", "timestamp": "2024-03-01T10:45:00Z"},  # 25 min after b: same session
        {"event_name": "e", "visitor_id": "u_9", "timestamp": "2024-03-01T12:30:00Z"},  # joins d's session
        {"event_name": "f", "visitor_id": "other", "timestamp": "2024-03-01T10:21:00Z"},  # another visitor
    ]
    results = api.post(URL, {"events": items}).json()["results"]
    b, d, c, e, f = (event_for(r) for r in results)
    assert b.session == c.session == stored_session
    assert d.session == e.session != stored_session
    assert f.session not in {stored_session, d.session}
    # The single endpoint, later, joins the batch's session by the same rule.
    later = api.post("/api/v1/events", {"event_name": "g", "visitor_id": "u_9", "timestamp": "2024-03-01T12:40:00Z"})
    later = event_for(later.json())
    assert (later.visitor, later.session) == (visitor, d.session)


def test_batch_is_in_the_openapi_schema(api):
    schema = api.get("/api/v1/schema", {"format": "json"}).json()
    operation = schema["paths"]["/api/v1/events/batch"]["post"]
    assert operation["operationId"] == "send_event_batch"
    assert "200" in operation["responses"] and "413" in operation["responses"]
    assert "BatchIn" in json.dumps(operation["requestBody"]) or "BatchInRequest" in json.dumps(operation["requestBody"])


def test_awkward_text_round_trips(api):
    """Tabs, newlines, backslashes, quotes and non-ASCII survive (PostgreSQL stores batches with COPY).
    Names refuse control characters, so tabs and newlines travel in metadata."""
    metadata = {"path": 'C:\\temp\\new\tfile\n"quoted"\r', "emoji": "✓ 💡 ü", "n": 1.5, "b": False, "z": None}
    name = "no tab here \\N back\\slash \\t"
    results = api.post(URL, {"events": [{"event_name": name, "metadata": metadata, "visitor_id": "ü\\N"}]}).json()["results"]
    event = event_for(results[0])
    assert event.name == name
    assert event.metadata == metadata
    assert event.visitor is not None
    product = "Plan A B\\C \\. \\N ✓"
    results = api.post(URL, {"events": [dict(PURCHASE, product_name=product, metadata={"k\t\\": "\\."})]}).json()["results"]
    event = event_for(results[0])
    assert (event.product_name, event.metadata, event.currency, event.price) == (product, {"k\t\\": "\\."}, "USD", 2999)


def test_a_batch_stores_the_same_rows_as_the_single_endpoints(api):
    """The batch's rows (a COPY on PostgreSQL) equal those of POST /events and /events/purchase."""
    ignored = {"id", "received_at", "session"}
    bare = {"event_name": "bare", "timestamp": "2024-01-15T11:00:00Z"}  # without a timestamp: the time it arrives
    items = [SIGNUP, PURCHASE, bare, dict(PURCHASE, quantity=1, metadata={}, visitor_id=None)]
    batch = [event_for(r) for r in api.post(URL, {"events": items}).json()["results"]]
    single = []
    for item in items:
        body = {k: v for k, v in item.items() if k != "type"}
        path = "/api/v1/events/purchase" if item.get("type") == "purchase" else "/api/v1/events"
        single.append(event_for(api.post(path, body).json()))

    def columns(event):
        return {f.attname: getattr(event, f.attname) for f in Event._meta.concrete_fields if f.attname not in ignored}

    assert [columns(e) for e in batch] == [columns(e) for e in single]
    assert [e.session is None for e in batch] == [e.visitor is None for e in batch] == [False, False, True, True]
    assert batch[0].session == batch[1].session  # one visitor, a minute apart


def test_metadata_texts_cut_one_encoding_into_rows():
    """Flat objects are cut out of one json.dumps; nested values fall back to one call each."""
    from events.storage import copy_metadata_texts

    flat = [{"a": 1, "b": "x}"}, {}, {"c": 'line\nbreak \\ "q"', "d": None, "e": 1.5}, {"f": "}{"}]
    nested = [{"a": [{"x": 1}, {"y": 2}]}, {"b": {"c": {}}}]
    for values in (flat, nested, flat + nested):
        texts = copy_metadata_texts(values)
        assert [json.loads(t.replace("\\\\", "\\")) for t in texts] == values


@pytest.mark.parametrize(
    "item",
    [
        SIGNUP,
        {"event_name": "  padded  ", "visitor_id": 42},
        {"event_name": ""},
        {"event_name": "x", "metadata": {"nested": {"a": 1}}},
        {"event_name": "x", "timestamp": "yesterday"},
        {"event_name": "x", "metadata": None, "visitor_id": None, "timestamp": None},
        {k: v for k, v in PURCHASE.items() if k != "type"},
        {"price": -1, "currency": "USD", "product_name": "p"},
        {"price": 1, "currency": "XYZ", "product_name": "p", "quantity": 0},
        {},
        ["not", "an", "object"],
        "text",
        {"event_name": "x", "metadata": ["a"], "visitor_id": True, "timestamp": 5},
        {"event_name": None, "metadata": {"k": {"nested": 1}}},
        {"price": "10", "currency": None, "product_name": "p", "quantity": 1.5},
        {"price": 10, "currency": "eur", "product_name": "  p  ", "quantity": None, "visitor_id": "v" * 201},
    ],
)
def test_batch_validation_equals_the_serializers(item):
    """Each batch item is answered exactly as EventIn/PurchaseIn answer it on its own."""
    from django.utils import timezone

    from events.batch import _item_error, validate_items
    from events.serializers import EventIn, PurchaseIn

    now = timezone.now()
    for kind, cls in (("event", EventIn), ("purchase", PurchaseIn)):
        typed = {**item, "type": kind} if isinstance(item, dict) else item
        reference = cls(data=item, context={"now": now})
        valid, errors = validate_items([typed], now=now)
        if reference.is_valid():
            assert valid == [(0, kind, reference.validated_data)]
        elif isinstance(item, dict):
            assert errors == {0: _item_error(reference.errors)}
        else:
            assert not valid and errors[0]["code"] == "INVALID_REQUEST"


def test_the_answer_is_written_as_drf_would_render_it(api):
    """The batch writes its 200 body directly; the bytes are those of DRF's JSON renderer."""
    from rest_framework.renderers import JSONRenderer

    items = [SIGNUP, {"event_name": "ünïcode", "metadata": {"clé": [1]}}, {"event_name": ""}, {"event_name": "last"}]
    response = api.post(URL, {"events": items})
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    body = response.json()
    assert [r["success"] for r in body["results"]] == [True, False, False, True]
    assert "metadata.clé" in body["results"][1]["error"]["message"]
    assert response.content == JSONRenderer().render(body)


MINUTES = st.lists(st.integers(0, 240), min_size=1, max_size=12, unique=True)


@hyp_settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(minutes=MINUTES, data=st.data())
def test_batch_sessions_equal_the_one_at_a_time_rule(cast, minutes, data):
    """Sessions the batch assigns (stored events, then its own items in any order) equal those
    of the rule applied by brute force to the items one at a time in time order: join the
    latest event of the visitor less than 30 minutes away, else start a session. Times are
    distinct minutes: on equal times the rule leaves the choice open."""
    from django.db import transaction

    from events import storage
    from events.sessions import assign_batch_sessions

    Event.objects.all().delete()
    start = datetime(2024, 5, 1, tzinfo=UTC)
    visitors = data.draw(st.lists(st.sampled_from([11, 12, 13]), min_size=len(minutes), max_size=len(minutes)))
    stored = data.draw(st.lists(st.booleans(), min_size=len(minutes), max_size=len(minutes)))
    events = sorted(zip(minutes, visitors, stored, strict=True))
    seen = []  # (minute, visitor, session) of the events so far, one at a time

    def one_at_a_time(visitor, minute):
        near = [(m, s) for m, v, s in seen if v == visitor and abs(m - minute) < 30]
        session = max(near)[1] if near else new_session_id(visitor=visitor, started_at=start + timedelta(minutes=minute))
        seen.append((minute, visitor, session))
        return session

    for minute, visitor, _ in (e for e in events if e[2]):
        Event.objects.create(site=cast.site, kind=Kind.CUSTOM, name="e", occurred_at=start + timedelta(minutes=minute),
                             visitor=visitor, session=one_at_a_time(visitor, minute))  # fmt: skip
    items = [(minute, visitor) for minute, visitor, is_stored in events if not is_stored]
    expected = {minute: one_at_a_time(visitor, minute) for minute, visitor in items}
    order = data.draw(st.permutations(items))
    rows = [{"visitor": visitor, "occurred_at": start + timedelta(minutes=minute), "session": None} for minute, visitor in order]
    with transaction.atomic():
        assign_batch_sessions(rows, storage.backend().nearby_sessions(cast.site.pk, rows))
    assert {minute: row["session"] for (minute, _), row in zip(order, rows, strict=True)} == expected


def test_a_null_item_is_an_item_error_not_a_malformed_batch(api):
    response = api.post(URL, {"events": [{"event_name": "ok"}, None]})
    assert response.status_code == 200, response.content  # not a 400 for the whole batch
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (1, 1)
    assert body["results"][1]["error"]["message"] == "Each event must be a JSON object"
    assert Event.objects.filter(name="ok").count() == 1
