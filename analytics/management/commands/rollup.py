"""``manage.py rollup [--rebuild] [--site DOMAIN]``: roll up closed buckets; run it from a timer."""

import time

from django.core.management.base import BaseCommand, CommandError

from accounts.models import Site
from analytics import rollups


class Command(BaseCommand):
    help = "Roll up closed time buckets (and rebuild those that received late events). Run every minute."

    def add_arguments(self, parser):
        parser.add_argument("--rebuild", action="store_true", help="drop and rebuild every rollup")
        parser.add_argument("--site", help="only this site (domain)")

    def handle(self, *args, rebuild: bool = False, site: str | None = None, verbosity: int = 1, **options):
        target = None
        if site:
            target = Site.objects.filter(domain=site).first()
            if target is None:
                raise CommandError(f"No site with domain {site!r}")
        started = time.perf_counter()
        run = rollups.rebuild if rebuild else rollups.refresh
        built = run(site=target, verbosity=verbosity - 1)
        if verbosity:
            self.stdout.write(f"{built} buckets rolled up in {time.perf_counter() - started:.1f} s")
