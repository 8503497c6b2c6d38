"""Password guessing limits for the dashboard's password forms (the login, a shared link's
password): django-ratelimit counters per client IP and per username or link."""

from django.conf import settings
from django_ratelimit.core import is_ratelimited

from infinity.clientip import client_ip

LIMITED_MESSAGE = "Too many attempts. For your security, wait a few minutes before you try again."


def attempts_exceeded(request, *, subject: str) -> bool:
    """Count one password attempt from this client IP and for ``subject`` (e.g. ``user:alice``);
    True once either is over its limit."""
    rate = settings.PASSWORD_RATE_LIMIT
    by_ip = is_ratelimited(request, group="password-ip", key=lambda g, r: client_ip(r), rate=rate, increment=True)
    by_subject = is_ratelimited(request, group="password-subject", key=lambda g, r: subject, rate=rate, increment=True)
    return by_ip or by_subject
