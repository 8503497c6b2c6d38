"""The benchmark's generated traffic: exactly N events over the days asked, up to the present minute."""

from datetime import UTC, datetime, timedelta

import pytest

from bench.generate import DAYS, SITES, generate_lines, line_values

SITE_IDS = {domain: i + 1 for i, (domain, *_) in enumerate(SITES)}


def times(lines) -> list[datetime]:
    return [datetime.fromisoformat(line_values(line)[8]).replace(tzinfo=UTC) for line in lines]


@pytest.mark.parametrize(
    "n, now, gap",
    [
        (60_000, datetime(2026, 3, 10, 15, 37, tzinfo=UTC), 3),  # an afternoon
        (30_000, datetime(2026, 3, 11, 0, 4, tzinfo=UTC), 3),  # minutes after midnight
        (20_000, datetime(2026, 3, 14, 9, 0, 30, tzinfo=UTC), 20),  # a quiet Saturday morning: ~4 events an hour
    ],
)
def test_events_run_up_to_the_present_minute(n, now, gap):
    lines = list(generate_lines(n, SITE_IDS, now=now))
    assert len(lines) == n
    stamps = times(lines)
    assert stamps == sorted(stamps)
    first_day = (now - timedelta(days=DAYS - 1)).date()
    assert stamps[0].date() == first_day
    assert now - timedelta(minutes=gap) <= stamps[-1] < now  # the last minutes are there, nothing from the future
    today = sum(t.date() == now.date() for t in stamps)
    yesterday = sum(t.date() == (now - timedelta(days=1)).date() for t in stamps)
    elapsed = (now - now.replace(hour=0, minute=0, second=0)).total_seconds() / 86400
    assert today <= yesterday * max(elapsed, 0.01) * 2 + 50  # today only has the day so far


def test_every_site_gets_its_share_today():
    now = datetime(2026, 3, 10, 18, 0, tzinfo=UTC)
    lines = list(generate_lines(100_000, SITE_IDS, now=now, days=3))
    today = [line_values(line) for line in lines if line_values(line)[8].startswith("2026-03-10")]
    sites = {int(v[10]) for v in today}
    assert sites == set(SITE_IDS.values())
