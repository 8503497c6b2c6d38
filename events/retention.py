"""Retention: each site's ``retention_days`` applied to its events (``manage.py apply_retention``,
and the rollup timer on every run).

A site keeps today and ``retention_days`` days before it, as days of its own timezone; older
days go whole. Each day is deleted in one transaction that also drops the rollup buckets
counting it (``events.signals.events_deleted``), so a query sees the day either complete or
gone, never half of it. Rows go in statements of at most ``BATCH`` rows. On PostgreSQL a
monthly partition whose rows have all expired, for every site holding rows in it, is detached
and dropped instead: no DELETE, nothing left for VACUUM. A partition holds UTC months, a site
deletes local days, so the local days a partition's bounds cut through are deleted first.
"""

import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.db import OperationalError, transaction
from django.db.models import Min
from django.utils import timezone

from accounts.models import Site

from . import storage
from .data_rights import lock_site
from .models import Event
from .signals import events_deleted

logger = logging.getLogger("events.retention")
BATCH = 10_000  # rows per DELETE statement


@dataclass
class Removed:
    """What a run removed: rows deleted by statement, and the months whose partitions were dropped."""

    rows: int = 0
    partitions: list[date] = field(default_factory=list)


def cutoff(site: Site, now: datetime) -> datetime | None:
    """The first instant ``site`` keeps (a local midnight, in UTC); None: it keeps everything."""
    if site.retention_days is None:
        return None
    tz = ZoneInfo(site.timezone)
    return _midnight(now.astimezone(tz).date() - timedelta(days=site.retention_days), tz)


def _midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time.min, tzinfo=tz).astimezone(UTC)


def _day_of(site: Site, moment: datetime) -> tuple[datetime, datetime]:
    """The [start, end) of the local day of ``site`` that holds ``moment``."""
    tz = ZoneInfo(site.timezone)
    day = moment.astimezone(tz).date()
    return _midnight(day, tz), _midnight(day + timedelta(days=1), tz)


def _first_event(site: Site, before: datetime) -> datetime | None:
    return Event.objects.filter(site=site, occurred_at__lt=before).aggregate(t=Min("occurred_at"))["t"]


def delete_day(site: Site, lo: datetime, hi: datetime) -> int:
    """Delete the events of ``site`` in [lo, hi) and what analytics derived from them, in one
    transaction, ``BATCH`` rows per statement; how many."""
    rows = Event.objects.filter(site=site, occurred_at__gte=lo, occurred_at__lt=hi)
    deleted = 0
    with transaction.atomic():
        lock_site(site.pk)
        while True:
            # The outer range keeps PostgreSQL to the day's partition; nothing refers to events, so one DELETE.
            n = rows.filter(pk__in=rows.values("pk")[:BATCH]).delete()[0]
            deleted += n
            if n < BATCH:
                break
        events_deleted.send(Event, site_id=site.pk, spans=[(lo, hi)])
    return deleted


def _holds(site: Site, lo: datetime, hi: datetime) -> bool:
    return Event.objects.filter(site=site, occurred_at__gte=lo, occurred_at__lt=hi).exists()


def _keepers(now: datetime, lo: datetime, hi: datetime) -> tuple[list[Site], bool]:
    """The sites holding events in [lo, hi), and whether any of them keeps some of those."""
    holders = [s for s in Site.objects.order_by("pk") if _holds(s, lo, hi)]
    return holders, any((c := cutoff(s, now)) is None or c < hi for s in holders)


def _drop_partitions(store, now: datetime, latest: datetime, removed: Removed) -> None:
    """Drop every monthly partition ending by ``latest`` whose rows have expired for every site
    holding rows in it."""
    for month in store.months():
        lo, hi = storage.month_bounds(month)
        if hi > latest:
            break
        holders, kept = _keepers(now, lo, hi)
        if not holders or kept:
            continue
        for s in holders:  # the local days cut by the bounds go first, as whole days
            for moment in (lo, hi):
                day = _day_of(s, moment)
                if day[0] < moment:
                    removed.rows += delete_day(s, *day)
        try:
            with transaction.atomic():
                for s in holders:
                    lock_site(s.pk)
                # A site's retention may have changed meanwhile, or a late event brought a site
                # whose days at the bounds were not cut: the next run decides again.
                now_holding, kept = _keepers(now, lo, hi)
                if kept or {s.pk for s in now_holding} - {s.pk for s in holders}:
                    continue
                holders = now_holding
                for s in holders:
                    events_deleted.send(Event, site_id=s.pk, spans=[(lo, hi)])
                store.drop(month)
        except OperationalError as exc:  # the table's lock not granted in time: the next run tries again
            logger.warning("events partition %s not dropped: %s", store.name(month), exc)
            continue
        removed.partitions.append(month)
        logger.info("events partition %s dropped: expired for every site", store.name(month))


def apply_retention(now: datetime | None = None, *, site: Site | None = None) -> Removed:
    """Remove every site's expired days (or only ``site``'s: then no partition is dropped)."""
    now = now or timezone.now()
    sites = list(Site.objects.all()) if site is None else [site]
    cuts = {s.pk: cutoff(s, now) for s in sites}
    expiring = [s for s in sites if cuts[s.pk] is not None and _first_event(s, cuts[s.pk]) is not None]
    removed = Removed()
    if not expiring:
        return removed
    for s in expiring:
        # Rollup buckets of the whole expiring range go first, empty days' included: until its
        # rows are gone, queries read the range raw.
        with transaction.atomic():
            lock_site(s.pk)
            if (first := _first_event(s, cuts[s.pk])) is not None:
                events_deleted.send(Event, site_id=s.pk, spans=[(first, cuts[s.pk])])
    store = storage.partitions() if site is None else None
    if store is not None:
        _drop_partitions(store, now, max(cuts[s.pk] for s in expiring), removed)
    for s in expiring:
        while (first := _first_event(s, cuts[s.pk])) is not None:
            removed.rows += delete_day(s, *_day_of(s, first))
    return removed
