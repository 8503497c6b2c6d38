"""A data controller answers a subject's requests: read a visitor's events, erase them (and
analytics stop counting them at once), reset a site's data, delete a site with everything of it.
Only keys granted ``data:manage`` may; a key of one site never touches another's visitors."""

import io
import re
from datetime import timedelta
from urllib.parse import quote

import pytest
from django.core.management import call_command
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.keys import create_api_key
from accounts.models import DEFAULT_SCOPES, SCOPE_DATA_MANAGE, ApiKey, Site
from analytics import rollups
from analytics.models import RolledBucket, Rollup
from events.models import Event
from events.visitors import hash_caller_visitor

from . import test_analytics_exactness as exactness
from .conftest import Api
from .test_analytics_exactness import BASE, brute_force, query, visit

sites = exactness.sites  # the exactness test's three sites in three timezones, each with a full key

EVENT = "/api/v1/events"
MANAGE = [*DEFAULT_SCOPES, SCOPE_DATA_MANAGE]


def visitor_url(visitor_id, suffix=""):
    return f"/api/v1/visitors/{quote(visitor_id, safe='/')}{suffix}"


@pytest.fixture
def manager(cast):
    """A key of the cast's site with data:manage, and one of the outsider's."""
    _, raw = create_api_key(site=cast.site, name="data", scopes=MANAGE)
    _, outsider = create_api_key(site=cast.outsider_site, name="outsider data", scopes=MANAGE)
    return Api(raw), Api(outsider)


def send(api, visitor_id, name="e", minutes_ago=0, **fields):
    body = {"event_name": name, "visitor_id": visitor_id, **fields}
    body["timestamp"] = (timezone.now() - timedelta(minutes=minutes_ago)).isoformat()
    response = api.post(EVENT, body)
    assert response.status_code == 201, response.json()
    return response.json()["event_id"]


def erase(api, visitor_id):
    return api.client.delete(visitor_url(visitor_id), **api._headers(None, None))


# --- the scope ------------------------------------------------------------------------


def test_no_key_has_data_manage_unless_granted(api, cast, manager):
    assert set(ApiKey.objects.get(name="full").scopes) == set(DEFAULT_SCOPES)
    for response in (erase(api, "alice"), api.get(visitor_url("alice", "/events"))):
        assert response.status_code == 403
        assert response.json()["error"] == {"code": "FORBIDDEN", "message": "This API key lacks the 'data:manage' scope"}
    assert erase(manager[0], "alice").status_code == 200


def test_create_api_key_grants_data_manage_when_asked(cast):
    out = io.StringIO()
    call_command("create_api_key", "--site", cast.site.domain, "--name", "plain", stdout=out)
    call_command("create_api_key", "--site", cast.site.domain, "--name", "dpo", "--scopes", "data:manage", stdout=out)
    assert ApiKey.objects.get(name="plain").scopes == list(DEFAULT_SCOPES)
    assert ApiKey.objects.get(name="dpo").scopes == [SCOPE_DATA_MANAGE]


@pytest.fixture
def staff_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("staff", "staff@example.com", "pw-staff-123"))
    return client


def test_the_admin_grants_data_manage_when_ticked_and_not_by_default(staff_client, cast):
    form = staff_client.get("/admin/accounts/apikey/add/").content.decode()
    assert re.search(r'value="data:manage"(?![^>]*checked)', form)
    assert re.search(r'value="events:write"[^>]*checked', form)
    staff_client.post("/admin/accounts/apikey/add/", {"site": cast.site.pk, "name": "dpo", "scopes": ["data:manage"],
                                                       "expires_at_0": "", "expires_at_1": ""})  # fmt: skip
    assert ApiKey.objects.get(name="dpo").scopes == [SCOPE_DATA_MANAGE]


# --- erasing --------------------------------------------------------------------------


def test_erasing_a_visitor_deletes_its_events_and_only_those(api, cast, manager):
    alice = [send(api, "alice", minutes_ago=m) for m in (50, 40, 3)]
    kept = [send(api, "bob"), send(api, "alice-2")]
    api.post(EVENT, {"event_name": "anonymous"})
    response = erase(manager[0], "alice")
    assert response.status_code == 200
    assert response.json() == {"visitor_id": "alice", "deleted": 3}
    left = {Event.public_id(pk) for pk in Event.objects.filter(site=cast.site).values_list("pk", flat=True)}
    assert not left & set(alice) and set(kept) <= left and len(left) == 3
    assert erase(manager[0], "alice").json() == {"visitor_id": "alice", "deleted": 0}


def test_an_unknown_visitor_is_200_with_nothing_deleted(manager):
    response = erase(manager[0], "nobody-ever")
    assert response.status_code == 200 and response.json() == {"visitor_id": "nobody-ever", "deleted": 0}


def test_a_key_of_another_site_erases_nothing_of_this_one(api, cast, manager):
    send(api, "alice")
    Api(cast.outsider_key).post(EVENT, {"event_name": "e", "visitor_id": "alice"})
    assert erase(manager[1], "alice").json() == {"visitor_id": "alice", "deleted": 1}  # the outsider's own alice
    assert Event.objects.filter(site=cast.site).count() == 1
    assert Event.objects.filter(site=cast.outsider_site).count() == 0


@pytest.mark.parametrize("visitor_id", ["a/b", "user 42", "Zoë ✓", "x" * 200, "42"])
def test_any_visitor_id_the_api_stores_can_be_erased(api, manager, visitor_id):
    send(api, visitor_id)
    assert erase(manager[0], visitor_id).json() == {"visitor_id": visitor_id, "deleted": 1}


def test_ids_are_matched_as_ingestion_stores_them(api, manager):
    api.post(EVENT, {"event_name": "e", "visitor_id": 42})  # a number is its text
    api.post(EVENT, {"event_name": "e", "visitor_id": " padded "})  # stripped
    assert erase(manager[0], "42").json()["deleted"] == 1
    assert erase(manager[0], "padded").json()["deleted"] == 1


@pytest.mark.parametrize(
    "path, status, field",
    [
        (visitor_url("x" * 201), 400, "visitor_id"),
        (visitor_url("   "), 400, "visitor_id"),
        ("/api/v1/visitors/", 404, None),
    ],
)
def test_bad_visitor_ids_are_400s_in_the_envelope(manager, path, status, field):
    response = manager[0].client.delete(path, **manager[0]._headers(None, None))
    assert response.status_code == status
    body = response.json()["error"]
    assert body.get("field") == field and body["code"] in ("INVALID_REQUEST", "NOT_FOUND")


def test_erasing_needs_a_valid_key_and_delete(manager, anon):
    assert erase(anon, "alice").status_code == 401
    assert manager[0].post(visitor_url("alice"), {}).status_code == 405
    assert manager[0].get(visitor_url("alice")).status_code == 405


# --- reading --------------------------------------------------------------------------


def test_a_visitors_events_page_by_page_oldest_first(api, manager):
    ids = [send(api, "alice", name=f"e{m}", minutes_ago=m, metadata={"m": m}) for m in (30, 20, 10, 5, 1)]
    send(api, "bob")
    pages, after = [], None
    while True:
        params = {"limit": 2, **({"after": after} if after else {})}
        body = manager[0].get(visitor_url("alice", "/events"), params).json()
        pages.append([e["event_id"] for e in body["events"]])
        after = body["next"]
        if after is None:
            break
    assert pages == [ids[0:2], ids[2:4], ids[4:]]
    first = manager[0].get(visitor_url("alice", "/events")).json()["events"][0]
    assert first["event_name"] == "e30" and first["type"] == "custom" and first["metadata"] == {"m": 30}
    assert first["timestamp"].endswith("Z") and "visitor" not in first and "session" not in first


def test_a_purchase_reads_back_with_its_money(api, manager):
    api.post("/api/v1/events/purchase", {"price": 2999, "currency": "EUR", "product_name": "Pro", "quantity": 2,
                                         "visitor_id": "carol"})  # fmt: skip
    (event,) = manager[0].get(visitor_url("carol", "/events")).json()["events"]
    assert (event["type"], event["price"], event["currency"], event["quantity"], event["product_name"]) == (
        "purchase", 2999, "EUR", 2, "Pro")  # fmt: skip


def test_reading_is_bounded_and_isolated(api, cast, manager):
    bob = send(api, "bob")
    send(api, "alice")
    assert manager[1].get(visitor_url("alice", "/events")).json() == {"visitor_id": "alice", "events": [], "next": None}
    for params, field in [
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"after": "evt_x"}, "after"),
        ({"after": "123"}, "after"),
        ({"after": bob}, "after"),  # another visitor's event
        ({"after": "evt_" + "9" * 30}, "after"),
    ]:
        response = manager[0].get(visitor_url("alice", "/events"), params)
        assert response.status_code == 400 and response.json()["error"]["field"] == field, params
    # The outsider cannot use this site's event ids either: the same 400, no word about the site.
    response = manager[1].get(visitor_url("bob", "/events"), {"after": bob})
    assert response.status_code == 400 and response.json()["error"]["field"] == "after"


def test_the_openapi_schema_documents_both(anon):
    paths = anon.client.get("/api/v1/schema", {"format": "json"}).json()["paths"]
    assert "delete" in paths["/api/v1/visitors/{visitor_id}"]
    operation = paths["/api/v1/visitors/{visitor_id}/events"]["get"]
    assert {p["name"] for p in operation["parameters"]} >= {"visitor_id", "limit", "after"}
    assert {"200", "400", "401", "403", "429"} <= set(operation["responses"])


# --- analytics forget the erased events ------------------------------------------------


@pytest.fixture
def managers(sites):
    return [Api(create_api_key(site=site, name="dpo", scopes=MANAGE)[1]) for site, _ in sites]


@settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
@given(visits=st.lists(visit(), min_size=1, max_size=12), q=query(), which=st.integers(0, 2),
       rolled=st.sampled_from([None, 30 * 24, 30 * 24, -30, 2, 50]), erased=st.integers(0, 5))  # fmt: skip
def test_after_an_erasure_the_api_equals_brute_force(sites, managers, visits, q, which, rolled, erased):
    """The exactness test's data and questions, with visitors named by visitor_id: after one is
    erased, every answer equals a brute-force count over the rows that are left, whether the
    erased events sat in rolled-up buckets or not."""
    Event.objects.all().delete()
    Rollup.objects.all().delete()
    RolledBucket.objects.all().delete()
    session_ids = iter(range(1000, 10_000))
    rows = []
    for events, with_session in visits:
        session = next(session_ids) if with_session else None
        site = sites[events[0]["site"]][0]
        for e in events:
            fields = {k: v for k, v in e.items() if k not in ("site", "visitor")}
            visitor = None if e["visitor"] is None else hash_caller_visitor(site_id=site.pk, visitor_id=f"user-{e['visitor']}")
            rows.append(Event(site=site, session=session, visitor=visitor, **fields))
    Event.objects.bulk_create(rows)
    # The site of the first visit with a visitor, so that there is someone to erase.
    which = next((events[0]["site"] for events, _ in visits if any(e["visitor"] for e in events)), which)
    site, key = sites[which]
    if rolled is not None:
        rollups.rebuild(site=site, now=BASE + timedelta(hours=rolled))
    present = sorted({e["visitor"] for events, _ in visits for e in events if e["visitor"] and sites[e["site"]][0] == site})
    visitor_id = f"user-{present[erased % len(present)] if present else erased}"
    held = Event.objects.filter(site=site, visitor=hash_caller_visitor(site_id=site.pk, visitor_id=visitor_id)).count()
    response = erase(managers[which], visitor_id)
    assert response.json() == {"visitor_id": visitor_id, "deleted": held}
    params, filters, metrics, breakdown, interval = q
    body = Api(key).get("/api/v1/analytics", params).json()
    body.pop("query", None)
    comparison = body.pop("comparison", None)
    expected = brute_force(site, params, filters, metrics, breakdown, interval)
    assert body == expected
    if comparison is not None:
        assert comparison["data"].keys() == expected["data"].keys()


def test_erasure_drops_only_the_buckets_it_touched_and_the_timer_rebuilds_them(api, cast, manager):
    day = BASE.replace(hour=12)
    for visitor, offset in [("alice", 0), ("bob", 0), ("bob", 3)]:
        Event.objects.create(site=cast.site, kind=2, name="e", occurred_at=day + timedelta(days=offset),
                             visitor=hash_caller_visitor(site_id=cast.site.pk, visitor_id=visitor))  # fmt: skip
    later = day + timedelta(days=10)
    rollups.rebuild(site=cast.site, now=later)
    days = set(RolledBucket.objects.filter(site=cast.site).values_list("start", flat=True))
    assert erase(manager[0], "alice").json()["deleted"] == 1
    left = set(RolledBucket.objects.filter(site=cast.site).values_list("start", flat=True))
    assert len(days - left) == 1 and min(days - left).date() == day.date()  # alice's day, and nothing else
    rollups.refresh(site=cast.site, now=later)
    assert set(RolledBucket.objects.filter(site=cast.site).values_list("start", flat=True)) == days
    params = {"start_date": day.date().isoformat(), "end_date": (day + timedelta(days=3)).date().isoformat(),
              "metrics": "events,unique_visitors"}  # fmt: skip
    assert api.get("/api/v1/analytics", params).json()["data"] == {"events": 2, "unique_visitors": 1}


def test_a_bucket_built_across_an_erasure_is_not_stored(cast, monkeypatch):
    """The rollup timer scans a day, then an erasure deletes events of it and drops its
    buckets, then the timer would store what it scanned: it must not."""
    day = BASE.replace(hour=0)
    alice = hash_caller_visitor(site_id=cast.site.pk, visitor_id="alice")
    Event.objects.create(site=cast.site, kind=2, name="e", occurred_at=day + timedelta(hours=5), visitor=alice)
    Event.objects.create(site=cast.site, kind=2, name="e", occurred_at=day + timedelta(hours=6), visitor=alice + 1)
    scan = rollups.scan_bucket

    def scan_then_erase(*args, **kwargs):
        tallies = scan(*args, **kwargs)
        from events.data_rights import erase_visitor

        assert erase_visitor(site=cast.site, visitor_id="alice") == 1
        return tallies

    monkeypatch.setattr(rollups, "scan_bucket", scan_then_erase)
    assert rollups.build_bucket(cast.site, "day", day, day + timedelta(days=1)) is None
    assert not RolledBucket.objects.filter(site=cast.site).exists()
    monkeypatch.setattr(rollups, "scan_bucket", scan)
    bucket = rollups.build_bucket(cast.site, "day", day, day + timedelta(days=1))
    assert Rollup.objects.get(site=cast.site, start=bucket.start, dimension="").events == 1


# --- the admin: reset a site's data, delete a site ----------------------------------------


def _fill(cast, api):
    send(api, "alice")
    Api(cast.outsider_key).post(EVENT, {"event_name": "e", "visitor_id": "alice"})
    day = BASE.replace(hour=12)
    Event.objects.create(site=cast.site, kind=2, name="old", occurred_at=day, visitor=1)
    Event.objects.create(site=cast.outsider_site, kind=2, name="old", occurred_at=day, visitor=1)
    for site in (cast.site, cast.outsider_site):
        rollups.rebuild(site=site, now=day + timedelta(days=5))
    assert RolledBucket.objects.filter(site=cast.site).exists()


def test_reset_site_data_asks_then_deletes_events_and_rollups_but_keeps_the_site(staff_client, api, cast):
    _fill(cast, api)
    action = {"action": "reset_site_data", "_selected_action": [cast.site.pk]}
    page = staff_client.post("/admin/accounts/site/", action)
    assert page.status_code == 200 and "Reset site data: are you sure?" in page.content.decode()
    assert "example.com: 2 events" in page.content.decode()
    assert Event.objects.filter(site=cast.site).count() == 2  # nothing yet
    done = staff_client.post("/admin/accounts/site/", {**action, "confirmed": "yes"}, follow=True)
    assert "Deleted 2 events and the rollups of example.com." in done.content.decode()
    assert not Event.objects.filter(site=cast.site).exists()
    assert not Rollup.objects.filter(site=cast.site).exists() and not RolledBucket.objects.filter(site=cast.site).exists()
    assert Site.objects.filter(pk=cast.site.pk).exists() and api.post(EVENT, {"event_name": "again"}).status_code == 201
    assert Event.objects.filter(site=cast.outsider_site).count() == 2
    assert RolledBucket.objects.filter(site=cast.outsider_site).exists()


def test_deleting_a_site_counts_its_events_and_removes_everything_of_it(staff_client, api, cast):
    _fill(cast, api)
    page = staff_client.get(f"/admin/accounts/site/{cast.site.pk}/delete/").content.decode()
    assert "2 events" in page and "Are you sure" in page
    staff_client.post(f"/admin/accounts/site/{cast.site.pk}/delete/", {"post": "yes"})
    assert not Site.objects.filter(pk=cast.site.pk).exists()
    for model in (Event, Rollup, RolledBucket, ApiKey):
        assert not model.objects.filter(site_id=cast.site.pk).exists(), model
    assert Event.objects.filter(site=cast.outsider_site).count() == 2
    assert api.post(EVENT, {"event_name": "e"}).status_code == 401  # its keys went with it
