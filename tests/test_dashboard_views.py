"""The dashboard's pages over HTTP: who may see which site, shared links, password limits,
and panels, CSVs and the ZIP giving the API's numbers."""

import csv
import io
import re
import zipfile
from datetime import timedelta
from html import unescape
from urllib.parse import parse_qsl

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from accounts.models import Membership, ShareLink
from events.models import Event, Kind
from tests.conftest import Api


@pytest.fixture
def people(cast):
    """The story's cast for the dashboard: a staff owner, a member of the site, an outsider."""
    staff = User.objects.create_user("owner", password="owner-pass-1", is_staff=True)
    member = User.objects.create_user("member", password="member-pass-1")
    Membership.objects.create(user=member, site=cast.site)
    outsider = User.objects.create_user("outsider", password="outsider-pass-1")
    Membership.objects.create(user=outsider, site=cast.outsider_site)
    return {"staff": staff, "member": member, "outsider": outsider}


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def traffic(site, days_ago=2, hours_ago=0):
    """A small day of traffic: two visitors from Google and one direct, one signup, one purchase."""
    when = timezone.now() - timedelta(days=days_ago, hours=hours_ago)
    rows = [
        dict(visitor=1, session=11, path="/", source="Google", country="DE", browser="Firefox"),
        dict(visitor=1, session=11, path="/pricing", source="Google", country="DE", browser="Firefox"),
        dict(visitor=2, session=21, path="/", source="Google", country="FR", browser="Chrome"),
        dict(visitor=3, session=31, path="/blog", source="", country="US", browser="Chrome"),
    ]
    for i, row in enumerate(rows):
        Event.objects.create(site=site, kind=Kind.PAGEVIEW, name="pageview", occurred_at=when + timedelta(seconds=30 * i), **row)
    same = dict(visitor=2, session=21, path="/", source="Google", country="FR", browser="Chrome")
    Event.objects.create(site=site, kind=Kind.CUSTOM, name="signup", metadata={"plan": "pro"},
                         occurred_at=when + timedelta(minutes=3), **same)  # fmt: skip
    Event.objects.create(site=site, kind=Kind.PURCHASE, name="purchase", price=2999, currency="EUR", quantity=1,
                         product_name="Pro", occurred_at=when + timedelta(minutes=4), **same)  # fmt: skip


def data_query(html: str, marker: str) -> dict:
    """The API parameters a panel carries in ``data-query``."""
    match = re.search(marker + r'[^>]*data-query="([^"]*)"', html) or re.search(r'data-query="([^"]*)"[^>]*' + marker, html)
    assert match, f"no data-query near {marker!r}"
    return dict(parse_qsl(unescape(match.group(1)), keep_blank_values=True))


# --- who sees what ------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/sites/example.com/", "/sites/example.com/panels/stats", "/sites/example.com/export.zip"])
def test_signed_out_visitors_are_sent_to_the_login(client, cast, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=")


def test_staff_see_every_site_and_members_only_theirs(people, cast):
    staff_page = client_for(people["staff"]).get("/").content.decode()
    assert "example.com" in staff_page and "outsider.org" in staff_page
    member = client_for(people["member"]).get("/")
    assert member.status_code == 302 and member["Location"] == "/sites/example.com/"  # one site: straight to it


@pytest.mark.parametrize(
    "path",
    [
        "/sites/example.com/",
        "/sites/example.com/panels/stats",
        "/sites/example.com/panels/sources",
        "/sites/example.com/details/pages/",
        "/sites/example.com/export.zip",
        "/sites/example.com/setup/",
        "/sites/example.com/summary",
        "/sites/no-such-site.com/",
    ],
)
def test_another_sites_urls_are_a_404_for_a_non_member(people, path):
    response = client_for(people["outsider"]).get(path)
    assert response.status_code == 404


def test_a_member_opens_the_dashboard_but_not_the_staff_pages(people):
    member = client_for(people["member"])
    assert member.get("/sites/example.com/").status_code == 200
    assert member.get("/sites/example.com/share/").status_code == 404
    assert member.get("/sites/new/").status_code == 404


def test_staff_add_a_site_and_get_its_snippet(people):
    staff = client_for(people["staff"])
    response = staff.post("/sites/new/", {"domain": "https://www.Shop.Example.org/path", "timezone": "Europe/Berlin"})
    assert response.status_code == 302 and response["Location"] == "/sites/shop.example.org/setup/"
    page = staff.get(response["Location"]).content.decode()
    assert 'data-domain="shop.example.org"' in unescape(page)
    assert "Waiting for the first page view" in page
    assert staff.post("/sites/new/", {"domain": "shop.example.org", "timezone": "UTC"}).status_code == 200  # a duplicate


def test_the_setup_check_turns_green_when_the_first_event_arrives(people, cast):
    staff = client_for(people["staff"])
    assert "data-done" not in staff.get("/sites/example.com/setup/status").content.decode()
    traffic(cast.site, days_ago=0)
    assert "data-done" in staff.get("/sites/example.com/setup/status").content.decode()


# --- shared links -------------------------------------------------------------------------


def test_a_shared_link_shows_the_dashboard_logged_out_and_nothing_else(cast, client):
    link = ShareLink.objects.create(site=cast.site, name="public")
    assert client.get(f"/share/{link.token}/").status_code == 200
    assert client.get(f"/share/{link.token}/panels/stats").status_code == 200
    page = client.get(f"/share/{link.token}/").content.decode()
    assert "/admin/" not in page and '/share/"' not in page and "Tracking snippet" not in page
    for path in ("share/", "setup/", "summary"):
        assert client.get(f"/share/{link.token}/{path}").status_code == 404
    assert client.get("/share/not-a-token/").status_code == 404


def test_a_revoked_link_is_a_404(cast, client):
    link = ShareLink.objects.create(site=cast.site, revoked_at=timezone.now())
    assert client.get(f"/share/{link.token}/").status_code == 404
    assert client.get(f"/share/{link.token}/panels/stats").status_code == 404


def test_a_password_keeps_the_link_closed_until_it_is_given(cast, client):
    link = ShareLink(site=cast.site)
    link.set_password("open sesame")
    link.save()
    page = client.get(f"/share/{link.token}/")
    assert page.status_code == 200 and "protected by a password" in page.content.decode()
    assert client.get(f"/share/{link.token}/panels/stats").status_code == 404
    wrong = client.post(f"/share/{link.token}/", {"password": "nope"})
    assert wrong.status_code == 403 and "not right" in wrong.content.decode()
    right = client.post(f"/share/{link.token}/", {"password": "open sesame"})
    assert right.status_code == 302
    cookie = right.cookies[f"im_share_{link.pk}"]
    assert cookie["max-age"] == 86400 and cookie["httponly"] and cookie["path"] == f"/share/{link.token}/"
    assert client.get(f"/share/{link.token}/panels/stats").status_code == 200
    link.set_password("changed")  # a new password signs every viewer out
    link.save()
    assert client.get(f"/share/{link.token}/panels/stats").status_code == 404


def test_only_the_embed_variant_of_a_link_without_password_may_be_framed(cast, client, people):
    link = ShareLink.objects.create(site=cast.site)
    assert "X-Frame-Options" not in client.get(f"/share/{link.token}/embed/")
    assert client.get(f"/share/{link.token}/")["X-Frame-Options"] == "DENY"
    assert client_for(people["staff"]).get("/sites/example.com/")["X-Frame-Options"] == "DENY"
    protected = ShareLink(site=cast.site)
    protected.set_password("pw")
    protected.save()
    client.post(f"/share/{protected.token}/", {"password": "pw"})
    assert client.get(f"/share/{protected.token}/embed/").status_code == 404


def test_staff_create_and_revoke_shared_links(people, cast):
    staff = client_for(people["staff"])
    staff.post("/sites/example.com/share/", {"name": "Investors", "password": ""})
    link = ShareLink.objects.get(site=cast.site)
    assert link.name == "Investors" and not link.has_password and link.created_by == people["staff"]
    assert link.token in staff.get("/sites/example.com/share/").content.decode()
    staff.post("/sites/example.com/share/", {"revoke": link.pk})
    assert Client().get(f"/share/{link.token}/").status_code == 404


# --- password guessing ----------------------------------------------------------------------


def test_login_attempts_are_limited_per_username_and_say_so(people, settings):
    settings.PASSWORD_GUESSES_PER_USERNAME = "3/10m"
    for ip in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):  # a different address each time: the username still counts
        response = Client(REMOTE_ADDR=ip).post("/login/", {"username": "owner", "password": "wrong"})
        assert response.status_code == 200
    limited = Client(REMOTE_ADDR="10.0.0.4").post("/login/", {"username": "owner", "password": "owner-pass-1"})
    assert limited.status_code == 429
    assert "Too many sign-in attempts" in limited.content.decode()
    fine = Client(REMOTE_ADDR="10.0.0.5").post("/login/", {"username": "member", "password": "member-pass-1"})
    assert fine.status_code == 302


def test_login_attempts_are_limited_per_client_ip(people, settings):
    settings.PASSWORD_GUESSES_PER_IP = "3/10m"
    client = Client(REMOTE_ADDR="10.0.0.9")
    for name in ("a", "b", "c"):
        assert client.post("/login/", {"username": name, "password": "x"}).status_code == 200
    assert client.post("/login/", {"username": "member", "password": "member-pass-1"}).status_code == 429


def test_shared_link_password_attempts_are_limited(cast, settings):
    settings.PASSWORD_GUESSES_PER_USERNAME = "2/10m"  # per link
    link = ShareLink(site=cast.site)
    link.set_password("right")
    link.save()
    for ip in ("10.1.0.1", "10.1.0.2"):
        assert Client(REMOTE_ADDR=ip).post(f"/share/{link.token}/", {"password": "wrong"}).status_code == 403
    limited = Client(REMOTE_ADDR="10.1.0.3").post(f"/share/{link.token}/", {"password": "right"})
    assert limited.status_code == 429 and "Too many sign-in attempts" in limited.content.decode()


def test_dashboard_data_requests_have_their_own_limit(people, settings):
    settings.DASHBOARD_RATE_LIMIT = 2
    member = client_for(people["member"])
    assert member.get("/sites/example.com/panels/current").status_code == 200
    assert member.get("/sites/example.com/panels/current").status_code == 200
    limited = member.get("/sites/example.com/panels/current")
    assert limited.status_code == 429 and limited["Retry-After"] == "60"


# --- the numbers are the API's ---------------------------------------------------------------


def test_panels_show_what_the_api_answers_for_their_query(people, cast):
    traffic(cast.site)
    member = client_for(people["member"])
    api = Api(cast.key)
    stats = member.get("/sites/example.com/panels/stats").content.decode()
    params = data_query(stats, 'class="stat-cards"')
    body = api.get("/api/v1/analytics", params).json()
    shown = dict(re.findall(r'data-metric="(\w+)".*?data-value="([^"]*)"', stats, re.S))
    assert shown["unique_visitors"] == str(body["data"]["unique_visitors"]) == "3"
    assert shown["page_views"] == str(body["data"]["page_views"]) == "4"
    assert shown["visits"] == str(body["data"]["visits"])
    assert shown["bounce_rate"] == str(body["data"]["bounce_rate"])
    sources = member.get("/sites/example.com/panels/sources").content.decode()
    answer = api.get("/api/v1/analytics", data_query(sources, 'class="report-body"')).json()
    rows = re.findall(r'<tr data-value="([^"]*)">.*?data-value="([^"]*)"', sources, re.S)
    assert rows == [(r["value"] or "", str(r["unique_visitors"])) for r in answer["breakdown"]] == [("Google", "2"), ("", "1")]


def test_a_filter_in_the_url_narrows_every_panel(people, cast):
    traffic(cast.site)
    member = client_for(people["member"])
    stats = member.get("/sites/example.com/panels/stats", {"filters": "source==Google"}).content.decode()
    assert data_query(stats, 'class="stat-cards"')["filters"] == "source==Google"
    assert re.search(r'data-metric="unique_visitors".*?data-value="2"', stats, re.S)
    page = member.get("/sites/example.com/", {"filters": "source==Google"}).content.decode()
    assert 'Source <span class="muted">is</span> <strong>Google</strong>' in page


def test_the_filter_menu_form_adds_a_filter_without_javascript(people, cast):
    member = client_for(people["member"])
    response = member.get(
        "/sites/example.com/", {"period": "7d", "filter_dimension": "page", "filter_op": "~", "filter_value": "blog"}
    )
    assert response.status_code == 302
    assert response["Location"] == "/sites/example.com/?period=7d&filters=page~blog"


def test_an_event_name_filter_breaks_events_down_by_their_properties(people, cast):
    traffic(cast.site)
    events = client_for(people["member"]).get("/sites/example.com/panels/events", {"filters": "event_name==signup"})
    html = events.content.decode()
    assert data_query(html, 'class="report-body"')["breakdown"] == "metadata.plan"
    assert '<tr data-value="pro">' in html


def test_report_csv_has_the_api_rows(people, cast):
    traffic(cast.site)
    member = client_for(people["member"])
    response = member.get("/sites/example.com/details/sources/", {"format": "csv"})
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == ["Source", "unique_visitors", "visits", "bounce_rate", "visit_duration"]
    assert [r[:2] for r in rows[1:]] == [["Google", "2"], ["", "1"]]


def test_details_search_and_sort(people, cast):
    traffic(cast.site)
    member = client_for(people["member"])
    found = member.get("/sites/example.com/details/pages/", {"q": "pric"}).content.decode()
    assert re.findall(r'<tr data-value="([^"]*)">', found) == ["/pricing"]
    by_views = member.get("/sites/example.com/details/pages/", {"sort": "page_views"}).content.decode()
    assert data_query(by_views, 'class="rows details-table"')["metrics"].startswith("page_views,")


def test_the_zip_holds_every_report_of_the_view(people, cast):
    traffic(cast.site)
    response = client_for(people["member"]).get("/sites/example.com/export.zip", {"period": "7d"})
    assert response["Content-Type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    names = set(archive.namelist())
    assert {"visitors.csv", "sources-sources.csv", "pages-top-pages.csv", "pages-entry-pages.csv", "locations-countries.csv",
            "devices-browser.csv", "events-events.csv", "revenue-currencies.csv", "revenue-products.csv"} <= names  # fmt: skip
    countries = list(csv.reader(io.StringIO(archive.read("locations-countries.csv").decode())))
    assert countries[0][:2] == ["Country", "unique_visitors"]
    assert sorted(r[:2] for r in countries[1:]) == [["DE", "1"], ["FR", "1"], ["US", "1"]]
    revenue = list(csv.reader(io.StringIO(archive.read("revenue-currencies.csv").decode())))
    assert revenue[0] == ["Currency", "purchases", "revenue_eur", "average_order_value_eur", "unique_visitors"]
    assert revenue[1] == ["EUR", "1", "2999", "2999", "1"]
    visitors = list(csv.reader(io.StringIO(archive.read("visitors.csv").decode())))
    assert visitors[0][:2] == ["date", "unique_visitors"] and len(visitors) == 8


def test_current_visitors_come_from_the_api(people, cast):
    Event.objects.create(site=cast.site, kind=Kind.PAGEVIEW, name="pageview", path="/", visitor=7, session=7,
                         occurred_at=timezone.now() - timedelta(minutes=1))  # fmt: skip
    html = client_for(people["member"]).get("/sites/example.com/panels/current").content.decode()
    params = data_query(html, 'data-value="1"')
    assert Api(cast.key).get("/api/v1/analytics", params).json()["data"] == {"current_visitors": 1}
    assert "1</strong> current visitor<" in html


def test_the_site_list_card_shows_the_last_24_hours_from_the_api(people, cast):
    traffic(cast.site, days_ago=0, hours_ago=1)
    html = client_for(people["member"]).get("/sites/example.com/summary").content.decode()
    params = data_query(html, 'class="site-summary"')
    assert params["hours"] == "24"
    answer = Api(cast.key).get("/api/v1/analytics", params).json()
    assert f'data-value="{answer["data"]["unique_visitors"]}"' in html and answer["data"]["unique_visitors"] == 3
