from django.urls import include, path

from . import views

# The dashboard of one site, under /sites/<domain>/ (signed in) and /share/<token>/ (shared link).
common = [
    path("", views.dashboard, name="dashboard"),
    path("panels/<str:name>", views.panel, name="panel"),
    path("details/<str:report>/", views.details, name="details"),
    path("export.zip", views.export_zip, name="export"),
]
signed_in = [
    *common,
    path("summary", views.summary, name="summary"),
    path("setup/", views.setup, name="setup"),
    path("setup/status", views.setup_status, name="setup-status"),
    path("share/", views.share_links, name="share-links"),
]
shared = [*common, path("embed/", views.embed, name="embed")]

urlpatterns = [
    path("", views.site_list, name="sites"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", views.LogoutView.as_view(), name="logout"),
    path("sites/new/", views.add_site, name="add-site"),
    path("sites/<str:domain>/", include((signed_in, "site"))),
    path("share/<str:token>/", include((shared, "shared"))),
]
