"""Real server processes (gunicorn) against the test database, for load and fault tests.

Servers are started by ``bench.servers.running_server`` (the benchmarks' launcher) with the
production settings module and an environment pointing at this test process's database.
"""

import contextlib
import http.client
import json
from urllib.parse import urlsplit

from django.conf import settings
from django.db import connection

from bench.servers import running_server


def database_url():
    """A DATABASE_URL pointing at the database this test process is using."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@contextlib.contextmanager
def gunicorn_servers(count=1, *, workers=1, server="gunicorn", **env):
    """Start ``count`` gunicorn instances sharing this test's database and rate-limit namespace;
    yield their base URLs; stop them. ``REDIS_URL=None`` (the default) runs them without Redis."""
    env = {
        "DEBUG": "true",
        "SECRET_KEY": settings.SECRET_KEY,
        "DATABASE_URL": database_url(),
        "RATELIMIT_KEY_PREFIX": settings.RATELIMIT_KEY_PREFIX,
        "RATELIMIT_STORE_PATH": settings.RATELIMIT_STORE_PATH,
        "REDIS_URL": None,
        **env,
    }
    with contextlib.ExitStack() as stack:
        yield [
            stack.enter_context(
                running_server(
                    server=server, workers=workers, env=env, settings_module="infinity.settings", ready_path="/api/v1/schema"
                )
            )
            for _ in range(count)
        ]


def post_event(url, key, name="e"):
    """``POST /api/v1/events`` to a server over real HTTP; (status, headers, parsed body)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request("POST", "/api/v1/events", json.dumps({"event_name": name}),
                     {"Authorization": f"Bearer {key}", "Content-Type": "application/json"})  # fmt: skip
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), json.loads(response.read() or b"null")
    finally:
        conn.close()


def documented_env(data_dir, **overrides):
    """The production environment of ``deploy/env.example``, with a generated SECRET_KEY (as its
    comment says to make one), this test's database, the test Redis and ``data_dir``."""
    import os
    import secrets

    from bench.env import ROOT

    env = {}
    for line in (ROOT / "deploy" / "env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            env[name.strip()] = value.strip()
    env.update(
        SECRET_KEY=secrets.token_urlsafe(50),
        DATABASE_URL=database_url(),
        REDIS_URL=os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
        RATELIMIT_KEY_PREFIX=settings.RATELIMIT_KEY_PREFIX,
        DATA_DIR=str(data_dir),
    )
    env.update(overrides)
    return env
