from django.contrib import admin
from django.urls import include, path

from accounts.passwords import limit_password_guesses
from analytics.views import AnalyticsView
from events.batch import BatchView
from events.collector import CollectorView, tracking_script
from events.export_api import ExportView
from events.views import EventView, PurchaseView
from events.visitors_api import VisitorEventsView, VisitorView
from infinity.health import HealthView
from infinity.openapi import DocsView, SchemaView

api = [
    path("events", EventView.as_view(), name="events"),
    path("events/purchase", PurchaseView.as_view(), name="purchase"),
    path("events/batch", BatchView.as_view(), name="events-batch"),
    path("analytics", AnalyticsView.as_view(), name="analytics"),
    path("collect", CollectorView.as_view(), name="collect"),
    path("health", HealthView.as_view(), name="health"),
    path("export", ExportView.as_view(), name="export"),
    # A visitor_id may hold slashes (hence <path:>); the events route goes first.
    path("visitors/<path:visitor_id>/events", VisitorEventsView.as_view(), name="visitor-events"),
    path("visitors/<path:visitor_id>", VisitorView.as_view(), name="visitor"),
    path("schema", SchemaView.as_view(), name="schema"),
    path("docs", DocsView.as_view(url_name="schema"), name="docs"),
]

urlpatterns = [
    path("admin/login/", limit_password_guesses(admin.site.login)),
    path("admin/", admin.site.urls),
    path("js/script.js", tracking_script, name="tracking-script"),
    *[path(f"api/v1/{p.pattern}", p.callback, name=p.name) for p in api],
    path("", include("analytics.dashboard.urls")),  # the dashboard: /, /login/, /sites/…, /share/…
]
