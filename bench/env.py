"""Environment shared by the benchmark commands and the servers they start.

The generator, the harness and the gunicorn it launches must agree on SECRET_KEY (API keys
and visitor ids are keyed hashes of it), so the harness fixes a bench-only default when the
caller has not set one. DEBUG stays off: with DEBUG on, Django keeps every SQL query in
memory and the figures would be wrong.
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH_SECRET = "bench-only-secret-key-never-use-in-production-0123456789"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"


def defaults():
    os.environ.setdefault("SECRET_KEY", BENCH_SECRET)
    os.environ.setdefault("ALLOWED_HOSTS", "127.0.0.1,localhost")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "infinity.settings")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


def setup_django():
    defaults()
    import django

    django.setup()


def database_url(args_db: str | None = None) -> str:
    """``--db NAME`` (a PostgreSQL database on 127.0.0.1) or DATABASE_URL."""
    if args_db:
        if "://" in args_db:
            return args_db
        return f"postgres://root@127.0.0.1:5432/{args_db}"
    url = os.environ.get("DATABASE_URL")
    if not url:
        raise SystemExit("Set DATABASE_URL (e.g. postgres://root@127.0.0.1:5432/bench_1m) or pass --db NAME")
    return url


def ensure_postgres_database(url: str) -> None:
    """Create the PostgreSQL database named in ``url`` if it does not exist yet."""
    from urllib.parse import urlsplit

    import psycopg

    parts = urlsplit(url)
    if parts.scheme not in {"postgres", "postgresql", "pgsql"}:
        return
    name = parts.path.lstrip("/")
    admin = parts._replace(scheme="postgresql", path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')
            print(f"created database {name}")
