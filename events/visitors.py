"""Visitor identities as 64-bit keyed hashes: nothing raw is ever stored."""

import hashlib
import hmac
from functools import lru_cache

from django.conf import settings


@lru_cache(maxsize=4)
def _caller_key(secret: str) -> bytes:
    return hashlib.sha256(b"infinity-visitor:" + secret.encode()).digest()


def hash_to_int64(key: bytes, message: bytes) -> int:
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def hash_caller_visitor(*, site_id: int, visitor_id: str) -> int:
    """A caller-supplied ``visitor_id`` is a stable identity, hashed per site."""
    return hash_to_int64(_caller_key(settings.SECRET_KEY), f"{site_id}\x00{visitor_id}".encode())
