from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from events.backups import BackupError, restore


class Command(BaseCommand):
    help = (
        "Load a backup made by manage.py backup into the configured database: a new SQLite file, or a new "
        "(empty) PostgreSQL database. Stop the server first."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="a file written by manage.py backup")
        parser.add_argument("--replace", action="store_true", help="overwrite a database that holds data (server stopped)")

    def handle(self, *args, file, replace=False, **options):
        try:
            summary = restore(Path(file), replace=replace)
        except BackupError as exc:
            raise CommandError(str(exc)) from None
        held = ", ".join(f"{count} {name}" for name, count in summary.counts.items() if count is not None)
        self.stdout.write(f"Restored {summary.path} ({held})")
