"""``manage.py partition_events``: convert an existing PostgreSQL installation's events table into
the table partitioned by month (docs/operations.md#partitions). Writers wait while it runs."""

import time

from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from events.partitions import ensure_partitions, partition_events


class Command(BaseCommand):
    help = "PostgreSQL: convert the events table into one partitioned by month (stop ingest first: writers wait)."

    def handle(self, *args, verbosity=1, **options):
        if connection.vendor != "postgresql":
            raise CommandError("partitions are for PostgreSQL; SQLite keeps one events table")
        started = time.perf_counter()

        def progress(month, copied):
            if verbosity and month is not None:
                self.stdout.write(f"{month:%Y-%m}: {copied} events copied ({time.perf_counter() - started:.1f} s)")

        copied = partition_events(progress=progress)
        if copied is None:
            created = ensure_partitions()
            self.stdout.write(f"already partitioned; {len(created)} partitions created")
            return
        self.stdout.write(f"events table partitioned by month: {copied} events in {time.perf_counter() - started:.1f} s")
