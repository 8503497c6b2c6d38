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

from infinity.counters import get_store

from .models import ALL_SCOPES, DEFAULT_SCOPES, ApiKey, Site

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
    return hmac.digest(_key_material(settings.SECRET_KEY), raw_key.encode(), "sha256").hex()


def _digest(raw_key: str) -> str | None:
    """The stored form of a well-formed raw key; None for anything that cannot be one."""
    if not raw_key.startswith(KEY_PREFIX) or len(raw_key) > 200:
        return None
    return _hash_secret(raw_key)


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


def create_api_key(*, site: Site, name: str = "", scopes=DEFAULT_SCOPES) -> tuple[ApiKey, str]:
    """Create and save a key; returns (key, raw key)."""
    api_key = ApiKey(site=site, name=name, scopes=parse_scopes(scopes))
    raw = assign_new_secret(api_key)
    api_key.save()
    return api_key, raw


def generation_key() -> str:
    """The shared counter that every change to a key or site bumps."""
    return f"{settings.RATELIMIT_KEY_PREFIX}:keys:generation"


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


class KeyCache:
    """This worker's copies of keys, each trusted while the shared key generation is unchanged.

    Every change to a key or site bumps the generation (``announce_key_change``), so a
    revocation applies to the next request on every worker, and a cached key costs a read of
    the generation but no database query: ``lookup`` reads it, or a throttle reads it in its
    own round trip and hands it to ``confirm``. When the shared store cannot be read, nothing
    is trusted: every lookup reads the database.
    """

    def __init__(self):
        self.entries: dict[str, tuple[ApiKey, int, float]] = {}  # digest → (key, generation, monotonic time)

    def lookup(self, raw_key: str) -> ApiKey | None:
        """The active key for ``raw_key``, or None."""
        digest = _digest(raw_key)
        if digest is None:
            return None
        # The generation is read before any load: a change during the load is seen next time.
        return self._current(digest, get_store().read(generation_key()))

    def cached(self, raw_key: str) -> ApiKey | None:
        """This worker's copy of the key for ``raw_key``, not yet confirmed: for a caller that
        confirms it with ``confirm`` before the request does anything with it. Without a copy,
        ``lookup``."""
        digest = _digest(raw_key)
        entry = self.entries.get(digest) if digest is not None else None
        if entry is None or not entry[0].is_active:
            return self.lookup(raw_key)
        return entry[0]

    def confirm(self, api_key: ApiKey, generation: int | None) -> ApiKey | None:
        """``api_key`` as of the key ``generation`` just read from the shared store (None: it
        could not be read): the same object while unchanged, else the database's copy if
        it is still active, else None."""
        return self._current(api_key.secret_hash, generation)

    def _current(self, digest: str, generation: int | None) -> ApiKey | None:
        entry = self.entries.get(digest)
        if entry is not None and entry[1] == generation and time.monotonic() - entry[2] < CACHE_SECONDS:
            api_key = entry[0]
        else:
            api_key = ApiKey.objects.select_related("site").filter(secret_hash=digest).first()
            if generation is None:
                self.entries.clear()
            elif api_key is not None:
                if len(self.entries) >= CACHE_MAX_ENTRIES:
                    self.entries.clear()
                self.entries[digest] = (api_key, generation, time.monotonic())
        if api_key is None or not hmac.compare_digest(api_key.secret_hash, digest) or not api_key.is_active:
            return None
        return api_key

    def clear(self) -> None:
        self.entries.clear()


key_cache = KeyCache()
verify_key = key_cache.lookup
forget_cached_keys = key_cache.clear


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
