"""API keys: authentication, scopes, revocation, hashing at rest, the admin and the command."""

import re
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import override_settings
from django.urls import path as url_path
from django.utils import formats, timezone
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.keys import announce_key_change, create_api_key, revoke_key, touch_last_used, verify_key
from accounts.models import ApiKey, Site
from events.models import Event
from infinity import counters

EVENT = "/api/v1/events"
ANALYTICS = "/api/v1/analytics"
UNAUTHORIZED = {"error": {"code": "UNAUTHORIZED", "message": "Invalid or missing API key"}}


def key_row(raw):
    return ApiKey.objects.get(prefix=raw[:9])


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Bearer im_doesnotexist",
        "Bearer not-even-our-format",
        "Token {key}",
        "Basic {key}",
        "Bearer {key} extra",
        "{key}",
        "Bearer {key}x",
    ],
)
def test_every_bad_credential_gets_the_same_401(anon, cast, authorization):
    headers = {} if authorization is None else {"HTTP_AUTHORIZATION": authorization.format(key=cast.key)}
    response = anon.post(EVENT, {"event_name": "e"}, headers=headers)
    assert response.status_code == 401
    assert response.json() == UNAUTHORIZED
    assert response["WWW-Authenticate"] == "Bearer"
    assert response.has_header("X-RateLimit-Remaining")
    assert not Event.objects.exists()


def test_bearer_keyword_is_case_insensitive(anon, cast):
    assert anon.post(EVENT, {"event_name": "e"}, headers={"HTTP_AUTHORIZATION": f"bearer {cast.key}"}).status_code == 201


def test_key_in_query_string_is_not_accepted(anon, cast):
    assert anon.get(f"{ANALYTICS}?api_key={cast.key}").status_code == 401
    assert anon.get(ANALYTICS, {"key": cast.key}).status_code == 401


def test_revoked_key_fails_on_the_next_request(api, cast):
    assert api.post(EVENT, {"event_name": "e"}).status_code == 201
    revoke_key(key_row(cast.key))
    response = api.post(EVENT, {"event_name": "e"})
    assert (response.status_code, response.json()) == (401, UNAUTHORIZED)
    assert api.get(ANALYTICS).status_code == 401


def test_expired_key_is_rejected(api, cast):
    ApiKey.objects.filter(pk=key_row(cast.key).pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert api.post(EVENT, {"event_name": "e"}).json() == UNAUTHORIZED


def test_events_only_key_cannot_read_analytics(api, cast):
    assert api.post(EVENT, {"event_name": "e"}, key=cast.events_key).status_code == 201
    response = api.get(ANALYTICS, key=cast.events_key)
    assert response.status_code == 403
    assert response.json() == {"error": {"code": "FORBIDDEN", "message": "This API key lacks the 'analytics:read' scope"}}


def test_analytics_only_key_cannot_send_events(api, cast):
    for path, body in [
        (EVENT, {"event_name": "e"}),
        ("/api/v1/events/purchase", {"price": 1, "currency": "USD", "product_name": "P"}),
    ]:
        response = api.post(path, body, key=cast.analytics_key)
        assert response.status_code == 403
        assert response.json()["error"] == {"code": "FORBIDDEN", "message": "This API key lacks the 'events:write' scope"}
    assert api.get(ANALYTICS, key=cast.analytics_key).status_code == 200
    assert not Event.objects.exists()


def test_outsider_key_sees_none_of_the_site_events(api, cast):
    for i in range(3):
        api.post(EVENT, {"event_name": "e", "visitor_id": f"v{i}"})
    outsider = api.get(ANALYTICS, key=cast.outsider_key).json()["data"]
    assert outsider == {"page_views": 0, "unique_visitors": 0, "events": 0}
    assert api.get(ANALYTICS).json()["data"] == {"page_views": 0, "unique_visitors": 3, "events": 3}


def test_outsider_cannot_write_into_the_site_by_naming_it(api, cast):
    api.post(EVENT, {"event_name": "e", "site": "example.com", "site_id": cast.site.pk}, key=cast.outsider_key)
    assert Event.objects.get().site == cast.outsider_site
    assert api.get(ANALYTICS, {"site_id": cast.site.pk}, key=cast.outsider_key).status_code == 400


def test_raw_keys_are_never_stored(cast):
    raws = [cast.key, cast.events_key, cast.analytics_key, cast.outsider_key]
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM accounts_apikey")
        dump = repr(cursor.fetchall())
    for raw in raws:
        assert raw not in dump
        assert raw[len("im_") :] not in dump
    assert all(len(row.secret_hash) == 64 for row in ApiKey.objects.all())


def test_key_format_has_prefix_and_160_plus_bits(cast):
    assert re.fullmatch(r"im_[0-9A-Za-z]{32}", cast.key)  # 32 × log2(62) ≈ 190 bits
    assert key_row(cast.key).prefix == cast.key[:9]


def test_key_lookup_is_one_query_then_cached_until_a_key_changes(cast, django_assert_num_queries):
    with django_assert_num_queries(1):
        assert verify_key(cast.key).site == cast.site
    with django_assert_num_queries(0):
        assert verify_key(cast.key).site == cast.site
    create_api_key(site=cast.outsider_site)  # any key or site change is announced to every worker
    with django_assert_num_queries(1):
        assert verify_key(cast.key).site == cast.site


def test_key_cache_is_not_used_without_the_shared_store(cast, settings, django_assert_num_queries):
    settings.RATELIMIT_STORE_PATH = "/nonexistent/dir/ratelimit.sqlite3"  # the store is down
    counters.reset_store()
    verify_key(cast.key)
    with django_assert_num_queries(1):
        assert verify_key(cast.key).site == cast.site


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda key: revoke_key(key), id="revoke_key"),
        pytest.param(lambda key: ApiKey.objects.filter(pk=key.pk).delete(), id="key deleted"),
        pytest.param(lambda key: key.site.delete(), id="site deleted"),
        pytest.param(
            lambda key: (ApiKey.objects.filter(pk=key.pk).update(scopes=[]), announce_key_change()), id="bulk update + announce"
        ),
    ],
)
def test_a_cached_key_is_refused_on_the_next_request_after_a_change(api, cast, change):
    assert api.post(EVENT, {"event_name": "warm"}).status_code == 201  # cached now
    change(key_row(cast.key))
    assert api.post(EVENT, {"event_name": "after"}).status_code in (401, 403)


def test_one_event_costs_one_insert_with_a_cached_key(api, cast, django_assert_num_queries):
    api.post(EVENT, {"event_name": "warm"})  # caches the key, sets last_used_at
    with django_assert_num_queries(1):
        assert api.post(EVENT, {"event_name": "e"}).status_code == 201


def test_last_used_is_written_at_most_once_a_minute(cast, django_assert_num_queries):
    api_key = verify_key(cast.key)
    now = timezone.now()
    touch_last_used(api_key, now=now)
    assert key_row(cast.key).last_used_at == now
    with django_assert_num_queries(0):
        touch_last_used(api_key, now=now + timedelta(seconds=59))
    with django_assert_num_queries(1):
        touch_last_used(api_key, now=now + timedelta(seconds=60))


def test_new_key_has_both_scopes_unless_narrowed(db):
    site = Site.objects.create(domain="a.test")
    assert create_api_key(site=site)[0].scopes == ["events:write", "analytics:read"]
    assert create_api_key(site=site, scopes="analytics:read")[0].scopes == ["analytics:read"]
    with pytest.raises(ValueError):
        create_api_key(site=site, scopes="admin:all")


def test_create_api_key_command_creates_site_and_prints_key_last(db, anon):
    out = StringIO()
    call_command("create_api_key", "--site", "Shop.Example", "--name", "backend", "--scopes", "events:write", stdout=out)
    raw = out.getvalue().strip().splitlines()[-1]
    site = Site.objects.get(domain="shop.example")
    api_key = ApiKey.objects.get(site=site)
    assert (api_key.name, api_key.scopes) == ("backend", ["events:write"])
    assert anon.post(EVENT, {"event_name": "e"}, headers={"HTTP_AUTHORIZATION": f"Bearer {raw}"}).status_code == 201
    out2 = StringIO()
    call_command("create_api_key", "--site", "shop.example", stdout=out2)
    assert Site.objects.filter(domain="shop.example").count() == 1
    assert out2.getvalue().strip().splitlines()[-1] != raw


def test_create_api_key_command_rejects_unknown_scope(db):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="Unknown scope"):
        call_command("create_api_key", "--site", "a.test", "--scopes", "events:write,root", stdout=StringIO())
    assert not Site.objects.exists()


def test_quickstart_prints_admin_password_and_key(db, anon):
    out = StringIO()
    call_command("quickstart", stdout=out)
    raw = out.getvalue().strip().splitlines()[-1]
    assert anon.get(ANALYTICS, headers={"HTTP_AUTHORIZATION": f"Bearer {raw}"}).status_code == 200
    again = StringIO()
    call_command("quickstart", stdout=again)
    assert raw not in again.getvalue()
    assert Site.objects.count() == 1


# The admin: "Settings › API keys"


@pytest.fixture
def staff_client(client, django_user_model):
    user = django_user_model.objects.create_superuser("staff", "staff@example.com", "pw-staff-123")
    client.force_login(user)
    return client


def test_admin_shows_api_keys_under_settings(staff_client):
    page = staff_client.get("/admin/").content.decode()
    assert "Settings" in page and "API keys" in page and "Sites" in page


def test_admin_creates_key_shown_once_then_only_prefix(staff_client, cast, anon):
    response = staff_client.post(
        "/admin/accounts/apikey/add/",
        {"site": cast.site.pk, "name": "from admin", "scopes": ["analytics:read"], "expires_at_0": "", "expires_at_1": ""},
        follow=True,
    )
    assert response.status_code == 200
    page = response.content.decode()
    raw = re.search(r'id="new-api-key">(im_[0-9A-Za-z]+)<', page).group(1)
    api_key = ApiKey.objects.get(name="from admin")
    assert api_key.scopes == ["analytics:read"]
    assert anon.get(ANALYTICS, headers={"HTTP_AUTHORIZATION": f"Bearer {raw}"}).status_code == 200
    # Later pages show the prefix only.
    listing = staff_client.get("/admin/accounts/apikey/").content.decode()
    detail = staff_client.get(f"/admin/accounts/apikey/{api_key.pk}/change/").content.decode()
    assert raw not in listing and raw not in detail
    assert api_key.prefix in listing


def test_admin_new_key_defaults_to_both_scopes(staff_client):
    page = staff_client.get("/admin/accounts/apikey/add/").content.decode()
    boxes = re.findall(r'<input type="checkbox" name="scopes" value="([^"]+)"([^>]*)>', page)
    assert [(value, "checked" in rest) for value, rest in boxes] == [
        ("events:write", True),
        ("analytics:read", True),
        ("data:manage", False),  # granted only when ticked
    ]


def test_admin_revoke_action_is_effective_next_request(staff_client, api, cast):
    assert api.post(EVENT, {"event_name": "e"}).status_code == 201
    row = key_row(cast.key)
    response = staff_client.post(
        "/admin/accounts/apikey/", {"action": "revoke_selected", "_selected_action": [row.pk]}, follow=True
    )
    assert response.status_code == 200
    assert ApiKey.objects.get(pk=row.pk).revoked_at is not None
    assert api.post(EVENT, {"event_name": "e"}).status_code == 401
    assert api.post(EVENT, {"event_name": "e"}, key=cast.events_key).status_code == 201


def test_admin_revoke_checkbox_on_change_form(staff_client, api, cast):
    row = key_row(cast.key)
    staff_client.post(
        f"/admin/accounts/apikey/{row.pk}/change/",
        {"name": row.name, "scopes": row.scopes, "revoked": "on", "expires_at_0": "", "expires_at_1": ""},
    )
    assert ApiKey.objects.get(pk=row.pk).revoked_at is not None
    assert api.get(ANALYTICS).status_code == 401


def test_admin_shows_last_used(staff_client, api, cast):
    api.post(EVENT, {"event_name": "e"})
    used = key_row(cast.key).last_used_at
    assert used is not None
    page = staff_client.get("/admin/accounts/apikey/").content.decode()
    assert "Last used" in page
    # The list's "Last used" column shows the time for the used key and "-" for the others.
    cells = re.findall(r'<td class="field-last_used_at[^"]*">([^<]*)</td>', page)
    assert sorted(cells) == sorted([formats.localize(timezone.template_localtime(used)), "-", "-", "-"])


class _PlainDrfView(APIView):
    """A DRF view that is not an ApiView (like the schema view): no throttle confirms keys."""

    permission_classes = []
    throttle_classes = []

    def get(self, request):
        return Response({"key": request.auth.pk if request.auth else None})


urlpatterns = [url_path("plain", _PlainDrfView.as_view())]


@override_settings(ROOT_URLCONF=__name__)
def test_a_view_outside_api_view_confirms_a_cached_key_itself(api, cast):
    assert verify_key(cast.key) is not None  # cached now
    assert api.get("/plain").json() == {"key": key_row(cast.key).pk}
    revoke_key(key_row(cast.key))
    assert api.get("/plain").status_code == 401


def test_stored_key_digest_is_hmac_sha256_of_the_secret(settings):
    """Existing keys must keep verifying: the digest is HMAC-SHA256 under SHA-256 of the secret."""
    import hashlib
    import hmac

    from accounts.keys import _hash_secret

    raw = "im_" + "a" * 32
    for secret in (settings.SECRET_KEY, "another-secret"):
        settings.SECRET_KEY = secret
        material = hashlib.sha256(b"infinity-api-key:" + secret.encode()).digest()
        assert _hash_secret(raw) == hmac.new(material, raw.encode(), hashlib.sha256).hexdigest()
