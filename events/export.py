"""Raw events out, one format for every way out and back in: ``GET /api/v1/export``,
``manage.py export_events`` and ``manage.py import_events`` (``events.importers``).

A record has the columns ``COLUMNS``, in that order: a CSV file's header, or the keys of one
JSON object per line (NDJSON). ``visitor`` and ``session`` are the stored 64-bit hashes,
written as decimal text (JSON numbers past 2^53 lose digits in many readers); empty or null
when the event has none. ``metadata`` is a JSON object (in CSV, its JSON text). Times are
ISO 8601 UTC with microseconds. docs/api.md ("Export") describes each column.

Records come in (timestamp, event id) order, read in constant memory (``storage.stream_events``).
"""

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from accounts.models import Site

from . import storage
from .models import Event, Kind

FORMATS = {"ndjson": "application/x-ndjson; charset=utf-8", "csv": "text/csv; charset=utf-8"}
# (record column, Event field), in the order of the file.
LAYOUT = (
    ("event_id", "id"), ("type", "kind"), ("event_name", "name"), ("timestamp", "occurred_at"),
    ("received_at", "received_at"), ("visitor", "visitor"), ("session", "session"), ("hostname", "hostname"),
    ("path", "path"), ("referrer", "referrer"), ("source", "source"), ("utm_source", "utm_source"),
    ("utm_medium", "utm_medium"), ("utm_campaign", "utm_campaign"), ("utm_term", "utm_term"),
    ("utm_content", "utm_content"), ("country", "country"), ("browser", "browser"), ("os", "os"),
    ("device", "device"), ("metadata", "metadata"), ("price", "price"), ("currency", "currency"),
    ("quantity", "quantity"), ("product_name", "product_name"),
)  # fmt: skip
COLUMNS = tuple(column for column, _ in LAYOUT)
FIELDS = tuple(field for _, field in LAYOUT)
TYPE_NAMES = {int(kind): kind.label for kind in Kind}
_ID, _KIND, _OCCURRED, _RECEIVED, _VISITOR, _SESSION, _METADATA = (
    FIELDS.index(f) for f in ("id", "kind", "occurred_at", "received_at", "visitor", "session", "metadata")
)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Window:
    """Events with ``start <= timestamp < end`` (UTC)."""

    start: datetime
    end: datetime


def day_window(*, site: Site, start: date, end: date) -> Window:
    """Calendar days ``start``…``end`` (inclusive) in the site's timezone, as analytics counts them."""
    zone = ZoneInfo(site.timezone)
    return Window(datetime.combine(start, time(), zone).astimezone(UTC),
                  datetime.combine(end + timedelta(days=1), time(), zone).astimezone(UTC))  # fmt: skip


def _record_values(row: tuple) -> list:
    """A stored row's values as the record holds them (None where a column is empty)."""
    values = list(row)
    values[_ID] = Event.public_id(row[_ID])
    values[_KIND] = TYPE_NAMES[row[_KIND]]
    values[_OCCURRED] = iso(row[_OCCURRED])
    values[_RECEIVED] = iso(row[_RECEIVED])
    values[_VISITOR] = None if row[_VISITOR] is None else str(row[_VISITOR])
    values[_SESSION] = None if row[_SESSION] is None else str(row[_SESSION])
    return values


def ndjson_lines(rows) -> Iterator[str]:
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False).encode
    for row in rows:
        yield dumps(dict(zip(COLUMNS, _record_values(row), strict=True))) + "\n"


def csv_lines(rows) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False).encode
    for row in rows:
        values = _record_values(row)
        values[_METADATA] = dumps(values[_METADATA])
        writer.writerow(values)  # None is written as an empty field
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()


def export_chunks(*, site: Site, window: Window | None, format: str, chunk_bytes: int = 64 * 1024) -> Iterator[tuple[bytes, int]]:
    """The site's events in ``window`` (all of them for None) as UTF-8 ``format`` text, in pieces
    of about ``chunk_bytes``: (piece, events in it). A CSV header counts as no event."""
    rows = storage.stream_events(site.pk, None if window is None else (window.start, window.end), FIELDS)
    lines = ndjson_lines(rows) if format == "ndjson" else csv_lines(rows)
    pending, size = [], 0
    for line in lines:
        pending.append(line)
        size += len(line)
        if size >= chunk_bytes:
            yield "".join(pending).encode(), len(pending)
            pending, size = [], 0
    if pending:
        yield "".join(pending).encode(), len(pending)


def count_events(*, site: Site, window: Window | None) -> int:
    """How many events an export of ``window`` holds (for progress)."""
    rows = Event.objects.filter(site=site)
    if window is not None:
        rows = rows.filter(occurred_at__gte=window.start, occurred_at__lt=window.end)
    return rows.count()
