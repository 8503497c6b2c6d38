"""Rate limits: DRF throttles over counters shared by every worker (``infinity.counters``).

Fixed one-minute windows: each request increments ``<prefix>:<scope>:<ident>:<window>``
atomically and is allowed while the count is at most the limit, so the 1000th request of a
window passes and the 1001st is refused however many processes serve them. DRF's stock
throttles read, modify and write a cache entry, which loses counts under concurrency.

A counted request carries ``rate_limit`` (limit, remaining, reset) on its Django request;
``infinity.middleware.ApiEnvelopeMiddleware`` writes it as ``X-RateLimit-*`` headers and
counts against the client IP whatever no throttle counted (a refused key, an unknown path).
"""

import hashlib
import time
from typing import NamedTuple

from django.conf import settings
from rest_framework import exceptions
from rest_framework.throttling import BaseThrottle

from accounts.authentication import INVALID_KEY_MESSAGE
from accounts.keys import generation_key, key_cache
from infinity.clientip import client_ip
from infinity.counters import get_store

WINDOW = 60


class RateLimit(NamedTuple):
    limit: int
    remaining: int
    reset: int  # Unix seconds: the end of the window


def count(request, scope: str, ident: str, limit: int, *, now: float | None = None, read: str | None = None):
    """Count one request against ``scope``/``ident``, record its ``rate_limit``; whether it is
    allowed. With ``read`` (another counter's name): (allowed, its value or None), from the
    same round trip."""
    now = time.time() if now is None else now
    window = int(now // WINDOW)
    key = f"{settings.RATELIMIT_KEY_PREFIX}:{scope}:{ident}:{window}"
    if read is None:
        hits, value = get_store().hit(key, WINDOW + 5), None
    else:
        hits, value = get_store().hit_and_read(key, WINDOW + 5, read)
    django_request = getattr(request, "_request", request)  # DRF's Request wraps Django's
    django_request.rate_limit = RateLimit(limit, max(0, limit - hits), (window + 1) * WINDOW)
    return hits <= limit if read is None else (hits <= limit, value)


def count_anonymous(request) -> bool:
    return count(request, "anon", f"ip:{client_ip(request)}", settings.RATE_LIMITS["anon"])


class _PerMinute(BaseThrottle):
    def wait(self):
        return max(1, WINDOW - int(time.time()) % WINDOW)


class ScopedRateThrottle(_PerMinute):
    """Per API key for authenticated requests, per client IP otherwise.

    The key's count comes back with the key generation, which confirms the worker's cached
    copy of the key (``KeyCache.confirm``; ``ApiKeyAuthentication`` leaves it to a throttle
    that ``confirms_keys``): one round trip to the shared store for both. A key changed since
    it was cached is read again and the view's permissions see the current one.
    """

    scope = None
    confirms_keys = True

    def allow_request(self, request, view):
        if request.auth is None:
            return count_anonymous(request)
        ident, limit = f"key:{request.auth.pk}", settings.RATE_LIMITS[self.scope]
        allowed, generation = count(request, self.scope, ident, limit, read=generation_key())
        api_key = key_cache.confirm(request.auth, generation)
        if api_key is None:
            raise exceptions.AuthenticationFailed(INVALID_KEY_MESSAGE)
        if api_key is not request.auth:
            request.auth = api_key
            view.check_permissions(request)
        return allowed


class EventsThrottle(ScopedRateThrottle):
    scope = "events"


class AnalyticsThrottle(ScopedRateThrottle):
    scope = "analytics"


class CollectorThrottle(_PerMinute):
    """Per client IP for the public collector; the counter's name holds a hash of the IP, not the IP."""

    def allow_request(self, request, view):
        ip_hash = hashlib.sha256(f"{settings.SECRET_KEY}:{client_ip(request)}".encode()).hexdigest()[:20]
        return count(request, "collector", f"ip:{ip_hash}", settings.RATE_LIMITS["collector"])
