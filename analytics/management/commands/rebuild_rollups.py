"""``manage.py rebuild_rollups``: drop every rollup and rebuild it from the events."""

from analytics.management.commands.rollup import Command as RollupCommand


class Command(RollupCommand):
    help = "Drop and rebuild every rollup from the events (same as rollup --rebuild)."

    def handle(self, *args, **options):
        options["rebuild"] = True
        return super().handle(*args, **options)
