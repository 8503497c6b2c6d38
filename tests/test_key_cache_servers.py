"""Workers cache keys; a revocation still applies to the very next request on every worker.

Two real gunicorn processes share the database and the key generation (Redis, or the
SQLite store without Redis). Both serve a key until it is revoked here, in another process.
"""

import os

import pytest

from accounts.keys import create_api_key, revoke_key
from accounts.models import ApiKey
from infinity import counters

from .servers import gunicorn_servers, post_event

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def status(url, key):
    return post_event(url, key)[0]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("store", ["redis", "sqlite"])
def test_revocation_reaches_every_worker_on_the_next_request(cast, store, settings):
    settings.REDIS_URL = REDIS_URL if store == "redis" else None  # this process announces where the servers look
    counters.reset_store()
    _, raw = create_api_key(site=cast.site, name="to revoke")
    with gunicorn_servers(2, REDIS_URL=REDIS_URL if store == "redis" else None) as urls:
        assert [status(url, raw) for url in urls for _ in range(3)] == [201] * 6  # cached in both
        revoke_key(ApiKey.objects.get(name="to revoke"))
        assert [status(url, raw) for url in urls] == [401, 401]
        assert [status(url, cast.key) for url in urls] == [201, 201]  # the others still work
        ApiKey.objects.filter(name="full").delete()  # a deletion through the ORM is announced too
        assert [status(url, cast.key) for url in urls] == [401, 401]
