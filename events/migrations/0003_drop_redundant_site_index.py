"""The site foreign key needs no index of its own: both composite indexes lead with site_id.

Only the index is dropped (on PostgreSQL and SQLite alike): letting AlterField do it would
drop and re-validate the foreign key on PostgreSQL and copy the whole table on SQLite.
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
        ("events", "0002_tracker_salts_and_visitor_index"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="event",
                    name="site",
                    field=models.ForeignKey(
                        db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name="+", to="accounts.site"
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    'DROP INDEX IF EXISTS "events_event_site_id_d76095e0"',
                    reverse_sql='CREATE INDEX "events_event_site_id_d76095e0" ON "events_event" ("site_id")',
                ),
            ],
        ),
    ]
