"""Retries without double counting: the Idempotency-Key header of POST /events and
/events/purchase, and a batch item's idempotency_key."""

import http.client
import json
import threading
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.core.management import call_command
from django.utils import timezone

from events.idempotency import forget_expired_keys
from events.models import Event, IdempotencyKey
from tests.servers import gunicorn_servers

EVENTS, PURCHASE, BATCH = "/api/v1/events", "/api/v1/events/purchase", "/api/v1/events/batch"
SIGNUP = {"event_name": "signup", "metadata": {"plan": "pro"}, "visitor_id": "u1", "timestamp": "2024-01-15T10:30:00Z"}
BUY = {"price": 2999, "currency": "USD", "product_name": "Premium Plan", "visitor_id": "u1"}


def keyed(key):
    return {"HTTP_IDEMPOTENCY_KEY": key}


def stored(site, name=None):
    rows = Event.objects.filter(site=site)
    return rows.filter(name=name).count() if name else rows.count()


@pytest.mark.parametrize(("path", "body"), [(EVENTS, SIGNUP), (PURCHASE, BUY)])
def test_a_retry_with_the_same_key_stores_nothing_and_answers_the_first_event(api, cast, path, body):
    first = api.post(path, body, headers=keyed("order-1"))
    assert first.status_code == 201 and "Idempotent-Replayed" not in first
    again = api.post(path, body, headers=keyed("order-1"))
    assert again.status_code == 201
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert stored(cast.site) == 1


def test_the_same_key_with_another_body_is_a_conflict(api, cast):
    first = api.post(EVENTS, SIGNUP, headers=keyed("k"))
    other = api.post(EVENTS, {**SIGNUP, "metadata": {"plan": "free"}}, headers=keyed("k"))
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert "Idempotent-Replayed" not in other
    # Another endpoint is another body too.
    assert api.post(PURCHASE, BUY, headers=keyed("k")).status_code == 409
    assert stored(cast.site) == 1
    # The first body still replays.
    assert api.post(EVENTS, SIGNUP, headers=keyed("k")).json() == first.json()


def test_the_body_is_compared_as_json_not_as_bytes(api, cast):
    first = api.post(EVENTS, SIGNUP, headers=keyed("k"))
    reordered = api.post(EVENTS, raw=json.dumps(dict(reversed(list(SIGNUP.items()))), indent=2), headers=keyed("k"))
    assert reordered.status_code == 201 and reordered.json() == first.json()
    assert stored(cast.site) == 1


def test_without_a_key_every_send_is_stored(api, cast):
    assert api.post(EVENTS, SIGNUP).json() != api.post(EVENTS, SIGNUP).json()
    assert stored(cast.site) == 2


def test_keys_belong_to_the_site_of_the_api_key(api, cast):
    mine = api.post(EVENTS, SIGNUP, headers=keyed("shared"))
    theirs = api.post(EVENTS, SIGNUP, key=cast.outsider_key, headers=keyed("shared"))
    assert theirs.status_code == 201 and "Idempotent-Replayed" not in theirs
    assert theirs.json()["event_id"] != mine.json()["event_id"]
    # A key the outsider holds with another body is no conflict for this site either.
    api.post(EVENTS, {"event_name": "x"}, key=cast.outsider_key, headers=keyed("theirs"))
    assert api.post(EVENTS, SIGNUP, headers=keyed("theirs")).status_code == 201
    assert stored(cast.site) == 2 and stored(cast.outsider_site) == 2


@pytest.mark.parametrize(
    "key",
    ["", " ", "   ", "k" * 201, "clé", "tab\there", "line\nbreak", "\x7f"],
    ids=["empty", "space", "spaces", "too-long", "non-ascii", "tab", "newline", "del"],
)
def test_a_malformed_key_is_a_400_and_stores_nothing(api, cast, key):
    response = api.post(EVENTS, SIGNUP, headers=keyed(key))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "INVALID_REQUEST" and error["field"] == "Idempotency-Key"
    assert "printable ASCII" in error["message"]
    assert stored(cast.site) == 0


@pytest.mark.parametrize("key", ["k", "k" * 200, "a b", "~!@#$%^&*()_+{}|:\"<>?`-=[]\\;',./"])
def test_every_printable_ascii_key_up_to_200_characters_works(api, cast, key):
    first = api.post(EVENTS, SIGNUP, headers=keyed(key))
    assert first.status_code == 201
    assert api.post(EVENTS, SIGNUP, headers=keyed(key))["Idempotent-Replayed"] == "true"
    assert stored(cast.site) == 1


def test_a_key_is_forgotten_after_24_hours(api, cast):
    first = api.post(EVENTS, SIGNUP, headers=keyed("daily"))
    IdempotencyKey.objects.update(created_at=timezone.now() - timedelta(hours=23, minutes=59))
    assert api.post(EVENTS, SIGNUP, headers=keyed("daily"))["Idempotent-Replayed"] == "true"
    IdempotencyKey.objects.update(created_at=timezone.now() - timedelta(hours=24, seconds=1))
    later = api.post(EVENTS, {**SIGNUP, "metadata": {"plan": "free"}}, headers=keyed("daily"))
    assert later.status_code == 201 and "Idempotent-Replayed" not in later  # not a conflict: a new key
    assert later.json()["event_id"] != first.json()["event_id"]
    assert api.post(EVENTS, {**SIGNUP, "metadata": {"plan": "free"}}, headers=keyed("daily")).json() == later.json()
    assert stored(cast.site) == 2


def test_the_rollup_timer_deletes_expired_keys_only(api, cast):
    for key in ("old", "new"):
        api.post(EVENTS, SIGNUP, headers=keyed(key))
    IdempotencyKey.objects.filter(key="old").update(created_at=timezone.now() - timedelta(hours=25))
    call_command("rollup", jobs=1, verbosity=0)
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["new"]
    assert forget_expired_keys(now=timezone.now() + timedelta(hours=25)) == 1
    assert stored(cast.site) == 2  # forgetting a key never touches its event


def batch(api, items, **kwargs):
    response = api.post(BATCH, {"events": items}, **kwargs)
    assert response.status_code == 200, response.content
    return response.json()


def test_batch_items_with_one_key_store_one_event(api, cast):
    buy = {"type": "purchase", **BUY, "idempotency_key": "b"}
    body = batch(api, [{**SIGNUP, "idempotency_key": "a"}, buy, {**SIGNUP, "idempotency_key": "a"},
                       {**SIGNUP, "metadata": {}, "idempotency_key": "a"}, {**SIGNUP}])  # fmt: skip
    results = body["results"]
    assert [r["success"] for r in results] == [True, True, True, False, True]
    assert "replayed" not in results[0] and "replayed" not in results[1]
    assert results[2] == {"index": 2, "success": True, "event_id": results[0]["event_id"], "replayed": True}
    assert results[3]["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert (body["accepted"], body["rejected"], body["success"]) == (4, 1, False)
    assert stored(cast.site) == 3  # a, b and the unkeyed item


def test_a_retried_batch_stores_nothing_and_answers_the_same_ids(api, cast):
    items = [{**SIGNUP, "visitor_id": f"u{i}", "idempotency_key": f"k{i}"} for i in range(5)]
    first = batch(api, items)
    again = batch(api, items)
    assert [r["event_id"] for r in again["results"]] == [r["event_id"] for r in first["results"]]
    assert all(r["replayed"] for r in again["results"]) and again["success"] is True
    # Half old, half new: only the new ones are stored.
    mixed = batch(api, items[3:] + [{**SIGNUP, "idempotency_key": "k9"}])
    assert [r.get("replayed", False) for r in mixed["results"]] == [True, True, False]
    assert stored(cast.site) == 6
    rows = Event.objects.filter(site=cast.site)
    assert {Event.public_id(pk) for pk in rows.values_list("pk", flat=True)} == {
        *(r["event_id"] for r in first["results"]),
        mixed["results"][2]["event_id"],
    }


def test_a_key_is_shared_by_the_single_endpoints_and_batches(api, cast):
    single = api.post(EVENTS, SIGNUP, headers=keyed("same")).json()
    body = batch(api, [{**SIGNUP, "idempotency_key": "same"}, {**SIGNUP, "event_name": "other", "idempotency_key": "same"}])
    assert body["results"][0] == {"index": 0, "success": True, "event_id": single["event_id"], "replayed": True}
    assert body["results"][1]["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert stored(cast.site) == 1


@pytest.mark.parametrize("key", ["", "k" * 201, "clé", 42, None, ["k"]])
def test_a_malformed_item_key_fails_that_item_only(api, cast, key):
    body = batch(api, [{**SIGNUP, "idempotency_key": key}, SIGNUP])
    if key is None:  # null is the same as no key
        assert body["accepted"] == 2
        return
    first, second = body["results"]
    assert first["success"] is False and first["error"]["field"] == "idempotency_key"
    assert second["success"] is True
    assert stored(cast.site) == 1


def test_the_schema_shows_the_key(anon):
    schema = anon.get("/api/v1/schema", {"format": "json"}).json()
    for path in (EVENTS, PURCHASE):
        operation = schema["paths"][path]["post"]
        header = next(p for p in operation["parameters"] if p["name"] == "Idempotency-Key")
        assert header["in"] == "header" and header["schema"]["maxLength"] == 200
        assert "Idempotent-Replayed" in operation["responses"]["201"]["headers"]
        assert operation["responses"]["409"]
    item = json.dumps(schema["components"]["schemas"])
    assert "idempotency_key" in item and "replayed" in item


def _post(url, key, idem, body):
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json", "Idempotency-Key": idem}
        conn.request("POST", "/api/v1/events", json.dumps(body), headers)
        response = conn.getresponse()
        return response.status, response.getheader("Idempotent-Replayed"), json.loads(response.read())
    finally:
        conn.close()


@pytest.mark.django_db(transaction=True)
def test_concurrent_duplicates_in_several_processes_store_exactly_one_row(cast):
    """Two servers of two worker processes each: every round, 16 threads send one key at once;
    exactly one row is stored, every answer carries its id, exactly one is not a replay. The
    key outlives a restart."""
    rounds, senders = 5, 16
    with gunicorn_servers(2, workers=2, server="gunicorn:gthread", RATE_LIMIT_EVENTS="1000000") as urls:
        for round_ in range(rounds):
            barrier, answers = threading.Barrier(senders), []

            def send(i, round_=round_, barrier=barrier, answers=answers):
                barrier.wait()
                answers.append(_post(urls[i % 2], cast.key, f"race-{round_}", {**SIGNUP, "event_name": f"race-{round_}"}))

            threads = [threading.Thread(target=send, args=(i,)) for i in range(senders)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            assert len(answers) == senders and {status for status, _, _ in answers} == {201}
            assert len({body["event_id"] for _, _, body in answers}) == 1
            assert sorted(replayed or "" for _, replayed, _ in answers) == [""] + ["true"] * (senders - 1)
            assert stored(cast.site, f"race-{round_}") == 1
        event_id = answers[0][2]["event_id"]
    with gunicorn_servers(1, workers=1) as (url,):
        status, replayed, body = _post(url, cast.key, f"race-{rounds - 1}", {**SIGNUP, "event_name": f"race-{rounds - 1}"})
    assert (status, replayed, body["event_id"]) == (201, "true", event_id)
    assert stored(cast.site) == rounds
