"""Every metric of totals, series and breakdowns equals a brute-force count over raw rows.

Hypothesis writes random events (three sites in UTC, Europe/Berlin and Asia/Kolkata;
visitors with and without sessions; visits around local midnights and the March 2024 DST
change; long visits; purchases in several currencies) and random queries, then compares
the API's answer with a plain-Python evaluation of the documented definitions. The same
test runs on SQLite and PostgreSQL (``DATABASE_URL``). Most examples first roll up as of a
moment inside or after the data (closed days, final and provisional hours), so the rollup
path, the raw path and their seams are all checked.
"""

from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.keys import create_api_key
from accounts.models import Site
from analytics.models import RolledBucket, Rollup
from events.models import Event
from tests.conftest import Api

VISIT_WINDOW = timedelta(hours=2)
BASE = datetime(2024, 3, 30, 12, tzinfo=UTC)
TIMEZONES = ["UTC", "Europe/Berlin", "Asia/Kolkata"]
PATHS = ["/", "/a", "/b;c", "/Pricing", "/Élan"]
COUNTRIES = ["DE", "FR", ""]
SOURCES = ["", "Google", "news letter"]
CURRENCIES = ["USD", "EUR", "JPY"]
PLANS = ["free", "pro", 3, None, True, 1e-07]
DIMENSIONS = ["page", "country", "source", "event_name", "currency", "product_name", "metadata.plan", "metadata.2024",
              "entry_page", "exit_page"]  # fmt: skip
METRICS = [
    "page_views", "unique_visitors", "events", "visits", "bounce_rate", "visit_duration",
    "views_per_visit", "purchases", "revenue", "average_order_value", "conversion_rate",
]  # fmt: skip
SESSION_METRICS = ["visits", "bounce_rate", "visit_duration", "views_per_visit"]


def _edges():
    """Local midnights (± a minute) around BASE in every timezone, as minute offsets."""
    out = []
    for tz in TIMEZONES:
        for day in range(-3, 4):
            local = datetime.combine(date(2024, 3, 30) + timedelta(days=day), time.min, tzinfo=ZoneInfo(tz))
            minutes = int((local - BASE).total_seconds() // 60)
            out += [minutes - 1, minutes]
    return out


event_kind = st.sampled_from([1, 1, 1, 2, 3])


@st.composite
def visit(draw):
    start = draw(st.one_of(st.integers(-4320, 4320), st.sampled_from(_edges())))
    visitor = draw(st.one_of(st.none(), st.integers(1, 6)))
    with_session = visitor is not None and draw(st.booleans() | st.just(True))
    steps = draw(st.lists(st.integers(0, 29 * 60 + 59), min_size=0, max_size=5))
    t = BASE + timedelta(minutes=start, seconds=draw(st.integers(0, 59)), microseconds=draw(st.sampled_from([0, 1, 999_999])))
    events = []
    for gap in [0, *steps]:
        t += timedelta(seconds=gap)
        kind = draw(event_kind)
        e = {"kind": kind, "occurred_at": t, "visitor": visitor, "site": draw(st.integers(0, 2))}
        if kind == 1:
            e.update(name="pageview", path=draw(st.sampled_from(PATHS)), country=draw(st.sampled_from(COUNTRIES)),
                     source=draw(st.sampled_from(SOURCES)))  # fmt: skip
        elif kind == 2:
            e.update(
                name=draw(st.sampled_from(["signup", "Signup", "download"])),
                metadata=draw(st.sampled_from([{}, *({"plan": p} for p in PLANS), {"2024": "x"}])),
            )
        else:
            e.update(name="purchase", price=draw(st.integers(0, 5000)), currency=draw(st.sampled_from(CURRENCIES)),
                     quantity=draw(st.integers(1, 3)), product_name=draw(st.sampled_from(["Pro", "Team"])))  # fmt: skip
        events.append(e)
    return events, with_session


@st.composite
def query(draw):
    start = date(2024, 3, 30) + timedelta(days=draw(st.integers(-4, 3)))
    end = start + timedelta(days=draw(st.integers(0, 3)))
    params = {"start_date": start.isoformat(), "end_date": end.isoformat()}
    breakdown = draw(st.none() | st.sampled_from(DIMENSIONS))
    n_filters = draw(st.integers(0, 2))
    filters = []
    for _ in range(n_filters):
        dim = draw(st.sampled_from(DIMENSIONS))
        op = draw(st.sampled_from(["==", "!=", "~"]))
        value = draw(st.sampled_from([*PATHS, *COUNTRIES, "de", "pro", "3", "goo", "b;", "USD", "signup", "élan", "x"]))
        filters.append((dim, op, value))
    session_dims = {"entry_page", "exit_page"}
    if breakdown in session_dims or any(f[0] in session_dims for f in filters):
        metrics = draw(st.lists(st.sampled_from(SESSION_METRICS), min_size=1, max_size=4, unique=True))
    else:
        metrics = draw(st.lists(st.sampled_from(METRICS), min_size=1, max_size=6, unique=True))
    params["metrics"] = ",".join(metrics)
    if breakdown:
        params["breakdown"] = breakdown
        params["limit"] = str(draw(st.integers(1, 20)))
    if filters:
        params["filters"] = ";".join(
            f"{d}{o}{v.replace(chr(92), chr(92) * 2).replace(';', chr(92) + ';')}" for d, o, v in filters
        )
    interval = draw(st.none() | st.sampled_from(["hour", "day", "week", "month"]))
    if interval:
        params["interval"] = interval
    if draw(st.booleans()):
        params["timezone"] = draw(st.sampled_from(TIMEZONES))
    if draw(st.booleans()):
        params["compare"] = draw(st.sampled_from(["previous_period", "year_over_year"]))
    return params, filters, metrics, breakdown, interval


# --- the brute force: the README's definitions, in plain Python over every row ----------


def _year_before(day):
    return day.replace(year=day.year - 1) if (day.month, day.day) != (2, 29) else day.replace(year=day.year - 1, day=28)


def _value(row, dim):
    if dim == "page":
        return row.path
    if dim == "event_name":
        return row.name
    if dim.startswith("metadata."):
        return _text(row.metadata.get(dim[len("metadata.") :]))
    return getattr(row, dim)


def _text(v):
    """A metadata value as text: null is empty, booleans true/false, numbers positional."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v == 0:
        return "0.0"  # no negative zero
    if isinstance(v, float):
        return format(Decimal(repr(v)), "f")  # 1e-07 → 0.0000001
    return str(v)


def _fold(text):  # ASCII letters only
    return "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in text)


def _matches(actual, op, value):
    if op == "==":
        return actual == value
    if op == "!=":
        return actual != value
    return _fold(value) in _fold(actual)


def _bucket(t, interval, tz):
    local = t.astimezone(tz).replace(tzinfo=None)
    if interval == "hour":
        return local.replace(minute=0, second=0, microsecond=0)
    day = datetime.combine(local.date(), time.min)
    if interval == "week":
        return day - timedelta(days=day.weekday())
    if interval == "month":
        return day.replace(day=1)
    return day


def _round(n, d, scale=1.0):
    return round(n * scale / d, 2) if d else 0.0


def _finish(acc, metrics):
    out = {}
    for m in metrics:
        if m == "page_views":
            out[m] = acc["pv"]
        elif m == "events":
            out[m] = acc["ev"]
        elif m == "purchases":
            out[m] = acc["pu"]
        elif m == "unique_visitors":
            out[m] = len(acc["visitors"])
        elif m == "conversion_rate":
            out[m] = _round(len(acc["buyers"]), len(acc["visitors"]), 100)
        elif m == "revenue":
            out[m] = dict(sorted(acc["rev"].items()))
        elif m == "average_order_value":
            out[m] = {c: (2 * acc["rev"][c] + n) // (2 * n) for c, n in sorted(acc["orders"].items())}
        elif m == "visits":
            out[m] = len(acc["visits"])
        elif m == "bounce_rate":
            out[m] = _round(sum(v["bounce"] for v in acc["visits"].values()), len(acc["visits"]), 100)
        elif m == "visit_duration":
            out[m] = _round(sum(v["us"] for v in acc["visits"].values()), len(acc["visits"]), 1e-6)
        elif m == "views_per_visit":
            out[m] = _round(sum(v["pv"] for v in acc["visits"].values()), len(acc["visits"]))
    return out


def _acc():
    return {
        "pv": 0,
        "ev": 0,
        "pu": 0,
        "visitors": set(),
        "buyers": set(),
        "rev": defaultdict(int),
        "orders": defaultdict(int),
        "visits": {},
    }


def brute_force(site, params, filters, metrics, breakdown, interval):
    tz = ZoneInfo(params.get("timezone") or site.timezone)
    start, end = date.fromisoformat(params["start_date"]), date.fromisoformat(params["end_date"])
    lo = datetime.combine(start, time.min, tzinfo=tz)
    hi = datetime.combine(end + timedelta(days=1), time.min, tzinfo=tz)
    rows = list(Event.objects.filter(site=site).order_by("occurred_at", "id"))
    event_filters = [f for f in filters if f[0] not in ("entry_page", "exit_page")]
    session_filters = [f for f in filters if f[0] in ("entry_page", "exit_page")]

    def event_ok(r):
        return all(_matches(_value(r, d), o, v) for d, o, v in event_filters)

    total, buckets, values = _acc(), defaultdict(_acc), defaultdict(_acc)

    def add_event(acc, r):
        acc["pv"] += r.kind == 1
        acc["ev"] += r.kind in (2, 3)
        acc["pu"] += r.kind == 3
        if r.visitor is not None:
            acc["visitors"].add(r.visitor)
            if r.kind == 3:
                acc["buyers"].add(r.visitor)
        if r.kind == 3:
            acc["rev"][r.currency] += r.price * (r.quantity or 1)
            acc["orders"][r.currency] += 1

    for r in rows:
        if lo <= r.occurred_at < hi and event_ok(r):
            add_event(total, r)
            if interval:
                add_event(buckets[_bucket(r.occurred_at, interval, tz)], r)
            if breakdown and breakdown not in ("entry_page", "exit_page"):
                add_event(values[_value(r, breakdown)], r)

    sessions = defaultdict(list)
    for r in rows:
        if r.session is not None:
            sessions[r.session].append(r)
    for sid, evs in sessions.items():
        first = evs[0].occurred_at
        if not lo <= first < hi:
            continue
        evs = [r for r in evs if r.occurred_at < first + VISIT_WINDOW]
        if event_filters and not any(event_ok(r) for r in evs):
            continue
        pages = [r for r in evs if r.kind == 1]
        entry, exit_ = (pages[0].path, pages[-1].path) if pages else ("", "")
        own = {"entry_page": entry, "exit_page": exit_}
        if not all(_matches(own[d], o, v) for d, o, v in session_filters):
            continue
        pv = len(pages)
        v = {"bounce": pv == 1 and len(evs) == 1, "pv": pv, "us": (evs[-1].occurred_at - first) // timedelta(microseconds=1)}
        total["visits"][sid] = v
        if interval:
            buckets[_bucket(first, interval, tz)]["visits"][sid] = v
        if breakdown in own:
            values[own[breakdown]]["visits"][sid] = v
        elif breakdown:
            for r in evs:
                if event_ok(r):
                    values[_value(r, breakdown)]["visits"][sid] = v

    out = {"data": _finish(total, metrics), "period": {"start": start.isoformat(), "end": end.isoformat()}}
    if interval:
        keys, day = [], start
        if interval == "hour":
            t = lo.astimezone(UTC)
            while t < hi:
                k = _bucket(t, "hour", tz)
                if k not in keys:
                    keys.append(k)
                t += timedelta(minutes=15)
        else:
            while day <= end:
                k = _bucket(datetime.combine(day, time.min, tzinfo=tz), interval, tz)
                if k not in keys:
                    keys.append(k)
                day += timedelta(days=1)
        label = (lambda k: k.isoformat()) if interval == "hour" else (lambda k: max(k.date(), start).isoformat())
        out["series"] = [{"date": label(k), **_finish(buckets[k], metrics)} for k in keys]
    if breakdown:
        first_metric = metrics[0]
        rows_out = [(val, _finish(acc, metrics)) for val, acc in values.items()]
        # rows with nothing to show are left out: no non-zero metric and no rate over a non-empty denominator
        bases = {"bounce_rate": "visits", "visit_duration": "visits", "views_per_visit": "visits",
                 "conversion_rate": "visitors"}  # fmt: skip
        rates = [bases[m] for m in metrics if m in bases]
        rows_out = [(val, ms) for val, ms in rows_out if any(ms.values()) or any(len(values[val][r]) for r in rates)]

        def key(item):
            m = item[1][first_metric]
            return (-(max(m.values(), default=0) if isinstance(m, dict) else m), item[0])

        rows_out.sort(key=key)
        out["breakdown"] = [{"value": val or None, **ms} for val, ms in rows_out[: int(params["limit"])]]
    return out


@pytest.fixture
def sites(cast, settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "analytics": 10**9}
    cast.site.timezone = "UTC"
    cast.site.save()
    out = [cast.site]
    for i, tz in enumerate(TIMEZONES[1:]):
        out.append(Site.objects.create(domain=f"tz{i}.example", name=tz, timezone=tz))
    keys = [cast.key] + [create_api_key(site=s, name="full")[1] for s in out[1:]]
    return list(zip(out, keys, strict=True))


@settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
@given(visits=st.lists(visit(), max_size=12), q=query(), which=st.integers(0, 2),
       rolled=st.sampled_from([None, 30 * 24, -30, 2, 50]))  # fmt: skip
def test_api_equals_brute_force(sites, visits, q, which, rolled):
    Event.objects.all().delete()
    Rollup.objects.all().delete()
    RolledBucket.objects.all().delete()
    session_ids = iter(range(1000, 10_000))
    rows = []
    for events, with_session in visits:
        session = next(session_ids) if with_session else None
        site = sites[events[0]["site"]][0]  # a visit stays on one site
        for e in events:
            rows.append(Event(site=site, session=session, **{k: v for k, v in e.items() if k != "site"}))
    Event.objects.bulk_create(rows)
    site, key = sites[which]
    if rolled is not None:  # roll up as of `rolled` hours after BASE: final days, final and provisional hours
        from analytics.rollups import rebuild

        rebuild(site=site, now=BASE + timedelta(hours=rolled))
    params, filters, metrics, breakdown, interval = q
    response = Api(key).get("/api/v1/analytics", params)
    assert response.status_code == 200, response.json()
    body = response.json()
    body.pop("query", None)
    expected = brute_force(site, params, filters, metrics, breakdown, interval)
    comparison = body.pop("comparison", None)
    assert body == expected
    if params.get("compare"):
        start, end = date.fromisoformat(params["start_date"]), date.fromisoformat(params["end_date"])
        if params["compare"] == "year_over_year":
            start, end = _year_before(start), _year_before(end)
        else:
            days = (end - start).days + 1
            start, end = start - timedelta(days=days), start - timedelta(days=1)
        prev = dict(params, start_date=start.isoformat(), end_date=end.isoformat())
        expected_prev = brute_force(site, prev, filters, metrics, None, interval)
        expected_comparison = {"data": expected_prev["data"], "period": expected_prev["period"]}
        if interval:
            expected_comparison["series"] = expected_prev["series"]
        assert comparison == expected_comparison
