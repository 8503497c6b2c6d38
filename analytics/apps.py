from django.apps import AppConfig


class AnalyticsConfig(AppConfig):
    name = "analytics"

    def ready(self):
        from events.signals import events_deleted

        from . import rollups

        events_deleted.connect(rollups.forget_deleted, dispatch_uid="analytics-forget-deleted-events")
