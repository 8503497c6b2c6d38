"""JSON types are the contract's: a value of another type is a 400 naming the field, never converted.

The same table runs against POST /events, POST /events/purchase and each item of a batch.
"""

import pytest

from events.models import Event

EVENT = {"event_name": "signup"}
PURCHASE = {"price": 2999, "currency": "USD", "product_name": "Premium Plan"}

WRONG_TYPES = [
    # (kind, field, value, message)
    ("event", "event_name", 123, "Event name must be a string"),
    ("event", "event_name", 1.5, "Event name must be a string"),
    ("event", "event_name", True, "Event name must be a string"),
    ("event", "event_name", {"name": "x"}, "Event name must be a string"),
    ("event", "visitor_id", True, "visitor_id must be a string or an integer"),
    ("event", "visitor_id", 4.2, "visitor_id must be a string or an integer"),
    ("event", "visitor_id", ["u1"], "visitor_id must be a string or an integer"),
    ("event", "timestamp", 1705314600, "timestamp must be an ISO 8601 date-time"),
    ("event", "metadata", "plan=pro", "metadata must be a JSON object"),
    ("purchase", "price", "2999", "price must be an integer"),
    ("purchase", "price", 29.99, "price must be an integer"),
    ("purchase", "price", True, "price must be an integer"),
    ("purchase", "quantity", True, "quantity must be an integer"),
    ("purchase", "quantity", "2", "quantity must be an integer"),
    ("purchase", "quantity", 2.0, "quantity must be an integer"),
    ("purchase", "currency", 840, "currency must be an ISO 4217 code"),
    ("purchase", "product_name", 42, "product_name must be a string"),
    ("purchase", "product_name", False, "product_name must be a string"),
    ("purchase", "visitor_id", False, "visitor_id must be a string or an integer"),
]

ACCEPTED = [
    ("event", "visitor_id", "u_42"),
    ("event", "visitor_id", 42),
    ("event", "metadata", {"plan": "pro", "seats": 3, "ratio": 0.5, "trial": True, "coupon": None}),
    ("purchase", "quantity", 3),
]


def body_of(kind, field, value):
    return {**(EVENT if kind == "event" else PURCHASE), field: value}


def send_single(api, kind, body):
    path = "/api/v1/events" if kind == "event" else "/api/v1/events/purchase"
    response = api.post(path, body)
    if response.status_code == 201:
        return None
    assert response.status_code == 400, response.content
    return response.json()["error"]


def send_in_batch(api, kind, body):
    item = {**body, "type": "purchase"} if kind == "purchase" else body
    response = api.post("/api/v1/events/batch", {"events": [item]})
    assert response.status_code == 200, response.content
    (result,) = response.json()["results"]
    return None if result["success"] else result["error"]


SENDERS = [pytest.param(send_single, id="single"), pytest.param(send_in_batch, id="batch item")]


@pytest.mark.parametrize("send", SENDERS)
@pytest.mark.parametrize("kind, field, value, message", WRONG_TYPES)
def test_a_value_of_the_wrong_json_type_is_a_400_naming_the_field(api, send, kind, field, value, message):
    error = send(api, kind, body_of(kind, field, value))
    assert error is not None, f"{field}={value!r} was accepted"
    assert error["code"] == "INVALID_REQUEST"
    assert error["field"] == field
    assert error["message"].startswith(message)
    assert not Event.objects.exists()


@pytest.mark.parametrize("send", SENDERS)
@pytest.mark.parametrize("kind, field, value", ACCEPTED)
def test_values_of_the_documented_types_are_accepted(api, send, kind, field, value):
    assert send(api, kind, body_of(kind, field, value)) is None
    event = Event.objects.get()
    if field == "metadata":
        assert event.metadata == value
    if field == "quantity":
        assert event.quantity == value


def test_an_integer_visitor_id_is_the_same_visitor_as_its_text(api):
    for visitor_id in (42, "42"):
        assert send_single(api, "event", body_of("event", "visitor_id", visitor_id)) is None
    assert len({event.visitor for event in Event.objects.all()}) == 1
