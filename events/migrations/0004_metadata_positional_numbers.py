import events.models
from django.db import migrations, models


class Migration(migrations.Migration):
    """The metadata field's encoder (``MetadataEncoder``) is Python-side only: state only, so
    SQLite does not rebuild the events table for it."""

    dependencies = [
        ("events", "0003_drop_redundant_site_index"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="event",
                    name="metadata",
                    field=models.JSONField(blank=True, default=dict, encoder=events.models.MetadataEncoder),
                ),
            ],
        ),
    ]
