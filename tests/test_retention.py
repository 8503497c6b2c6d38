"""Retention: a site keeps today and ``retention_days`` days before it, in its timezone; older
days go whole, with their rollups, and every answer afterwards equals a brute-force count over
the rows left. On PostgreSQL a month's partition is dropped only when every site holding rows in
it lets its rows go."""

import io
import re
from datetime import UTC, date, datetime, timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analytics import rollups
from analytics.models import RolledBucket, Rollup
from events import retention, storage
from events.models import Event
from events.partitions import ensure_partitions, months_ahead
from events.retention import apply_retention, cutoff

from . import test_analytics_exactness as exactness
from .conftest import Api
from .test_analytics_exactness import BASE, brute_force, query, visit

sites = exactness.sites
NOW = BASE + timedelta(days=5)  # 2024-04-04 12:00 UTC
MARCH = date(2024, 3, 1)


def partitioned():
    return storage.partitions()


def _store(visits, sites):
    session_ids = iter(range(1000, 10_000))
    rows = []
    for events, with_session in visits:
        session = next(session_ids) if with_session else None
        site = sites[events[0]["site"]][0]
        for e in events:
            rows.append(Event(site=site, session=session, **{k: v for k, v in e.items() if k != "site"}))
    Event.objects.bulk_create(rows)
    connection.check_constraints()  # PostgreSQL: no deferred check left pending, or a partition cannot be dropped


def _answer(key, params):
    body = Api(key).get("/api/v1/analytics", params).json()
    body.pop("query", None)
    body.pop("comparison", None)
    return body


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(visits=st.lists(visit(), min_size=1, max_size=12), q=query(), which=st.integers(0, 2),
       kept=st.lists(st.sampled_from([None, 2, 4, 6, 8]), min_size=3, max_size=3),
       rolled=st.sampled_from([None, 30 * 24, 2, 50]))  # fmt: skip
def test_retention_removes_exactly_the_expired_days_and_answers_equal_brute_force(sites, visits, q, which, kept, rolled):
    Event.objects.all().delete()
    Rollup.objects.all().delete()
    RolledBucket.objects.all().delete()
    _store(visits, sites)
    ensure_partitions()  # on PostgreSQL: March and April 2024 get partitions, their rows moved in
    for (site, _), days in zip(sites, kept, strict=True):
        site.retention_days = days
        site.save()
        if rolled is not None:
            rollups.rebuild(site=site, now=BASE + timedelta(hours=rolled))
    cuts = {site.pk: cutoff(site, NOW) for site, _ in sites}
    expected = {pk for pk, s, t in Event.objects.values_list("pk", "site_id", "occurred_at") if cuts[s] is None or t >= cuts[s]}
    march = set(Event.objects.filter(occurred_at__lt=datetime(2024, 4, 1, tzinfo=UTC)).values_list("site_id", flat=True))

    removed = apply_retention(now=NOW)

    assert set(Event.objects.values_list("pk", flat=True)) == expected
    store = partitioned()
    if store is not None:
        dropped = bool(march) and all(cuts[s] is not None and cuts[s] >= datetime(2024, 4, 1, tzinfo=UTC) for s in march)
        assert (MARCH in removed.partitions) == dropped
        assert (MARCH in store.months()) == (not dropped)
    for site, _ in sites:  # no rollup bucket is left that counted a removed day
        if cuts[site.pk] is not None:
            assert not RolledBucket.objects.filter(site=site, start__lt=cuts[site.pk]).exists()
    site, key = sites[which]
    params, filters, metrics, breakdown, interval = q
    assert _answer(key, params) == brute_force(site, params, filters, metrics, breakdown, interval)
    rollups.refresh(now=NOW, site=site)  # the timer rolls up what is left
    assert _answer(key, params) == brute_force(site, params, filters, metrics, breakdown, interval)


def _event(site, at, **fields):
    return Event(site=site, kind=2, name="e", occurred_at=at, **fields)


def test_a_day_goes_whole_in_bounded_statements_and_only_expired_days_go(cast, monkeypatch):
    monkeypatch.setattr(retention, "BATCH", 3)
    cast.site.timezone = "America/New_York"
    cast.site.retention_days = 1
    cast.site.save()
    now = datetime(2024, 7, 10, 15, tzinfo=UTC)  # 11:00 in New York: it keeps July 9 and 10 (local)
    keep_from = datetime(2024, 7, 9, 4, tzinfo=UTC)  # local midnight
    times = [keep_from - timedelta(days=2, minutes=m) for m in range(10)]
    times += [keep_from - timedelta(microseconds=1), keep_from, keep_from + timedelta(hours=30)]
    Event.objects.bulk_create([_event(cast.site, t) for t in times])
    Event.objects.bulk_create([_event(cast.outsider_site, keep_from - timedelta(days=400))])  # no retention: kept

    removed = apply_retention(now=now)

    assert removed.rows == 11
    assert sorted(Event.objects.filter(site=cast.site).values_list("occurred_at", flat=True)) == times[-2:]
    assert Event.objects.filter(site=cast.outsider_site).count() == 1
    assert apply_retention(now=now).rows == 0


def test_the_rollup_timer_applies_retention_and_keeps_partitions_ahead(cast):
    cast.site.retention_days = 3
    cast.site.save()
    today = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    Event.objects.bulk_create([_event(cast.site, today - timedelta(days=d)) for d in (0, 1, 3, 4, 40)])
    connection.check_constraints()
    out = io.StringIO()
    call_command("rollup", "--jobs", "1", stdout=out)
    # PostgreSQL: the old month gets its partition, which is dropped whole; its other day is deleted
    assert re.search(r"retention: [12] events deleted", out.getvalue())
    assert sorted(Event.objects.values_list("occurred_at", flat=True)) == [today - timedelta(days=d) for d in (3, 1, 0)]
    store = partitioned()
    if store is not None:
        assert set(months_ahead(today)) <= set(store.months())
    out = io.StringIO()
    call_command("apply_retention", stdout=out)
    assert out.getvalue().startswith("0 events deleted")


@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="partitions are PostgreSQL's")
def test_a_partition_is_dropped_only_when_every_site_holding_rows_in_it_lets_them_go(cast):
    if partitioned() is None:
        pytest.skip("the events table is not partitioned")
    store = partitioned()
    now = datetime(2024, 9, 15, 12, tzinfo=UTC)
    cast.site.retention_days = 30  # keeps from 2024-08-16
    cast.site.save()
    Event.objects.bulk_create([
        _event(cast.site, datetime(2024, 5, 10, tzinfo=UTC)),
        _event(cast.site, datetime(2024, 6, 10, tzinfo=UTC)),
        _event(cast.site, datetime(2024, 9, 1, tzinfo=UTC)),
        _event(cast.outsider_site, datetime(2024, 5, 20, tzinfo=UTC)),  # keeps everything
    ])  # fmt: skip
    connection.check_constraints()
    ensure_partitions(now)
    may, june = date(2024, 5, 1), date(2024, 6, 1)
    assert {may, june} <= set(store.months())

    removed = apply_retention(now=now)

    assert removed.partitions == [june]
    assert may in store.months() and june not in store.months()
    left = sorted(Event.objects.values_list("site_id", "occurred_at"))
    kept = [(cast.site.pk, datetime(2024, 9, 1, tzinfo=UTC)), (cast.outsider_site.pk, datetime(2024, 5, 20, tzinfo=UTC))]
    assert left == sorted(kept)
    cast.outsider_site.retention_days = 100
    cast.outsider_site.save()
    assert apply_retention(now=now).partitions == [may]
    assert Event.objects.count() == 1
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_class WHERE relname = %s", [store.name(may)])
        assert cur.fetchone()[0] == 0


def test_the_admin_edits_retention(cast, client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("staff", "staff@example.com", "pw-staff-123"))
    page = client.get(f"/admin/accounts/site/{cast.site.pk}/change/").content.decode()
    assert re.search(r'name="retention_days"', page)
    form = {"domain": cast.site.domain, "name": cast.site.name, "timezone": "UTC", "retention_days": "0",
            **{f"{inline}-{n}_FORMS": "0" for inline in ("api_keys", "memberships") for n in ("TOTAL", "INITIAL")}}  # fmt: skip
    refused = client.post(f"/admin/accounts/site/{cast.site.pk}/change/", form).content.decode()
    assert "Ensure this value is greater than or equal to 1" in refused
    client.post(f"/admin/accounts/site/{cast.site.pk}/change/", {**form, "retention_days": "90"})
    cast.site.refresh_from_db()
    assert cast.site.retention_days == 90
