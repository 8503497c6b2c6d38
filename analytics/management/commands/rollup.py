"""``manage.py rollup [--rebuild] [--site DOMAIN] [--jobs N] [--every SECONDS [--runs N]]``: roll up
closed buckets, once (from a timer) or every ``SECONDS`` until stopped (``scripts/serve`` runs it so)."""

import logging
import os
import signal
import threading
import time

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, connections

from accounts.management.sites import site_named
from analytics import rollups
from events.idempotency import forget_expired_keys
from events.partitions import ensure_partitions
from events.retention import apply_retention
from infinity.progress import Progress

logger = logging.getLogger("analytics.rollup")


class Command(BaseCommand):
    help = "Roll up closed time buckets (and rebuild those that received late events). Run every minute."

    def add_arguments(self, parser):
        parser.add_argument("--rebuild", action="store_true", help="drop and rebuild every rollup")
        parser.add_argument("--site", help="only this site (domain)")
        parser.add_argument(
            "--jobs", type=int, default=os.cpu_count() or 1,
            help="PostgreSQL: build buckets in this many processes (default: one per CPU); SQLite builds one at a time",
        )  # fmt: skip
        parser.add_argument(
            "--every", type=float, metavar="SECONDS",
            help="keep running: refresh every SECONDS (from the start of one run to the next) until SIGTERM/SIGINT; "
            "a failed run is logged and the next one goes ahead",
        )  # fmt: skip
        parser.add_argument("--runs", type=int, help="with --every: stop after this many runs")

    def handle(self, *args, rebuild=False, site=None, jobs=1, every=None, runs=None, verbosity=1, **options):
        if jobs < 1:
            raise CommandError("--jobs must be at least 1")
        if every is not None and not every > 0:
            raise CommandError("--every must be a positive number of seconds")
        if every is not None and rebuild:
            raise CommandError("--every refreshes; --rebuild is a one-off")
        if runs is not None and (every is None or runs < 1):
            raise CommandError("--runs needs --every and at least 1")
        target = site_named(site) if site else None
        if every is None:  # a one-off run, maybe minutes long: show its progress
            with Progress("rollups", unit="bucket", enabled=verbosity > 0) as progress:
                self._run(rollups.rebuild if rebuild else rollups.refresh, target, jobs, verbosity, progress)
            return
        stop = threading.Event()
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: stop.set())
        done = 0
        while not stop.is_set():
            started = time.monotonic()
            try:
                self._run(rollups.refresh, target, jobs, verbosity)
            except Exception:  # the database restarting, say: keep the loop, try again next time
                logger.exception("rollup run failed; next in %s s", every)
                connections.close_all()
            done += 1
            if runs is not None and done >= runs:
                break
            stop.wait(max(0.0, every - (time.monotonic() - started)))

    def _run(self, run, target, jobs, verbosity, progress=None):
        started = time.perf_counter()
        if run is rollups.refresh:
            self._keep_events(target, verbosity)
        built = run(site=target, verbosity=verbosity - 1, jobs=jobs, progress=progress)
        forget_expired_keys()  # the timer every installation runs is where idempotency keys expire
        if verbosity:
            self.stdout.write(f"{built} buckets rolled up in {time.perf_counter() - started:.1f} s")

    def _keep_events(self, target, verbosity):
        """Before the buckets: the coming months' partitions, then retention (so no expired day is
        rolled up). A failure is logged and the rollups go ahead."""
        try:
            created = ensure_partitions()
            removed = apply_retention(site=target)
        except DatabaseError:
            logger.exception("partitions or retention failed; rollups go ahead")
            return
        if verbosity and (created or removed.rows or removed.partitions):
            months = ", ".join(f"{m:%Y-%m}" for m in removed.partitions) or "none"
            self.stdout.write(f"{len(created)} partitions created; retention: {removed.rows} events deleted, "
                              f"partitions dropped: {months}")  # fmt: skip
