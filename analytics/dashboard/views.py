"""The dashboard's pages and panels. Each view resolves who is looking (``access``), reads the
URL into a ``DashboardState`` and renders what ``panels`` computed from the engine."""

import csv
import dataclasses
import io
import zipfile
from zoneinfo import available_timezones

from django import forms
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import AuthenticationForm
from django.http import Http404, HttpResponseNotAllowed, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.text import slugify
from django.views.decorators.gzip import gzip_page
from django.views.decorators.http import require_GET

from accounts.models import ShareLink, Site
from accounts.passwords import RefuseWhenLimited, limit_password_guesses

from . import data, numbers, panels
from .access import active_link, dashboard_view, visible_sites
from .reports import DETAIL_ROWS, EXPORT_ROWS, REPORTS
from .state import COMPARES, PERIODS, DashboardState

PANELS = ("stats", "current", *REPORTS)


# --- signing in --------------------------------------------------------------------------


class LoginForm(RefuseWhenLimited, AuthenticationForm):
    pass


@method_decorator(limit_password_guesses, name="dispatch")
class LoginView(auth_views.LoginView):
    """Django's login with the attempt limits of every password form (``accounts.passwords``)."""

    template_name = "dashboard/login.html"
    authentication_form = LoginForm
    redirect_authenticated_user = True


class LogoutView(auth_views.LogoutView):
    next_page = "/login/"


# --- the list of sites and adding one ---------------------------------------------------------


@login_required
@require_GET
def site_list(request):
    sites = list(visible_sites(request.user))
    if len(sites) == 1 and not request.user.is_staff:
        return redirect(f"/sites/{sites[0].domain}/")
    return render(request, "dashboard/sites.html", {"sites": sites, "can_add": request.user.is_staff})


_TIMEZONES = sorted(available_timezones() - {"localtime"})


class SiteForm(forms.ModelForm):
    timezone = forms.ChoiceField(
        choices=[(tz, tz.replace("_", " ")) for tz in _TIMEZONES],
        initial="UTC",
        help_text="Days, weeks and months on the dashboard start at midnight in this timezone.",
    )

    class Meta:
        model = Site
        fields = ["domain", "timezone"]
        help_texts = {"domain": "Just the domain, e.g. example.com: no https://, no path."}

    def clean_domain(self):
        raw = self.cleaned_data["domain"].strip().lower()
        for prefix in ("https://", "http://"):
            raw = raw.removeprefix(prefix)
        raw = raw.split("/")[0].removeprefix("www.")
        if not raw or any(c.isspace() for c in raw) or "." not in raw.strip(".") and raw != "localhost":
            raise forms.ValidationError("Enter a domain such as example.com.")
        if Site.objects.filter(domain=raw).exists():
            raise forms.ValidationError("This site is already added.")
        return raw


@login_required
def add_site(request):
    if not request.user.is_staff:
        raise Http404
    form = SiteForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        site = form.save(commit=False)
        site.name = site.domain
        site.save()
        return redirect(f"/sites/{site.domain}/setup/")
    return render(request, "dashboard/add_site.html", {"form": form})


@dashboard_view()
@require_GET
def setup(request):
    viewer = request.viewer
    origin = request.build_absolute_uri("/").rstrip("/")
    local = viewer.site.domain == "localhost" or viewer.site.domain.replace(".", "").isdigit()
    attributes = f'data-domain="{viewer.site.domain}"' + (
        " data-local" if local else ""
    )  # the script skips local pages unless told
    snippet = f'<script defer {attributes} src="{origin}/js/script.js"></script>'
    return render(
        request, "dashboard/setup.html", {"viewer": viewer, "snippet": snippet, "received": data.has_events(viewer.site)}
    )


@dashboard_view(data=True)
@require_GET
def setup_status(request):
    return render(request, "dashboard/panels/setup_status.html", {"received": data.has_events(request.viewer.site)})


# --- the dashboard ---------------------------------------------------------------------------


def _current_visitors(site) -> dict:
    params = {"metrics": "current_visitors"}
    return {"current": data.analytics(site, params)["data"]["current_visitors"], "query": panels.query_string(params)}


def _shell_context(request, state: DashboardState) -> dict:
    viewer = request.viewer
    chips = []
    for i, f in enumerate(state.filters):
        name = f.dimension.name
        label = _DIMENSION_LABELS.get(name, name.removeprefix("metadata."))
        value = f.value
        if name == "country":
            value = panels.COUNTRY_NAMES.get(value, value)
        ops = {"==": "is", "!=": "is not", "~": "contains"}
        chips.append({"label": label, "op": ops[f.op], "value": value or "(none)", "remove_url": state.without_filter(i)})
    sites = list(visible_sites(request.user)) if not viewer.shared and request.user.is_authenticated else []
    return {
        "viewer": viewer,
        "state": state,
        "chips": chips,
        "clear_filters_url": state.url(filters=None),
        "periods": [(key, label, shortcut, state.period_url(key)) for key, (label, shortcut) in PERIODS.items()],
        "compares": [(key, label, state.url(compare=key)) for key, label in COMPARES.items()],
        "compare_label": COMPARES[state.compare],
        "prev_url": state.url(**state.range.previous) if state.range.previous else None,
        "next_url": state.url(**state.range.next) if state.range.next else None,
        "panel_query": state.url(),
        # Fetched by the page's head before its stylesheets and scripts load (the panels' data-src).
        "panel_sources": [f"{viewer.prefix}panels/{name}{state.url()}" for name in ("stats", *REPORTS)],
        # The count of current visitors is one cheap query: the page carries it instead of a request.
        "current_panel": _current_visitors(viewer.site),
        "sites": sites,
        "filter_dimensions": _FILTER_DIMENSIONS,
        "comparison_dates": state.comparison_range,
        "report_titles": [(r.key, r.title) for r in REPORTS.values()],
    }


_DIMENSION_LABELS = {
    "page": "Page",
    "entry_page": "Entry page",
    "exit_page": "Exit page",
    "source": "Source",
    "referrer": "Referrer",
    "utm_source": "UTM source",
    "utm_medium": "UTM medium",
    "utm_campaign": "UTM campaign",
    "utm_term": "UTM term",
    "utm_content": "UTM content",
    "country": "Country",
    "browser": "Browser",
    "os": "OS",
    "device": "Device",
    "event_name": "Event",
    "product_name": "Product",
    "currency": "Currency",
    "hostname": "Hostname",
}
_FILTER_DIMENSIONS = [(k, v) for k, v in _DIMENSION_LABELS.items() if k not in ("entry_page", "exit_page")]


def _dashboard(request):
    state = DashboardState.from_query(request.viewer.site, request.GET)
    if request.GET.get("filter_dimension"):  # the filter menu's form (works without JavaScript)
        dimension, op = request.GET["filter_dimension"], request.GET.get("filter_op", "==")
        if dimension in _DIMENSION_LABELS and op in ("==", "!=", "~"):
            return redirect(request.path + _add_filter(state, dimension, op, request.GET.get("filter_value", "")))
    return render(request, "dashboard/dashboard.html", _shell_context(request, state))


def _add_filter(state, dimension, op, value):
    new = data.Filter(data.parse_dimension(dimension, "filters"), op, value.strip())
    kept = [f for f in state.filters if not (f.dimension.name == dimension and f.op == op)]
    return state.url(filters=";".join(str(f) for f in [*kept, new]))


@dashboard_view()
@require_GET
def dashboard(request):
    return _dashboard(request)


def embed(request, token):
    """The shared dashboard for an iframe on another site: the only page that may be framed,
    and only for a link without a password (its cookie would be a third-party one)."""
    if active_link(token).has_password:
        raise Http404("Only a shared link without a password can be embedded")
    response = _embed(request, token=token)
    response.xframe_options_exempt = True
    return response


@dashboard_view()
@require_GET
def _embed(request):
    request.viewer = dataclasses.replace(request.viewer, embed=True)
    return _dashboard(request)


# Gzipped: panels are tables of text (a fifth of their size compressed) and hold no secret that
# a compression side channel could reveal (no CSRF token, nothing the viewer cannot see).
@dashboard_view(data=True)
@require_GET
@gzip_page
def panel(request, name):
    if name not in PANELS:
        raise Http404
    viewer = request.viewer
    state = DashboardState.from_query(viewer.site, request.GET)
    context = {"viewer": viewer, "state": state, "name": name}
    try:
        if name == "stats":
            context.update(panels.stats_view(state))
            return render(request, "dashboard/panels/stats.html", context)
        if name == "current":
            context.update(_current_visitors(viewer.site))
            return render(request, "dashboard/panels/current.html", context)
        report = REPORTS[name]
        context["view"] = panels.report_view(state, report, tab_key=request.GET.get("show"))
        context["details_url"] = f"{viewer.prefix}details/{report.key}/{state.url()}"
        return render(request, "dashboard/panels/report.html", context)
    except data.QueryError as exc:
        return render(request, "dashboard/panels/error.html", {"message": exc.message}, status=400)


@dashboard_view(data=True)
@require_GET
def summary(request):
    """A site's card on the list of sites: visitors in the last 24 hours by hour, and right now."""
    site = request.viewer.site
    params = {"hours": "24", "metrics": "unique_visitors", "interval": "hour"}
    result = data.analytics(site, params)
    points = [p["unique_visitors"] for p in result["series"]]
    return render(
        request,
        "dashboard/panels/summary.html",
        {
            "site": site,
            "visitors": result["data"]["unique_visitors"],
            "visitors_text": numbers.compact(result["data"]["unique_visitors"]),
            "spark": _sparkline(points),
            "current": data.analytics(site, {"metrics": "current_visitors"})["data"]["current_visitors"],
            "query": panels.query_string(params),
        },
    )


def _sparkline(points, width=120, height=32) -> str:
    """An SVG polyline's points for a small trend line (drawn by the server, no JavaScript)."""
    if not points:
        return ""
    top = max(points) or 1
    step = width / max(len(points) - 1, 1)
    return " ".join(f"{i * step:.1f},{height - 2 - (p / top) * (height - 4):.1f}" for i, p in enumerate(points))


# --- details and exports ------------------------------------------------------------------------


@dashboard_view(data=True)
@require_GET
def details(request, report):
    if report not in REPORTS:
        raise Http404
    viewer = request.viewer
    state = DashboardState.from_query(viewer.site, request.GET)
    report = REPORTS[report]
    search = request.GET.get("q", "").strip()[:200]
    tab_key = request.GET.get("show") or None
    if report.key == "locations" and tab_key in (None, "map"):
        tab_key = "countries"  # the details of the map are its list
    subject, tabs, tab = panels.choose_tab(state, report, tab_key)
    detail_metrics = list(tab.detail_metrics) if tab else []
    metrics = list(detail_metrics)
    sort = request.GET.get("sort")
    if sort in metrics:  # the API orders by the first metric
        metrics.remove(sort)
        metrics.insert(0, sort)
    try:
        view = panels.report_view(state, report, rows=DETAIL_ROWS, metrics=metrics, search=search, tab_key=tab_key)
    except data.QueryError as exc:
        return render(request, "dashboard/panels/error.html", {"message": exc.message}, status=400)
    view.headers = [(m, view.tab.label_of(m)) for m in detail_metrics]
    for row in view.rows:  # columns in the tab's order, whichever sorts
        row.cells.sort(key=lambda c: detail_metrics.index(c.metric))
    if request.GET.get("format") == "csv":
        name = f"{viewer.site.domain}-{slugify(view.tab.label)}-{state.range.start}-{state.range.end}.csv"
        return _csv_response(name, view)
    sorted_by = metrics[0] if metrics else None
    return render(
        request,
        "dashboard/details.html",
        {
            "viewer": viewer,
            "state": state,
            "view": view,
            "search": search,
            "sorted_by": sorted_by,
            "sort_urls": {m: _details_url(request, sort=m) for m in detail_metrics},
            "csv_url": _details_url(request, format="csv"),
            "back_url": f"{viewer.prefix}{state.url()}",
            "tab_urls": [
                (t.key, t.label, _details_url(request, show=t.key, sort=None, q=None), t.key == view.tab.key)
                for t in tabs
                if t.key != "map"
            ],
        },
    )


def _details_url(request, **changes) -> str:
    params = request.GET.copy()
    params.pop("format", None)
    for key, value in changes.items():
        if value is None:
            params.pop(key, None)
        else:
            params[key] = value
    return request.path + ("?" + params.urlencode() if params else "")


class _Echo:
    def write(self, value):
        return value


def _csv_rows(view) -> list[list]:
    """The rows of a report as CSV: money metrics get one column per currency (minor units)."""
    currencies = {}
    for m, _ in view.headers:
        if m in numbers.MONEY:
            currencies[m] = sorted({c for row in view.rows for cell in row.cells if cell.metric == m for c in (cell.value or {})})
    header = [view.column]
    for m, _ in view.headers:
        header += [f"{m}_{c.lower()}" for c in currencies[m]] if m in currencies else [m]
    out = [header]
    for row in view.rows:
        line = [row.value if row.value is not None else ""]
        by_metric = {c.metric: c.value for c in row.cells}
        for m, _ in view.headers:
            if m in currencies:
                line += [(by_metric.get(m) or {}).get(c, "") for c in currencies[m]]
            else:
                line.append(by_metric.get(m))
        out.append(line)
    return out


def _csv_response(filename: str, view) -> StreamingHttpResponse:
    writer = csv.writer(_Echo())
    response = StreamingHttpResponse((writer.writerow(r) for r in _csv_rows(view)), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


class _ZipStream(io.RawIOBase):
    """A write-only stream whose bytes are handed out as they come: the ZIP is sent while it is made."""

    def __init__(self):
        self.chunks = []

    def writable(self):
        return True

    def write(self, b):
        self.chunks.append(bytes(b))
        return len(b)

    def take(self) -> bytes:
        out = b"".join(self.chunks)
        self.chunks.clear()
        return out


def export_files(state: DashboardState):
    """(file name, CSV rows) of every report of the view, and the visitors over time."""
    stats = panels.stats_view(state)
    graph = stats["graph"]
    metrics = list(graph["series"])
    rows = [["date", *metrics]] + [[label, *(graph["series"][m][i] for m in metrics)] for i, label in enumerate(graph["labels"])]
    yield "visitors.csv", rows
    for report in REPORTS.values():
        tabs = report.tabs if report.key != "events" else panels.events_tabs(state)[1]
        for tab in tabs:
            if tab.key == "map":
                continue
            view = panels.report_view(state, report, rows=EXPORT_ROWS, metrics=tab.detail_metrics, tab_key=tab.key)
            yield f"{report.key}-{slugify(tab.label)}.csv", _csv_rows(view)


@dashboard_view(data=True)
@require_GET
def export_zip(request):
    viewer = request.viewer
    state = DashboardState.from_query(viewer.site, request.GET)

    def stream():
        out = _ZipStream()
        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, rows in export_files(state):
                text = io.StringIO()
                csv.writer(text).writerows(rows)
                archive.writestr(name, text.getvalue())
                yield out.take()
        yield out.take()

    name = f"{viewer.site.domain}-{state.range.start}-{state.range.end}.zip"
    response = StreamingHttpResponse(stream(), content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


# --- shared links (staff) --------------------------------------------------------------------------


class ShareLinkForm(forms.Form):
    name = forms.CharField(max_length=100, required=False, help_text="For you: where the link is used.")
    password = forms.CharField(
        required=False,
        widget=forms.PasswordInput,
        help_text="Viewers enter it once and stay in for 24 hours. A link with a password cannot be embedded.",
    )


@dashboard_view()
def share_links(request):
    viewer = request.viewer
    if not viewer.can_manage:
        raise Http404
    form = ShareLinkForm(request.POST or None)
    if request.method == "POST":
        if "revoke" in request.POST:
            ShareLink.objects.filter(site=viewer.site, pk=request.POST["revoke"], revoked_at__isnull=True).update(
                revoked_at=timezone.now()
            )
            return redirect(f"{viewer.prefix}share/")
        if form.is_valid():
            link = ShareLink(site=viewer.site, name=form.cleaned_data["name"], created_by=request.user)
            link.set_password(form.cleaned_data["password"])
            link.save()
            return redirect(f"{viewer.prefix}share/#link-{link.pk}")
    elif request.method != "GET":
        return HttpResponseNotAllowed(["GET", "POST"])
    links = ShareLink.objects.filter(site=viewer.site)
    origin = request.build_absolute_uri("/").rstrip("/")
    return render(request, "dashboard/share_links.html", {"viewer": viewer, "form": form, "links": links, "origin": origin})
