"""Time buckets in the query's timezone: hour, day, week (Monday) or month.

A bucket is named by the naive local wall-clock time at which it starts, the same key
the database's ``Trunc(…, tzinfo=tz)`` yields, so Python and SQL bucket alike. Around a
DST fall-back the repeated local hour is one bucket.
"""

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.db.models.functions import Trunc


def truncate(local: datetime, grain: str) -> datetime:
    """The bucket key of a naive local datetime."""
    if grain == "hour":
        return local.replace(minute=0, second=0, microsecond=0)
    day = datetime.combine(local.date(), time.min)
    if grain == "day":
        return day
    if grain == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def bucket_of(instant: datetime, grain: str, tz: ZoneInfo) -> datetime:
    return truncate(instant.astimezone(tz).replace(tzinfo=None), grain)


def db_bucket(grain: str, tz: ZoneInfo):
    return Trunc("occurred_at", grain, tzinfo=tz)


def from_db(value) -> datetime:
    return value.replace(tzinfo=None)


def bucket_keys(start: date, end: date, grain: str, tz: ZoneInfo) -> list[datetime]:
    """Every bucket overlapping the inclusive local days start..end, in order."""
    if grain == "hour":
        lo = datetime.combine(start, time.min, tzinfo=tz).astimezone(ZoneInfo("UTC"))
        hi = datetime.combine(end + timedelta(days=1), time.min, tzinfo=tz).astimezone(ZoneInfo("UTC"))
        keys, t = [], lo
        while t < hi:  # 15-minute steps catch half- and quarter-hour offsets
            key = bucket_of(t, "hour", tz)
            if not keys or keys[-1] != key:
                if key not in keys[-3:]:
                    keys.append(key)
            t += timedelta(minutes=15)
        return keys
    keys, day = [], start
    while day <= end:
        key = truncate(datetime.combine(day, time.min), grain)
        if not keys or keys[-1] != key:
            keys.append(key)
        day += timedelta(days=1)
    return keys


def label(key: datetime, grain: str, start: date) -> str:
    """Hours as local ISO datetimes; days, weeks and months as their first day in range."""
    if grain == "hour":
        return key.isoformat()
    return max(key.date(), start).isoformat()
