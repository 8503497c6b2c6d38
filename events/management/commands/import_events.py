"""``manage.py import_events --site DOMAIN [--format ndjson|csv|umami] FILE``."""

import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from accounts.management.sites import site_named
from events.importers import FORMATS, BadRecord, detect_format, import_file
from infinity.progress import Progress


class Command(BaseCommand):
    help = (
        "Import events into a site from FILE: a file of manage.py export_events or GET /api/v1/export (NDJSON or "
        "CSV), or Umami's website_event CSV export (docs/import.md). Running it again stores nothing twice."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="the file to read")
        parser.add_argument("--site", required=True, help="the site's domain (it must exist)")
        parser.add_argument("--format", choices=FORMATS, help="default: recognised from the file's first line")

    def handle(self, *args, file, site, format=None, **options):
        target = site_named(site)
        path = Path(file)
        if not path.is_file():
            raise CommandError(f"{path} is not a file")
        with open(path, encoding="utf-8-sig", newline="") as f:
            format = format or detect_format(path, f.read(64 * 1024))
            f.seek(0)
            total = sum(1 for _ in f) - (format != "ndjson")  # lines, for the bar (a CSV header is none)
            f.seek(0)
            stream = sys.stderr if self.stderr.isatty() else self.stderr
            progress = Progress(f"import {target.domain}", total=max(total, 0), unit="record", stream=stream)
            try:
                summary = import_file(f, site=target, format=format, progress=progress.update)
            except BadRecord as exc:
                progress.close()
                raise CommandError(f"{path}: {exc}") from None
            except UnicodeDecodeError as exc:
                progress.close()
                raise CommandError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        seconds = progress.close()
        skipped = "".join(f"; skipped {n:,} ({reason})" for reason, n in summary.skipped.items())
        rate = summary.read / max(seconds, 1e-9)
        self.stdout.write(
            f"Imported {summary.stored:,} new events into {target.domain} from {summary.read:,} {format} records "
            f"({summary.present:,} already there{skipped}) in {seconds:.1f} s ({rate:,.0f} records/s)"
        )
