"""Workers cache keys; a revocation still applies to the very next request on every worker.

Two real gunicorn processes share the database and the key generation (Redis, or the
SQLite store without Redis). Both serve a key until it is revoked here, in another process.
"""

import http.client
import json
import os
from urllib.parse import urlsplit

import pytest

from accounts.keys import create_api_key, revoke_key
from accounts.models import ApiKey
from infinity import throttling

from .servers import gunicorn_servers

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def post_event(url, key):
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request("POST", "/api/v1/events", json.dumps({"event_name": "e"}),
                     {"Authorization": f"Bearer {key}", "Content-Type": "application/json"})  # fmt: skip
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("store", ["redis", "sqlite"])
def test_revocation_reaches_every_worker_on_the_next_request(cast, store, settings):
    settings.REDIS_URL = REDIS_URL if store == "redis" else None  # this process announces where the servers look
    throttling.reset_store()
    _, raw = create_api_key(site=cast.site, name="to revoke")
    with gunicorn_servers(2, REDIS_URL=REDIS_URL if store == "redis" else None) as urls:
        assert [post_event(url, raw) for url in urls for _ in range(3)] == [201] * 6  # cached in both
        revoke_key(ApiKey.objects.get(name="to revoke"))
        assert [post_event(url, raw) for url in urls] == [401, 401]
        assert [post_event(url, cast.key) for url in urls] == [201, 201]  # the others still work
        ApiKey.objects.filter(name="full").delete()  # a deletion through the ORM is announced too
        assert [post_event(url, cast.key) for url in urls] == [401, 401]
