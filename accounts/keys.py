"""API keys: generate, hash, verify.

A raw key is ``im_<base62>`` with 190 random bits. We store only HMAC-SHA256 of it under
SECRET_KEY-derived material (keys are random, so a slow KDF buys nothing and would cost
every request), looked up through a unique index, then confirmed with compare_digest.
"""

import hashlib
import hmac
import logging
import secrets
import time
from datetime import timedelta
from functools import lru_cache

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from infinity.hashing import hmac_sha256
from infinity.throttling import get_store

from .models import ALL_SCOPES, ApiKey, Site

KEY_PREFIX = "im_"
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_RANDOM_CHARS = 32  # 32 * log2(62) ≈ 190 bits
DISPLAY_PREFIX_LEN = len(KEY_PREFIX) + 6
LAST_USED_RESOLUTION = timedelta(minutes=1)
# A worker trusts a cached key only while the shared key generation is unchanged, and never
# longer than this (the bound if a change could not be announced because the store was down).
CACHE_SECONDS = 30.0
CACHE_MAX_ENTRIES = 10_000

logger = logging.getLogger("infinity.keys")


@lru_cache(maxsize=4)
def _key_material(secret: str) -> bytes:
    return hashlib.sha256(b"infinity-api-key:" + secret.encode()).digest()


def _hash_secret(raw_key: str) -> str:
    return hmac_sha256(_key_material(settings.SECRET_KEY), raw_key.encode()).hex()


def parse_scopes(value) -> list[str]:
    """``"events:write,analytics:read"`` or an iterable → a validated, ordered scope list."""
    items = value.split(",") if isinstance(value, str) else list(value)
    scopes = [item.strip() for item in items if item and item.strip()]
    unknown = sorted(set(scopes) - set(ALL_SCOPES))
    if unknown:
        raise ValueError(f"Unknown scope {unknown[0]!r}; choose from {', '.join(ALL_SCOPES)}")
    if not scopes:
        raise ValueError("At least one scope is required")
    return [scope for scope in ALL_SCOPES if scope in scopes]


def generate_raw_key() -> str:
    return KEY_PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(_RANDOM_CHARS))


def assign_new_secret(api_key: ApiKey) -> str:
    """Give an unsaved key a fresh secret; returns the raw key (shown once, never stored)."""
    raw = generate_raw_key()
    api_key.prefix = raw[:DISPLAY_PREFIX_LEN]
    api_key.secret_hash = _hash_secret(raw)
    return raw


def create_api_key(*, site: Site, name: str = "", scopes=ALL_SCOPES) -> tuple[ApiKey, str]:
    """Create and save a key; returns (key, raw key)."""
    api_key = ApiKey(site=site, name=name, scopes=parse_scopes(scopes))
    raw = assign_new_secret(api_key)
    api_key.save()
    return api_key, raw


def _lookup(digest: str) -> ApiKey | None:
    """The key with this hash and its site, from the database (``lookup_key`` decides when)."""
    return ApiKey.objects.select_related("site").filter(secret_hash=digest).first()


# digest → (ApiKey with its site, key generation it was read under, monotonic time read)
_cache: dict[str, tuple[ApiKey, int, float]] = {}


def generation_key() -> str:
    """The shared counter that every change to a key or site bumps."""
    return f"{settings.RATELIMIT_KEY_PREFIX}:keys:generation"


def key_generation() -> int | None:
    """The shared generation of keys and sites (the rate-limit store), None if unreachable."""
    return get_store().read(generation_key())


def announce_key_change() -> None:
    """Tell every worker that a key or site changed: their cached keys are read again.

    Called now and again after the surrounding transaction commits, so a worker that
    re-reads the key between the two sees the committed row on its next request.
    """

    def bump():
        try:
            get_store().bump(generation_key())
        except Exception as exc:
            logger.error("could not announce a key change (%s); workers apply it within %d s", exc, CACHE_SECONDS)

    bump()
    transaction.on_commit(bump)


def forget_cached_keys() -> None:
    _cache.clear()


def _load(digest: str, generation: int | None) -> ApiKey | None:
    """The key from the database, cached under ``generation`` (read *before* this load)."""
    api_key = _lookup(digest)
    if generation is None:  # no shared store: nothing may be trusted later
        _cache.clear()
    elif api_key is not None:
        if len(_cache) >= CACHE_MAX_ENTRIES:
            _cache.clear()
        _cache[digest] = (api_key, generation, time.monotonic())
    else:
        _cache.pop(digest, None)
    return api_key


def _active(api_key: ApiKey | None, digest: str) -> ApiKey | None:
    if api_key is None or not hmac.compare_digest(api_key.secret_hash, digest) or not api_key.is_active:
        return None
    return api_key


def _digest(raw_key: str) -> str | None:
    if not raw_key.startswith(KEY_PREFIX) or len(raw_key) > 200:
        return None
    return _hash_secret(raw_key)


def lookup_key(raw_key: str) -> tuple[ApiKey | None, int | None]:
    """(the active key or None, the key generation it was read under).

    From this worker's cache when it holds the key (then the caller must ``confirm_key``
    against the current generation), otherwise from the database.
    """
    digest = _digest(raw_key)
    if digest is None:
        return None, None
    entry = _cache.get(digest)
    if entry is not None and time.monotonic() - entry[2] < CACHE_SECONDS and _active(entry[0], digest):
        return entry[0], entry[1]
    generation = key_generation()
    return _active(_load(digest, generation), digest), generation


def confirm_key(raw_key: str, api_key: ApiKey, seen: int | None, current: int | None) -> ApiKey | None:
    """``api_key`` from ``lookup_key`` if the key generation is still ``seen``; otherwise the
    key as the database has it now (None if it is gone, revoked or expired).

    ``current`` must have been read after ``lookup_key``: a change announced before it is
    seen, so a revocation applies to the very next request on every worker.
    """
    if seen is None or (current is not None and current == seen):
        return api_key  # read fresh without a shared store, or still current
    digest = _digest(raw_key)
    return _active(_load(digest, current), digest)


def verify_key(raw_key: str) -> ApiKey | None:
    """The active key for ``raw_key``, or None: a database query, or a read of the shared key
    generation while this worker's cached copy is current; constant-time confirm."""
    api_key, seen = lookup_key(raw_key)
    if api_key is None:
        return None
    return confirm_key(raw_key, api_key, seen, key_generation())


def touch_last_used(api_key: ApiKey, *, now=None) -> None:
    """Record use at most once a minute so the hot path rarely writes."""
    now = now or timezone.now()
    if api_key.last_used_at is None or now - api_key.last_used_at >= LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now


def revoke_key(api_key: ApiKey, *, now=None) -> None:
    api_key.revoked_at = now or timezone.now()
    ApiKey.objects.filter(pk=api_key.pk).update(revoked_at=api_key.revoked_at)
    announce_key_change()
