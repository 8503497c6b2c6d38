"""``manage.py export_events --site DOMAIN [--start YYYY-MM-DD] [--end YYYY-MM-DD] [--format ndjson|csv] FILE``."""

import sys
from datetime import date
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from accounts.management.sites import site_named
from events.export import FORMATS, count_events, day_window, export_chunks
from infinity.progress import Progress


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise CommandError(f"{text!r} is not a date (YYYY-MM-DD)") from None


class Command(BaseCommand):
    help = (
        "Write a site's raw events to FILE (NDJSON or CSV, by its extension or --format), oldest first; "
        "manage.py import_events reads it back. --start and --end are days in the site's timezone, both inclusive."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="where to write (a new file; .ndjson or .csv)")
        parser.add_argument("--site", required=True, help="the site's domain")
        parser.add_argument("--start", help="first day, YYYY-MM-DD (default: the first event)")
        parser.add_argument("--end", help="last day, YYYY-MM-DD, inclusive (default: the last event)")
        parser.add_argument("--format", choices=list(FORMATS), help="default: from FILE's extension, else ndjson")
        parser.add_argument("--overwrite", action="store_true", help="replace FILE if it exists")

    def handle(self, *args, file, site, start=None, end=None, format=None, overwrite=False, **options):
        target = site_named(site)
        window = None
        if start or end:
            first, last = _date(start or "1970-01-01"), _date(end or "9000-12-31")
            if first > last:
                raise CommandError("--start must be on or before --end")
            window = day_window(site=target, start=first, end=last)
        path = Path(file)
        if path.exists() and not overwrite:
            raise CommandError(f"{path} exists; choose a new file name, or pass --overwrite")
        format = format or ("csv" if path.suffix.lower() == ".csv" else "ndjson")
        stream = sys.stderr if self.stderr.isatty() else self.stderr
        total = count_events(site=target, window=window)
        progress = Progress(f"export {target.domain}", total=total, unit="event", stream=stream)
        written = 0
        with open(path, "wb") as out:
            for piece, events in export_chunks(site=target, window=window, format=format, chunk_bytes=1 << 20):
                out.write(piece)
                written += events
                progress.update(events)
        seconds = progress.close()
        self.stdout.write(f"Exported {written:,} events of {target.domain} to {path} in {seconds:.1f} s "
                          f"({written / max(seconds, 1e-9):,.0f} events/s)")  # fmt: skip
