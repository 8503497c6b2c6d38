"""Backups of the whole database (events, sites, keys, users, rollups), and restoring one.

SQLite: SQLite's online backup API copies every page in one step, inside one read transaction,
so the copy is the database as of one moment while the server goes on writing (in WAL mode a
reader does not block the writer). PostgreSQL: ``pg_dump`` in its custom format, which reads
from one snapshot as well, and ``pg_restore`` back. ``manage.py backup`` and ``manage.py restore``
call these; docs/production.md ("Backups") has the procedures.
"""

import os
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path

from django.db import connections

SQLITE_MAGIC = b"SQLite format 3\x00"
PG_DUMP_MAGIC = b"PGDMP"
_COUNTED = {"sites": "accounts_site", "events": "events_event", "users": "auth_user"}


class BackupError(Exception):
    """A backup or restore that cannot be done, with what to do about it."""


@dataclass(frozen=True)
class Summary:
    path: Path
    bytes: int
    counts: dict  # sites, events, users: in the copy (SQLite) or None (PostgreSQL: see pg_restore --list)


def _database():
    connection = connections["default"]
    return connection.vendor, connection.settings_dict


def _fsync(path: Path) -> None:
    """Make ``path`` (and its entry in its folder) reach the disk before we say it is done."""
    with open(path, "rb") as f:
        os.fsync(f.fileno())
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def _counts(conn: sqlite3.Connection) -> dict:
    out = {}
    for name, table in _COUNTED.items():
        try:
            out[name] = conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
        except sqlite3.DatabaseError:
            out[name] = None
    return out


def _partial(path: Path) -> Path:
    return path.with_name(path.name + ".partial")


def backup(path: Path, *, overwrite: bool = False) -> Summary:
    """Write a consistent copy of the database to ``path`` (via ``path.partial``, renamed when
    complete and on disk), while the server may be writing."""
    path = Path(path).resolve()
    if path.exists() and not overwrite:
        raise BackupError(f"{path} exists; choose a new file name, or pass --overwrite")
    if not path.parent.is_dir():
        raise BackupError(f"{path.parent} is not a folder")
    vendor, settings = _database()
    partial = _partial(path)
    partial.unlink(missing_ok=True)
    try:
        if vendor == "sqlite":
            counts = _backup_sqlite(Path(settings["NAME"]), partial)
        elif vendor == "postgresql":
            counts = _backup_postgresql(settings, partial)
        else:
            raise BackupError(f"backups of {vendor} databases are not supported")
        _fsync(partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return Summary(path, path.stat().st_size, counts)


def _backup_sqlite(source: Path, target: Path) -> dict:
    if not source.exists():
        raise BackupError(f"the database {source} does not exist")
    src = sqlite3.connect(source, timeout=20)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)  # all pages in one step: one read transaction, one moment
        # One self-contained file: no -wal beside it.
        dst.execute("PRAGMA journal_mode=DELETE")
        if dst.execute("PRAGMA quick_check").fetchone()[0] != "ok":
            raise BackupError("the copy failed SQLite's quick_check")
        return _counts(dst)
    finally:
        dst.close()
        src.close()


def _libpq(settings) -> tuple[list[str], dict]:
    """``--dbname`` and the environment for a PostgreSQL client tool: the password goes in the
    environment, not on the command line (where ``ps`` shows it)."""
    parts = {"host": settings["HOST"], "port": settings["PORT"], "user": settings["USER"], "dbname": settings["NAME"]}
    for name in ("sslmode", "sslrootcert", "sslcert", "sslkey", "connect_timeout"):
        if settings["OPTIONS"].get(name):
            parts[name] = settings["OPTIONS"][name]
    quoted = {k: str(v).replace("\\", "\\\\").replace("'", "\\'") for k, v in parts.items() if v}
    conninfo = " ".join(f"{k}='{v}'" for k, v in quoted.items())
    env = dict(os.environ)
    if settings["PASSWORD"]:
        env["PGPASSWORD"] = settings["PASSWORD"]
    return [f"--dbname={conninfo}"], env


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BackupError(f"{name} is not installed (Debian: apt install postgresql-client)")
    return found


def _run(command: list[str], env: dict, what: str) -> str:
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise BackupError(f"{what} failed: {result.stderr.strip()[-2000:]}")
    return result.stdout


def _backup_postgresql(settings, target: Path) -> dict:
    dbname, env = _libpq(settings)
    _run([_tool("pg_dump"), "--format=custom", f"--file={target}", *dbname], env, "pg_dump")
    return {name: None for name in _COUNTED}


def restore(path: Path, *, replace: bool = False) -> Summary:
    """Load the backup at ``path`` into the configured database, which must be empty (a new
    database, or a new SQLite file) unless ``replace``. Stop the server first."""
    path = Path(path).resolve()
    if not path.is_file():
        raise BackupError(f"{path} is not a file")
    with open(path, "rb") as f:
        magic = f.read(16)
    vendor, settings = _database()
    kind = "sqlite" if magic.startswith(SQLITE_MAGIC) else "postgresql" if magic.startswith(PG_DUMP_MAGIC) else None
    if kind is None:
        raise BackupError(f"{path} is neither an SQLite backup nor a pg_dump archive (custom format)")
    if kind != vendor:
        raise BackupError(f"{path} is a {kind} backup and the configured database is {vendor}: restore it into a {kind} database")
    connections.close_all()
    if vendor == "sqlite":
        counts = _restore_sqlite(path, Path(settings["NAME"]), replace)
    else:
        counts = _restore_postgresql(path, settings, replace)
    return Summary(path, path.stat().st_size, counts)


def _restore_sqlite(source: Path, target: Path, replace: bool) -> dict:
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        if src.execute("PRAGMA quick_check").fetchone()[0] != "ok":
            raise BackupError(f"{source} is damaged (SQLite's quick_check failed)")
        if not src.execute("SELECT 1 FROM sqlite_master WHERE name = 'django_migrations'").fetchone():
            raise BackupError(f"{source} is an SQLite file but not a backup of this server's database")
        if target.exists() and not replace:
            with sqlite3.connect(f"file:{target}?mode=ro", uri=True) as existing:
                held = {k: v for k, v in _counts(existing).items() if v}
            if held:
                described = ", ".join(f"{v} {k}" for k, v in held.items())
                raise BackupError(
                    f"{target} holds data ({described}); restore into a new file, or stop the server and pass --replace"
                )
        target.parent.mkdir(parents=True, exist_ok=True)
        dst = sqlite3.connect(target, timeout=20)
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode=WAL")  # as the server runs it (infinity.settings)
            return _counts(dst)
        finally:
            dst.close()
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{source}: {exc}") from None
    finally:
        src.close()


def _restore_postgresql(source: Path, settings, replace: bool) -> dict:
    pg_restore = _tool("pg_restore")
    dbname, env = _libpq(settings)
    _run([pg_restore, "--list", str(source)], env, f"reading {source}")
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")
        tables = cursor.fetchone()[0]
    connections.close_all()
    if tables and not replace:
        raise BackupError(
            f"the database {settings['NAME']} has {tables} tables; restore into a new, empty database "
            "(createdb), or stop the server and pass --replace"
        )
    clean = ["--clean", "--if-exists"] if tables else []
    command = [pg_restore, "--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction", *clean, *dbname]
    _run([*command, str(source)], env, "pg_restore")
    with connections["default"].cursor() as cursor:
        cursor.execute("ANALYZE")  # pg_restore brings no planner statistics
        counts = {}
        for name, table in _COUNTED.items():
            cursor.execute(f'SELECT count(*) FROM "{table}"')
            counts[name] = cursor.fetchone()[0]
    return counts
