"""Visitor identities as 64-bit keyed hashes: nothing raw is ever stored."""

import hashlib
import hmac
import secrets
import time
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

from django.conf import settings
from django.utils import timezone


@lru_cache(maxsize=4)
def _caller_key(secret: str) -> bytes:
    return hashlib.sha256(b"infinity-visitor:" + secret.encode()).digest()


def hash_to_int64(key: bytes, message: bytes) -> int:
    """The first 8 bytes of HMAC-SHA256(key, message) as a signed integer."""
    return int.from_bytes(hmac.digest(key, message, "sha256")[:8], "big", signed=True)


# Caller visitors hashed lately, by (secret, site, visitor_id), of which the hash is a pure
# function: returning visitors skip the HMAC. Emptied when full; in memory only, like the
# request that brought the id.
CALLER_CACHE_SIZE = 50_000
_caller_cache: dict[tuple, int] = {}


def hash_caller_visitor(*, site_id: int, visitor_id: str) -> int:
    """A caller-supplied ``visitor_id`` is a stable identity, hashed per site."""
    secret = settings.SECRET_KEY
    key = (secret, site_id, visitor_id)
    found = _caller_cache.get(key)
    if found is None:
        if len(_caller_cache) >= CALLER_CACHE_SIZE:
            _caller_cache.clear()
        found = _caller_cache[key] = hash_to_int64(_caller_key(secret), f"{site_id}\x00{visitor_id}".encode())
    return found


# --- Tracker visitors: HMAC(daily salt, site ‖ ip ‖ user agent) ---------------------------
#
# Salts are random, one per UTC day, created by the first hit after 00:00 UTC (or by
# ``manage.py rotate_salts``). Today's and yesterday's are kept so a visit can cross
# midnight; anything older is deleted, 48 hours after its day began.

SALT_BYTES = 32
_SALT_CACHE_SECONDS = 300
_salt_cache: dict = {}


def _utc_day(now: datetime) -> date:
    return now.astimezone(UTC).date()


def rotate_salts(*, now: datetime | None = None) -> tuple[bytes, bytes | None]:
    """Ensure today's salt exists, delete salts older than yesterday's; return (today, yesterday)."""
    from .models import Salt

    today = _utc_day(now or timezone.now())
    Salt.objects.filter(day__lt=today - timedelta(days=1)).delete()
    current, _ = Salt.objects.get_or_create(day=today, defaults={"secret": secrets.token_bytes(SALT_BYTES)})
    previous = Salt.objects.filter(day=today - timedelta(days=1)).values_list("secret", flat=True).first()
    return bytes(current.secret), (bytes(previous) if previous is not None else None)


def daily_salts(*, now: datetime | None = None) -> tuple[bytes, bytes | None]:
    """(today's salt, yesterday's or None), cached in-process for a few minutes per day."""
    now = now or timezone.now()
    day = _utc_day(now)
    cached = _salt_cache.get("entry")
    clock = time.monotonic()
    if cached and cached[0] == day and cached[1] > clock:
        return cached[2]
    salts = rotate_salts(now=now)
    _salt_cache["entry"] = (day, clock + _SALT_CACHE_SECONDS, salts)
    return salts


def forget_cached_salts() -> None:
    _salt_cache.clear()


def hash_tracker_visitor(*, salt: bytes, site_id: int, ip: str, user_agent: str) -> int:
    return hash_to_int64(salt, f"{site_id}\x00{ip}\x00{user_agent}".encode())


def tracker_visitor_ids(*, site_id: int, ip: str, user_agent: str, now: datetime | None = None) -> tuple[int, int | None]:
    """The visitor's id under today's salt, and under yesterday's (None when it is gone)."""
    current, previous = daily_salts(now=now)
    ids = [hash_tracker_visitor(salt=salt, site_id=site_id, ip=ip, user_agent=user_agent) for salt in (current, previous) if salt]
    return ids[0], (ids[1] if len(ids) > 1 else None)
