from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from events.backups import BackupError, backup


class Command(BaseCommand):
    help = (
        "Write a consistent backup of the whole database to FILE while the server runs: SQLite's online "
        "backup API (an SQLite file), or pg_dump's custom format on PostgreSQL. Restore it with manage.py restore."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="where to write the backup (a new file)")
        parser.add_argument("--overwrite", action="store_true", help="replace FILE if it exists")

    def handle(self, *args, file, overwrite=False, **options):
        try:
            summary = backup(Path(file), overwrite=overwrite)
        except BackupError as exc:
            raise CommandError(str(exc)) from None
        held = ", ".join(f"{count} {name}" for name, count in summary.counts.items() if count is not None)
        self.stdout.write(f"Backed up to {summary.path} ({summary.bytes:,} bytes{'; ' + held if held else ''})")
