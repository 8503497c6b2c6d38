"""Tracker visitors: HMAC(daily salt, site ‖ ip ‖ user agent); salts rotate at 00:00 UTC, gone after 48 h."""

from datetime import UTC, datetime

import time_machine
from django.core.management import call_command

from events.collector import Hit, collect
from events.models import Event, Salt
from events.visitors import forget_cached_salts, rotate_salts, tracker_visitor_ids

CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
IP = "81.2.69.142"


def at(text):
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def visitor(site_id=1, ip=IP, ua=CHROME, now=None):
    return tracker_visitor_ids(site_id=site_id, ip=ip, user_agent=ua, now=now)[0]


def page_view(now, *, ua=CHROME, ip=IP, path="/"):
    hit = Hit(
        domain="example.com",
        url=f"https://example.com{path}",
        referrer="",
        name="pageview",
        props={},
        hash_mode=False,
        user_agent=ua,
        ip=ip,
    )
    return collect(hit, now=now).event


def test_same_visitor_same_day_is_one_id(db):
    assert visitor(now=at("2026-03-01T00:00:01")) == visitor(now=at("2026-03-01T12:00")) == visitor(now=at("2026-03-01T23:59:59"))


def test_next_day_is_another_id(db):
    assert visitor(now=at("2026-03-01T23:59:59")) != visitor(now=at("2026-03-02T00:00:00"))


def test_site_ip_and_user_agent_each_change_the_id(db):
    now = at("2026-03-01T10:00")
    ids = {visitor(now=now), visitor(site_id=2, now=now), visitor(ip="80.128.0.1", now=now), visitor(ua=FIREFOX, now=now)}
    assert len(ids) == 4
    assert all(-(2**63) <= i < 2**63 for i in ids)


def test_salts_are_random_not_derived(db, settings):
    first = rotate_salts(now=at("2026-03-01T10:00"))[0]
    Salt.objects.all().delete()
    forget_cached_salts()
    again = rotate_salts(now=at("2026-03-01T10:00"))[0]
    assert first != again and len(first) == 32


def test_salts_rotate_at_midnight_and_are_deleted_after_48_hours(cast):
    with time_machine.travel(at("2026-03-01T09:00"), tick=False):
        page_view(None)
    with time_machine.travel(at("2026-03-02T09:00"), tick=False):
        page_view(None)
        assert sorted(str(d) for d in Salt.objects.values_list("day", flat=True)) == ["2026-03-01", "2026-03-02"]
    with time_machine.travel(at("2026-03-03T00:00:01"), tick=False):
        page_view(None)
        # 2026-03-01's salt began at 00:00 on the 1st: 48 hours have passed.
        assert sorted(str(d) for d in Salt.objects.values_list("day", flat=True)) == ["2026-03-02", "2026-03-03"]


def test_rotate_salts_command_deletes_old_salts_without_traffic(db):
    with time_machine.travel(at("2026-03-01T09:00"), tick=False):
        call_command("rotate_salts", stdout=open("/dev/null", "w"))
    with time_machine.travel(at("2026-03-05T00:05"), tick=False):
        call_command("rotate_salts", stdout=open("/dev/null", "w"))
        assert [str(d) for d in Salt.objects.values_list("day", flat=True)] == ["2026-03-05"]


def test_a_visit_crossing_midnight_stays_one_visitor_and_session(cast):
    before = page_view(at("2026-03-01T23:50"))
    after = page_view(at("2026-03-02T00:10"), path="/pricing")
    assert (after.visitor, after.session) == (before.visitor, before.session)
    # Once that session ends, the visitor is counted under the new day's id.
    later = page_view(at("2026-03-02T09:00"))
    assert later.visitor != before.visitor and later.session != before.session


def test_returning_on_another_day_counts_again_in_analytics(cast, api):
    page_view(at("2026-03-01T10:00"))
    page_view(at("2026-03-01T15:00"))
    page_view(at("2026-03-02T10:00"))
    two_days = {"start_date": "2026-03-01", "end_date": "2026-03-02", "metrics": "page_views,unique_visitors"}
    response = api.get("/api/v1/analytics", two_days)
    assert response.json()["data"] == {"page_views": 3, "unique_visitors": 2}
    one_day = api.get("/api/v1/analytics", {"start_date": "2026-03-01", "end_date": "2026-03-01", "metrics": "unique_visitors"})
    assert one_day.json()["data"] == {"unique_visitors": 1}
    assert Event.objects.filter(visitor__isnull=True).count() == 0


def test_visitor_hash_is_hmac_sha256():
    """Stored visitor ids must not change with the implementation: the first 8 bytes of
    HMAC-SHA256, for short, block-sized and long keys and messages."""
    import hashlib
    import hmac

    from events.visitors import hash_to_int64

    for key in (b"k", bytes(range(32)), b"x" * 64, b"y" * 65, b"z" * 200):
        for message in (b"", b"1\x00visitor-1", "7\x00ü\x00".encode() * 50):
            expected = int.from_bytes(hmac.new(key, message, hashlib.sha256).digest()[:8], "big", signed=True)
            assert hash_to_int64(key, message) == expected


def test_caller_visitor_hashes_are_remembered_per_secret_and_bounded(settings, monkeypatch):
    """The in-process memo of caller visitor hashes answers exactly as the HMAC does, follows a
    new SECRET_KEY, and never grows past its size."""
    from events import visitors

    monkeypatch.setattr(visitors, "CALLER_CACHE_SIZE", 3)
    monkeypatch.setattr(visitors, "_caller_cache", {})

    def direct(site_id, visitor_id):
        return visitors.hash_to_int64(visitors._caller_key(settings.SECRET_KEY), f"{site_id}\x00{visitor_id}".encode())

    first = visitors.hash_caller_visitor(site_id=1, visitor_id="u_1")
    assert first == visitors.hash_caller_visitor(site_id=1, visitor_id="u_1") == direct(1, "u_1")
    assert visitors.hash_caller_visitor(site_id=2, visitor_id="u_1") == direct(2, "u_1") != first
    settings.SECRET_KEY = "another secret " * 4
    assert visitors.hash_caller_visitor(site_id=1, visitor_id="u_1") == direct(1, "u_1") != first
    for n in range(10):
        assert visitors.hash_caller_visitor(site_id=1, visitor_id=f"v{n}") == direct(1, f"v{n}")
        assert len(visitors._caller_cache) <= 3
