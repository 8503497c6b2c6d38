"""The PostgreSQL events table partitioned by month (``storage.MonthlyPartitions``): the months
kept ready ahead of the clock, and the conversion of an existing installation's table.

The partitions are this module and a management command, not pg_partman or
django-postgres-extra: pg_partman needs a superuser to install its extension and a scheduler
of its own, and django-postgres-extra replaces the database backend and the model's base
class; neither knows a site's retention, which decides what is dropped (``events.retention``).
SQLite keeps a plain table.
"""

import logging
from datetime import date, datetime

from django.utils import timezone

from . import storage

logger = logging.getLogger("events.partitions")
AHEAD = 2  # months created past the current one, so a month's first insert never waits on DDL


def months_ahead(now: datetime) -> list[date]:
    """The current UTC month and the ``AHEAD`` after it."""
    month = date(now.year, now.month, 1)
    months = [month]
    for _ in range(AHEAD):
        months.append(storage.month_bounds(months[-1])[1].date())
    return months


def ensure_partitions(now: datetime | None = None, *, since: datetime | None = None) -> list[date]:
    """Create the partitions of the coming months (and of every month from ``since``, before a
    load of history), and of any month whose rows sit in the default partition (events far in the
    past or future), moving those rows in; the months created. Nothing on SQLite or on a table not
    (yet) partitioned."""
    store = storage.partitions()
    if store is None:
        return []
    now = now or timezone.now()
    wanted = set(months_ahead(now)) | set(store.default_months())
    month = None if since is None else date(since.year, since.month, 1)
    while month is not None and month <= now.date():
        wanted.add(month)
        month = storage.month_bounds(month)[1].date()
    created = [month for month in sorted(wanted - set(store.months())) if store.create(month)]
    for month in created:
        logger.info("events partition %s created", store.name(month))
    return created


def partition_events(now: datetime | None = None, *, progress=None) -> int | None:
    """Convert the plain PostgreSQL events table into the partitioned one; the rows copied, or
    None when there is nothing to do (SQLite, or already partitioned)."""
    store = storage.PARTITIONS.get(storage.connection.vendor)
    if store is None or store.is_partitioned():
        return None
    return store.partition(months_ahead(now or timezone.now()), progress=progress)
