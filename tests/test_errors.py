"""Every error under /api/v1 is the JSON envelope with the right status — never HTML, never a 500 for bad input."""

import json

import pytest
from django.db import OperationalError
from django.test import override_settings
from django.urls import path

from events.models import Event
from infinity.api import ApiView

EVENT = "/api/v1/events"


def envelope(response, status):
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) >= {"code", "message"}
    assert body["error"]["code"] == body["error"]["code"].upper()
    for header in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"):
        assert response.has_header(header), header
    return body["error"]


HOSTILE_BODIES = [
    ("deep nesting", "[" * 1000),
    ("deep nesting, closed", "[" * 5000 + "]" * 5000),
    ("nested objects", '{"a":' * 100 + "1" + "}" * 100),
    ("NaN", '{"event_name": NaN}'),
    ("Infinity", '{"event_name": "e", "metadata": {"x": Infinity}}'),
    ("-Infinity", '{"event_name": "e", "metadata": {"x": -Infinity}}'),
    ("huge exponent", '{"event_name": "e", "metadata": {"x": 1e999999}}'),
    ("huge integer", '{"event_name": "e", "metadata": {"x": ' + "9" * 5000 + "}}"),
    ("NUL escape", '{"event_name": "a\\u0000b"}'),
    ("NUL in key", '{"event_name": "e", "metadata": {"a\\u0000": 1}}'),
    ("lone high surrogate", '{"event_name": "\\ud800"}'),
    ("lone low surrogate", '{"event_name": "e", "metadata": {"k": "\\udfff"}}'),
    ("surrogate in key", '{"event_name": "e", "metadata": {"\\ud800": 1}}'),
    ("truncated", '{"event_name": "e"'),
    ("trailing garbage", '{"event_name": "e"} x'),
    ("single quotes", "{'event_name': 'e'}"),
    ("not utf-8", b'{"event_name": "\xff\xfe"}'),
    ("whitespace only", "   "),
]


@pytest.mark.parametrize("name, raw", HOSTILE_BODIES, ids=[n for n, _ in HOSTILE_BODIES])
def test_hostile_json_is_a_400(api, name, raw):
    error = envelope(api.post(EVENT, raw=raw), 400)
    assert error["code"] in {"INVALID_JSON", "INVALID_REQUEST"}
    assert not Event.objects.exists()


@pytest.mark.parametrize("raw", ["[]", "[1, 2]", '"event"', "42", "null", "true"])
def test_non_object_body_is_invalid_request(api, raw):
    error = envelope(api.post(EVENT, raw=raw), 400)
    assert error["code"] in {"INVALID_REQUEST", "INVALID_JSON"}


def test_escaped_surrogate_pair_is_fine(api):
    response = api.post(EVENT, raw='{"event_name": "party \\ud83c\\udf89"}')
    assert response.status_code == 201
    assert Event.objects.get().name == "party \U0001f389"


def test_empty_body_says_event_name_is_required(api):
    error = envelope(api.post(EVENT, raw=""), 400)
    assert error["message"] == "Event name is required"


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/xml"]
)
def test_wrong_content_type_is_415(api, content_type):
    error = envelope(api.post(EVENT, raw='{"event_name": "e"}', content_type=content_type), 415)
    assert error["code"] == "UNSUPPORTED_MEDIA_TYPE"
    assert not Event.objects.exists()


def test_json_with_charset_is_accepted(api):
    assert api.post(EVENT, {"event_name": "e"}, content_type="application/json; charset=utf-8").status_code == 201


def test_body_over_the_limit_is_413(api, settings):
    body = json.dumps({"event_name": "e", "metadata": {"a": "x" * 1000}})
    settings.MAX_BODY_BYTES = len(body)
    assert api.post(EVENT, raw=body).status_code == 201
    error = envelope(api.post(EVENT, raw=body + " "), 413)
    assert error["code"] == "PAYLOAD_TOO_LARGE"
    assert Event.objects.count() == 1


def test_default_body_limit_is_32_kib(api):
    error = envelope(api.post(EVENT, raw='{"event_name": "e", "pad": "' + "x" * 33000 + '"}'), 413)
    assert "32768" in error["message"]


def test_unknown_path_is_404_envelope(anon):
    error = envelope(anon.get("/api/v1/nope"), 404)
    assert error["code"] == "NOT_FOUND"


def test_unknown_path_with_key_is_404_envelope(api):
    envelope(api.get("/api/v1/events/nope"), 404)
    envelope(api.get("/api/v1/events/"), 404)


@override_settings(DEBUG=False)
def test_unknown_path_is_404_envelope_in_production(anon):
    envelope(anon.get("/api/v1/analytics/x"), 404)


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", EVENT),
        ("PUT", EVENT),
        ("DELETE", "/api/v1/events/purchase"),
        ("POST", "/api/v1/analytics"),
        ("PATCH", "/api/v1/analytics"),
    ],
)
def test_wrong_method_is_405(api, method, path):
    response = api.client.generic(method, path, "{}", content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {api.key}")
    error = envelope(response, 405)
    assert error["code"] == "METHOD_NOT_ALLOWED"


class Boom(ApiView):
    authentication_classes = []
    permission_classes = []

    def get(self, request):
        raise RuntimeError("boom")


class DatabaseDown(ApiView):
    authentication_classes = []
    permission_classes = []

    def get(self, request):
        raise OperationalError("connection refused")


urlpatterns = [path("api/v1/boom", Boom.as_view()), path("api/v1/dbdown", DatabaseDown.as_view())]


@override_settings(ROOT_URLCONF=__name__)
@pytest.mark.parametrize("debug", [True, False])
def test_server_error_is_500_envelope(anon, settings, debug):
    settings.DEBUG = debug
    error = envelope(anon.get("/api/v1/boom"), 500)
    assert error == {"code": "INTERNAL_ERROR", "message": "Internal server error"}


@override_settings(ROOT_URLCONF=__name__)
def test_database_failure_is_503_with_retry_after(anon):
    response = anon.get("/api/v1/dbdown")
    assert envelope(response, 503)["code"] == "SERVICE_UNAVAILABLE"
    assert response["Retry-After"]


@override_settings(ALLOWED_HOSTS=["example.com"], DEBUG=False)
def test_bad_host_is_400_envelope(anon):
    response = anon.client.get("/api/v1/analytics", HTTP_HOST="evil.test")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "INVALID_REQUEST"


@pytest.mark.parametrize(
    "method, path, allow",
    [
        ("post", "/api/v1/events", "POST, OPTIONS"),
        ("get", "/api/v1/events", "POST, OPTIONS"),
        ("post", "/api/v1/events/batch", "POST, OPTIONS"),
        ("get", "/api/v1/analytics", "GET, HEAD, OPTIONS"),
        ("post", "/api/v1/analytics", "GET, HEAD, OPTIONS"),
        ("post", "/api/v1/collect", "POST, OPTIONS"),
    ],
)
def test_allow_header_lists_the_methods_of_the_endpoint(api, method, path, allow):
    assert getattr(api, method)(path, {})["Allow"] == allow


@pytest.mark.parametrize("levels, status", [(32, 201), (33, 400)])
@pytest.mark.parametrize("escape", [False, True], ids=["plain", "with a \\u escape"])
def test_nesting_limit_is_32_levels_with_or_without_escapes(api, levels, status, escape):
    # The body is the first level; the check took another path when the text held a \u escape
    # and counted the innermost string as a level there: 33 levels passed without escapes only.
    inner = '"\\u0041"' if escape else '"A"'
    raw = '{"event_name": "deep", "extra": ' + "[" * (levels - 1) + inner + "]" * (levels - 1) + "}"
    response = api.post(EVENT, raw=raw)
    assert response.status_code == status, response.content
    if status == 400:
        assert "nested deeper than 32 levels" in envelope(response, 400)["message"]


def test_an_integer_of_too_many_digits_is_a_plain_400(api):
    error = envelope(api.post(EVENT, raw='{"event_name": "e", "metadata": {"x": ' + "9" * 5000 + "}}"), 400)
    assert "too many digits" in error["message"] and "sys." not in error["message"]


def test_schema_ignores_a_version_parameter(anon):
    # drf-spectacular copied ?version= into Content-Disposition: with a NUL there gunicorn
    # refused the header and answered with its own HTML 500.
    response = anon.get("/api/v1/schema", {"version": "a\x00b"})
    assert response.status_code == 200
    assert "(" not in response["Content-Disposition"]  # the filename names no version


def test_schema_in_an_unknown_format_is_a_404_envelope(anon):
    envelope(anon.get("/api/v1/schema", {"format": "xml"}), 404)  # Django's Http404 was a 500


def test_options_on_the_docs_page_is_a_405_envelope(anon):
    envelope(anon.client.options("/api/v1/docs"), 405)  # DRF's metadata through the page's template renderer: a 500


def test_a_value_the_database_refuses_is_a_400_not_an_outage():
    from django.db import DataError
    from rest_framework.test import APIRequestFactory

    from infinity.errors import api_exception_handler

    request = APIRequestFactory().get("/api/v1/analytics")
    response = api_exception_handler(DataError("value out of range"), {"request": request})
    assert response.status_code == 400 and response.data["error"]["code"] == "INVALID_REQUEST"


@pytest.mark.django_db(transaction=True)
def test_a_chunked_body_is_read_over_real_http(cast):
    # Without a Content-Length Django read a chunked body as empty: "Event name is required".
    import http.client
    from urllib.parse import urlsplit

    from tests.servers import gunicorn_servers

    with gunicorn_servers(1) as (url,):
        parts = urlsplit(url)
        for body, status in [(b'{"event_name": "chunked"}', 201), (b'{"event_name": "' + b"x" * 40_000 + b'"}', 413)]:
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
            chunks = iter([body[: len(body) // 2], body[len(body) // 2 :]])
            headers = {"Authorization": f"Bearer {cast.key}", "Content-Type": "application/json"}
            conn.request("POST", EVENT, chunks, headers, encode_chunked=True)
            response = conn.getresponse()
            assert response.status == status, response.read()[:200]
            conn.close()
    assert Event.objects.filter(name="chunked").count() == 1


def test_an_outage_logs_one_traceback_a_minute_and_a_line_per_request(caplog, monkeypatch):
    # A fault-injection run logged a ~5 KB traceback for each of 12,441 503s (66 MB).
    from rest_framework.test import APIRequestFactory

    from infinity import errors

    monkeypatch.setattr(errors, "_last_traceback", [float("-inf")])
    request = APIRequestFactory().get("/api/v1/events")
    with caplog.at_level("ERROR", logger="infinity.api"):
        for _ in range(3):
            response = errors.api_exception_handler(OperationalError("connection refused\nmore"), {"request": request})
            assert response.status_code == 503 and response["Retry-After"] == "5"
    records = [r for r in caplog.records if r.name == "infinity.api"]
    assert len(records) == 3
    assert records[0].exc_info and not records[1].exc_info and not records[2].exc_info
    assert records[1].getMessage() == "database error on /api/v1/events: connection refused"


def test_a_compressed_body_is_a_415_naming_the_encoding(api):
    import gzip

    body = gzip.compress(b'{"event_name": "zipped"}')
    error = envelope(api.post(EVENT, raw=body, headers={"HTTP_CONTENT_ENCODING": "gzip"}), 415)
    assert "Content-Encoding gzip is not supported" in error["message"]  # was a 400 "body is not valid UTF-8"
    assert api.post(EVENT, {"event_name": "plain"}, headers={"HTTP_CONTENT_ENCODING": "identity"}).status_code == 201
