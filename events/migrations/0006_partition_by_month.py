"""PostgreSQL: a new installation's events table becomes partitioned by month (events.partitions).

An installation that already holds events keeps its table until the operator runs
``manage.py partition_events``, which copies every row: migrate must not hold the table for that
long unannounced. SQLite keeps a plain table.
"""

import sys

from django.db import migrations


def partition_if_empty(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    from events import storage
    from events.partitions import partition_events

    with schema_editor.connection.cursor() as cur:
        cur.execute(f"SELECT EXISTS (SELECT 1 FROM {storage.TABLE})")
        (held,) = cur.fetchone()
    if not held:
        partition_events()
    elif not storage.PARTITIONS["postgresql"].is_partitioned():
        sys.stdout.write("\n  The events table holds events: run `manage.py partition_events` to partition it by month.\n")


def unpartition(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    from events import storage

    if storage.PARTITIONS["postgresql"].is_partitioned():
        storage.PARTITIONS["postgresql"].unpartition()


class Migration(migrations.Migration):
    dependencies = [("events", "0005_idempotency_keys")]

    operations = [migrations.RunPython(partition_if_empty, unpartition)]
