"""The fixed cast: a site with a full key, the same site with narrowed keys, an outsider.

Every test gets its own rate-limit namespace and empty in-process caches, so nothing leaks
between tests.
"""

import uuid

import pytest
from rest_framework.test import APIClient

from accounts.keys import create_api_key, forget_cached_keys
from accounts.models import SCOPE_ANALYTICS_READ, SCOPE_EVENTS_WRITE, Site
from events.collector import forget_cached_sites
from events.visitors import forget_cached_salts
from infinity import counters


@pytest.fixture(autouse=True)
def _isolated_rate_limits(settings, tmp_path):
    settings.RATELIMIT_KEY_PREFIX = f"test:{uuid.uuid4().hex}"
    settings.RATELIMIT_STORE_PATH = str(tmp_path / "ratelimit.sqlite3")
    counters.reset_store()
    yield
    counters.reset_store()


@pytest.fixture(autouse=True)
def _fresh_caches():
    """The collector's site cache, the salt cache and the key cache are per process: no test
    sees another's."""
    forget_cached_sites()
    forget_cached_salts()
    forget_cached_keys()
    yield
    forget_cached_sites()
    forget_cached_salts()
    forget_cached_keys()


class Cast:
    """Raw keys and sites for a story: owner (full key), narrowed keys, outsider."""

    def __init__(self):
        self.site = Site.objects.create(domain="example.com", name="Example")
        _, self.key = create_api_key(site=self.site, name="full")
        _, self.events_key = create_api_key(site=self.site, name="events only", scopes=[SCOPE_EVENTS_WRITE])
        _, self.analytics_key = create_api_key(site=self.site, name="analytics only", scopes=[SCOPE_ANALYTICS_READ])
        self.outsider_site = Site.objects.create(domain="outsider.org", name="Outsider")
        _, self.outsider_key = create_api_key(site=self.outsider_site, name="outsider")


@pytest.fixture
def cast(db):
    return Cast()


class Api:
    """An APIClient that speaks JSON and carries a Bearer key."""

    def __init__(self, key=None):
        self.client = APIClient()
        self.key = key

    def _headers(self, key, headers):
        key = self.key if key is None else key
        out = {"HTTP_AUTHORIZATION": f"Bearer {key}"} if key else {}
        out.update(headers or {})
        return out

    def post(self, path, body=None, *, key=None, raw=None, content_type="application/json", headers=None):
        import json

        data = raw if raw is not None else json.dumps(body if body is not None else {})
        return self.client.generic("POST", path, data, content_type=content_type, **self._headers(key, headers))

    def get(self, path, params=None, *, key=None, headers=None):
        return self.client.get(path, params or {}, **self._headers(key, headers))


@pytest.fixture
def api(cast):
    return Api(cast.key)


@pytest.fixture
def anon(db):
    return Api(key="")
