"""``manage.py rollup [--rebuild] [--site DOMAIN] [--jobs N]``: roll up closed buckets; run it from a timer."""

import os
import time

from django.core.management.base import BaseCommand, CommandError

from accounts.models import Site
from analytics import rollups


class Command(BaseCommand):
    help = "Roll up closed time buckets (and rebuild those that received late events). Run every minute."

    def add_arguments(self, parser):
        parser.add_argument("--rebuild", action="store_true", help="drop and rebuild every rollup")
        parser.add_argument("--site", help="only this site (domain)")
        parser.add_argument(
            "--jobs", type=int, default=os.cpu_count() or 1,
            help="PostgreSQL: build buckets in this many processes (default: one per CPU); SQLite builds one at a time",
        )  # fmt: skip

    def handle(self, *args, rebuild: bool = False, site: str | None = None, jobs: int = 1, verbosity: int = 1, **options):
        if jobs < 1:
            raise CommandError("--jobs must be at least 1")
        target = None
        if site:
            target = Site.objects.filter(domain=site).first()
            if target is None:
                raise CommandError(f"No site with domain {site!r}")
        started = time.perf_counter()
        run = rollups.rebuild if rebuild else rollups.refresh
        built = run(site=target, verbosity=verbosity - 1, jobs=jobs)
        if verbosity:
            self.stdout.write(f"{built} buckets rolled up in {time.perf_counter() - started:.1f} s")
