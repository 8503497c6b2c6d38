"""``manage.py apply_retention [--site DOMAIN]``: delete the events (and rollups) older than each
site's ``retention_days`` now; the rollup timer does the same on every run."""

import time

from django.core.management.base import BaseCommand

from accounts.management.sites import site_named
from events.retention import apply_retention


class Command(BaseCommand):
    help = "Delete every site's events older than its retention_days, with their rollups (the rollup timer does it too)."

    def add_arguments(self, parser):
        parser.add_argument("--site", help="only this site (domain); partitions are dropped only in a run over all sites")

    def handle(self, *args, site=None, **options):
        target = site_named(site) if site else None
        started = time.perf_counter()
        removed = apply_retention(site=target)
        months = ", ".join(f"{m:%Y-%m}" for m in removed.partitions) or "none"
        self.stdout.write(f"{removed.rows} events deleted, partitions dropped: {months} ({time.perf_counter() - started:.1f} s)")
