"""The admin login limits password attempts per client IP and per username, over HTTP."""

import uuid

import pytest
from django.contrib.auth.models import User
from django.test import Client

from accounts.passwords import LIMIT_MESSAGE

from .test_rate_limits import REDIS_URL

LOGIN = "/admin/login/"
PASSWORD = "a-long-password-1"


@pytest.fixture
def staff(db, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast: many attempts
    return User.objects.create_superuser("staff", "staff@example.com", PASSWORD)


@pytest.fixture(autouse=True)
def small_limits(settings):
    settings.PASSWORD_GUESSES_PER_USERNAME = "3/10m"
    settings.PASSWORD_GUESSES_PER_IP = "5/10m"


@pytest.fixture(params=["sqlite counter file", "redis"])
def shared_cache(request, settings):
    """Both caches the limits run on: the SQLite counter file (no REDIS_URL) and Redis."""
    if request.param == "redis":
        settings.CACHES = {
            **settings.CACHES,
            "ratelimit": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": REDIS_URL,
                "KEY_PREFIX": f"test:{uuid.uuid4().hex}",
            },
        }


def attempt(username, password, ip="10.0.0.1", **headers):
    return Client(REMOTE_ADDR=ip, **headers).post(LOGIN, {"username": username, "password": password})


def refused(response):
    return response.status_code == 429 and LIMIT_MESSAGE in response.content.decode()


def test_wrong_passwords_for_one_username_are_refused_past_the_limit(staff, shared_cache):
    assert [attempt("staff", "wrong").status_code for _ in range(3)] == [200, 200, 200]
    fourth = attempt("staff", "wrong")
    assert refused(fourth)
    # Past the limit even the right password is not checked, from any address.
    assert refused(attempt("staff", PASSWORD, ip="10.0.0.2"))
    assert refused(attempt("STAFF ", PASSWORD, ip="10.0.0.3"))


def test_another_username_from_another_address_is_not_affected(staff, shared_cache):
    for _ in range(4):
        attempt("someone", "wrong")
    assert attempt("staff", PASSWORD, ip="10.0.0.9").status_code == 302


def test_one_address_guessing_many_usernames_is_refused_past_the_limit(staff, shared_cache):
    statuses = [attempt(f"user{i}", "wrong").status_code for i in range(5)]
    assert statuses == [200] * 5
    assert refused(attempt("staff", PASSWORD))
    assert attempt("staff", PASSWORD, ip="10.0.0.2").status_code == 302


def test_the_client_address_comes_from_trusted_proxies(staff, settings):
    settings.TRUSTED_PROXIES = ["127.0.0.1"]
    for i in range(5):
        assert attempt(f"user{i}", "wrong", ip="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.7").status_code == 200
    assert refused(attempt("user9", "wrong", ip="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.7"))
    # Another client behind the same proxy has its own budget.
    assert attempt("user9", "wrong", ip="127.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.4").status_code == 200


def test_signing_in_below_the_limit_works(staff, shared_cache):
    attempt("staff", "wrong")
    assert attempt("staff", PASSWORD).status_code == 302
