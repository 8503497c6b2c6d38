"""Events in from a file (``manage.py import_events``): the export format (``events.export``)
as NDJSON or CSV, or Umami's ``website_event`` CSV export.

1. ``read_records`` yields each record of the file as a dict, with its line number.
2. ``export_row`` or ``umami_row`` turns a record into Event fields for the target site, or
   raises ``BadRecord`` naming the line and the value.
3. ``import_file`` stores the rows a chunk at a time (``storage.import_rows``): one COPY into a
   scratch table and one INSERT per chunk on PostgreSQL, each chunk in a transaction of its own.

Re-running an import stores nothing twice: an event counts as already there when the site holds
as many events with the same time, arrival time, kind, name, visitor, session and path as the
chunk does (identical twins, such as equal items of one batch, stay twins). A chunk ends only
where the time changes, so twins from a file in time order (every export is) meet in one chunk.
Imported events get new ids, above every rolled-up bucket's, so the rollup timer notices them
as late events and rebuilds what they fall into.
"""

import csv
import json
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from accounts.models import Site

from . import enrich, storage
from .export import COLUMNS, TYPE_NAMES
from .models import Event, Kind
from .sessions import new_session_id
from .visitors import hash_caller_visitor, hash_to_int64

CHUNK = 20_000
FORMATS = ("ndjson", "csv", "umami")
KINDS = {name: kind for kind, name in TYPE_NAMES.items()}
INT64 = (-(2**63), 2**63 - 1)
_LIMITS = {f.name: f.max_length for f in Event._meta.concrete_fields if getattr(f, "max_length", None)}
_TEXT = ("hostname", "path", "referrer", "source", "utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content",
         "country", "browser", "os", "device", "currency", "product_name")  # fmt: skip
csv.field_size_limit(sys.maxsize if sys.maxsize < 2**63 else 2**31 - 1)


class BadRecord(ValueError):
    """A record that cannot be imported; the message names its line and the value."""


@dataclass
class Summary:
    read: int = 0  # records in the file
    stored: int = 0  # new events
    present: int = 0  # already there (a re-run)
    skipped: dict = field(default_factory=dict)  # records not imported, by reason (Umami's other event types)


def detect_format(path: Path, head: str) -> str:
    """``umami`` for a CSV whose header has Umami's columns, else ``csv`` or ``ndjson``."""
    first = head.split("\n", 1)[0]
    if first.lstrip().startswith(("{", "[")):
        return "ndjson"
    header = {name.strip().strip('"') for name in first.split(",")}
    return "umami" if {"website_id", "url_path", "event_type"} <= header else "csv"


def read_records(lines, format: str) -> Iterator[tuple[int, dict]]:
    """(line number, record) for each record of a text file; BadRecord for one that does not parse."""
    if format == "ndjson":
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as exc:
                raise BadRecord(f"line {number}: not JSON ({exc})") from None
            if not isinstance(record, dict):
                raise BadRecord(f"line {number}: a record must be a JSON object")
            yield number, record
        return
    reader = csv.DictReader(lines)
    if reader.fieldnames is None:
        return
    required = {"created_at", "event_type", "session_id"} if format == "umami" else {"type", "event_name", "timestamp"}
    missing = required - set(reader.fieldnames)
    if missing:
        raise BadRecord(f"line 1: the header lacks {', '.join(sorted(missing))}")
    for record in reader:
        if None in record:
            raise BadRecord(f"line {reader.line_num}: more fields than the header names")
        yield reader.line_num, record


def _time(value, name: str) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be an ISO 8601 date-time")
    text = value.strip().replace(" ", "T", 1)
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{name} must be an ISO 8601 date-time, got {value[:40]!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _integer(value, name: str, low: int, high: int) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,19}", value.strip()):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer from {low} to {high}")
    return value


def _text(value, name: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{name} must be text")
    if "\x00" in value:
        raise ValueError(f"{name} must not contain NUL")
    if len(value) > _LIMITS[name]:
        raise ValueError(f"{name} must be at most {_LIMITS[name]} characters")
    return value


def export_row(record: dict, *, site: Site) -> dict:
    """A record of the export format → Event fields on ``site`` (its ``event_id`` is not kept)."""
    unknown = set(record) - set(COLUMNS)
    if unknown:
        raise ValueError(f"unknown column {sorted(unknown)[0][:40]!r}")
    kind = KINDS.get(record.get("type"))
    if kind is None:
        raise ValueError(f"type must be one of {', '.join(KINDS)}")
    name = _text(record.get("event_name"), "name")
    if not name:
        raise ValueError("event_name must not be empty")
    metadata = record.get("metadata") or {}
    if isinstance(metadata, str):
        try:
            metadata = json.loads(metadata)
        except ValueError:
            raise ValueError("metadata must be a JSON object") from None
    if not isinstance(metadata, dict):
        raise ValueError("metadata must be a JSON object")
    occurred = _time(record.get("timestamp"), "timestamp")
    received = record.get("received_at")
    row = {
        "site_id": site.pk,
        "kind": kind,
        "name": name,
        "occurred_at": occurred,
        "received_at": _time(received, "received_at") if received else occurred,
        "visitor": _integer(record.get("visitor"), "visitor", *INT64),
        "session": _integer(record.get("session"), "session", *INT64),
        "metadata": metadata,
        "price": _integer(record.get("price"), "price", *INT64),
        "quantity": _integer(record.get("quantity"), "quantity", -(2**31), 2**31 - 1),
    }
    row.update((column, _text(record.get(column), column)) for column in _TEXT)
    return row


# --- Umami --------------------------------------------------------------------------------

UMAMI_PAGEVIEW, UMAMI_EVENT = "1", "2"
_UMAMI_BROWSERS = {
    "chrome": "Chrome", "crios": "Chrome", "chromium-webview": "Chrome WebView", "firefox": "Firefox", "fxios": "Firefox",
    "safari": "Safari", "ios": "Safari", "ios-webview": "Safari", "edge-chromium": "Edge", "edge": "Edge",
    "edge-ios": "Edge", "opera": "Opera", "opera-mini": "Opera Mini", "samsung": "Samsung Internet",
    "yandexbrowser": "Yandex Browser", "facebook": "Facebook", "instagram": "Instagram", "silk": "Amazon Silk",
    "brave": "Brave", "android": "Android", "ie": "IE",
}  # fmt: skip
_UMAMI_OS = {"mac os": "macOS", "android os": "Android", "chrome os": "ChromeOS", "ios": "iOS", "linux": "Linux"}
_UMAMI_DEVICES = {"desktop": "desktop", "laptop": "desktop", "mobile": "mobile", "tablet": "tablet"}
_SESSION_KEY = b"infinity-umami-visit"


def _umami_os(name: str) -> str:
    lowered = name.strip().lower()
    if lowered.startswith("windows"):
        return "Windows"
    return _UMAMI_OS.get(lowered, name.strip())[: _LIMITS["os"]]


def umami_row(record: dict, *, site: Site) -> dict | None:
    """A row of Umami's ``website_event`` CSV → Event fields on ``site``; None for the event types
    other than page views (1) and custom events (2). docs/import.md has the mapping."""
    event_type = (record.get("event_type") or "").strip()
    if event_type not in (UMAMI_PAGEVIEW, UMAMI_EVENT):
        return None
    occurred = _time(record.get("created_at"), "created_at")
    person = (record.get("distinct_id") or "").strip() or (record.get("session_id") or "").strip()
    if not person:
        raise ValueError("session_id is empty")
    visitor = hash_caller_visitor(site_id=site.pk, visitor_id=f"umami:{person}")
    visit = (record.get("visit_id") or "").strip()
    session = (hash_to_int64(_SESSION_KEY, f"{site.pk}:{visit}".encode()) & (2**63 - 1) if visit
               else new_session_id(visitor=visitor, started_at=occurred))  # fmt: skip
    if event_type == UMAMI_PAGEVIEW:
        kind, name = Kind.PAGEVIEW, "pageview"
    else:
        kind, name = Kind.CUSTOM, _text((record.get("event_name") or "").strip(), "name")
        if not name:
            raise ValueError("event_name is empty for a custom event")
    hostname = enrich.bare_host((record.get("hostname") or "").strip())[: _LIMITS["hostname"]]
    utm = {column: (record.get(column) or "").strip()[: _LIMITS[column]] for column in enrich.UTM_FIELDS}
    referrer_host = (record.get("referrer_domain") or "").strip().lower()
    own = (
        not referrer_host
        or enrich.host_belongs_to(referrer_host, site.domain)
        or (hostname and enrich.bare_host(referrer_host) == hostname)
    )
    if utm["utm_source"]:
        source = enrich.source_for_tag(utm["utm_source"])
    else:
        source = "" if own else enrich.source_for_host(referrer_host)
    referrer = "" if own else f"https://{referrer_host}{(record.get('referrer_path') or '').strip()}"
    country = (record.get("country") or "").strip().upper()
    browser = (record.get("browser") or "").strip()
    return {
        "site_id": site.pk,
        "kind": int(kind),
        "name": name,
        "occurred_at": occurred,
        "received_at": occurred,
        "visitor": visitor,
        "session": session,
        "hostname": hostname,
        "path": _text((record.get("url_path") or "").strip() or "/", "path")[: _LIMITS["path"]],
        "referrer": referrer[: _LIMITS["referrer"]],
        "source": source,
        **utm,
        "country": country if re.fullmatch(r"[A-Z]{2}", country) else "",
        "browser": _UMAMI_BROWSERS.get(browser.lower(), browser.title())[: _LIMITS["browser"]],
        "os": _umami_os(record.get("os") or ""),
        "device": _UMAMI_DEVICES.get((record.get("device") or "").strip().lower(), ""),
        "metadata": {},
        "price": None,
        "currency": "",
        "quantity": None,
        "product_name": "",
    }


# --- storing ------------------------------------------------------------------------------


def _chunks(rows: Iterator[dict], size: int) -> Iterator[list[dict]]:
    """Lists of at least ``size`` rows (but the last), each ending where the time changes."""
    chunk: list[dict] = []
    for row in rows:
        if len(chunk) >= size and row["occurred_at"] != chunk[-1]["occurred_at"]:
            yield chunk
            chunk = []
        chunk.append(row)
    if chunk:
        yield chunk


def import_file(
    lines, *, site: Site, format: str, progress: Callable[[int], None] = lambda n: None, chunk: int = CHUNK
) -> Summary:
    """Import the records of a text file (an iterable of lines) into ``site``; ``progress(n)``
    after each chunk of ``n`` records. BadRecord (naming the line) stops it: the chunks before
    stay stored, and a re-run after fixing the file adds only the rest."""
    summary = Summary()
    convert = umami_row if format == "umami" else export_row

    def rows():
        for number, record in read_records(lines, format):
            summary.read += 1
            try:
                row = convert(record, site=site)
            except ValueError as exc:
                raise BadRecord(f"line {number}: {exc}") from None
            if row is None:
                reason = f"Umami event_type {str(record.get('event_type'))[:20]!r}"
                summary.skipped[reason] = summary.skipped.get(reason, 0) + 1
                continue
            yield row

    done = 0
    for part in _chunks(rows(), chunk):
        stored = storage.import_rows(part)
        summary.stored += stored
        summary.present += len(part) - stored
        progress(summary.read - done)
        done = summary.read
    progress(summary.read - done)
    return summary
