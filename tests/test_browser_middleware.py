"""The admin keeps Django's browser middleware (sessions, CSRF, users, messages); /api/v1 skips it."""

import pytest
from django.contrib.auth.models import User
from django.test import Client


@pytest.fixture
def staff(db):
    return User.objects.create_superuser("staff", "staff@example.com", "a-long-password-1")


def test_admin_login_still_requires_a_csrf_token(staff):
    browser = Client(enforce_csrf_checks=True)
    refused = browser.post("/admin/login/", {"username": "staff", "password": "a-long-password-1"})
    assert refused.status_code == 403  # no token

    page = browser.get("/admin/login/")
    assert page["X-Frame-Options"] == "DENY"
    token = page.cookies["csrftoken"].value
    signed_in = browser.post(
        "/admin/login/?next=/admin/", {"username": "staff", "password": "a-long-password-1", "csrfmiddlewaretoken": token}
    )
    assert signed_in.status_code == 302 and signed_in["Location"] == "/admin/"
    assert browser.get("/admin/").status_code == 200  # the session cookie signs the next request in


def test_the_api_sets_no_cookie_and_ignores_a_session(api, staff):
    browser = Client()
    browser.force_login(staff)
    sent = browser.post(
        "/api/v1/events",
        {"event_name": "signup"},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {api.key}",
    )
    assert sent.status_code == 201 and sent.json()["event_id"].startswith("evt_")
    assert not sent.cookies and "Cookie" not in sent.get("Vary", "")
    assert sent["X-Frame-Options"] == "DENY"  # kept everywhere (the API docs page is HTML)
    # A signed-in admin's session is not a credential for the API.
    assert browser.post("/api/v1/events", {"event_name": "x"}, content_type="application/json").status_code == 401
