"""A covering index for ranking breakdown values from rollups (PostgreSQL only: index-only scans)."""

from django.db import migrations

CREATE = (
    "CREATE INDEX IF NOT EXISTS rollup_rank ON analytics_rollup "
    "(site_id, dimension, grain, start) INCLUDE (value, page_views, events, purchases, visits)"
)


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP INDEX IF EXISTS rollup_rank")


class Migration(migrations.Migration):
    dependencies = [("analytics", "0002_provisional_buckets")]
    operations = [migrations.RunPython(forwards, backwards)]
