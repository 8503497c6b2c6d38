"""Password guessing: every form that checks a password is limited per client IP and per username.

``limit_password_guesses`` wraps the view: each POST counts against the client's IP and the
submitted username (django-ratelimit, in the shared ``ratelimit`` cache). Past either limit
the view runs with django-ratelimit's ``request.limited`` set, a form built on
``RefuseWhenLimited`` answers with ``LIMIT_MESSAGE`` without checking the password, and the
response is a 429.
"""

import logging
from functools import wraps

from django import forms
from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django_ratelimit.core import is_ratelimited

from infinity.clientip import client_ip

logger = logging.getLogger("infinity.passwords")

LIMIT_MESSAGE = "Too many sign-in attempts. Wait a few minutes, then try again."


def _ip(group, request):
    return client_ip(request)


def _limited(request, username_field: str) -> bool:
    username = request.POST.get(username_field, "").strip().lower()
    checks = [("password:ip", _ip, settings.PASSWORD_GUESSES_PER_IP)]
    if username:
        checks.append(("password:username", lambda group, request: username, settings.PASSWORD_GUESSES_PER_USERNAME))
    try:
        # Every check counts the attempt, so each limit sees all of them.
        results = [is_ratelimited(request, group=g, key=key, rate=rate, method="POST", increment=True) for g, key, rate in checks]
    except Exception as exc:  # a cache outage must not lock everyone out of signing in
        logger.warning("password attempt limits unavailable (%s); not limiting this attempt", exc)
        return False
    return any(results)


def limit_password_guesses(view=None, *, username_field="username"):
    """Decorate a view whose POST checks a password (see the module docstring)."""

    def decorate(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            limited = request.method == "POST" and _limited(request, username_field)
            request.limited = limited or getattr(request, "limited", False)
            response = view(request, *args, **kwargs)
            if limited and response.status_code == 200:
                response.status_code = 429
            return response

        return wrapped

    return decorate(view) if view is not None else decorate


class RefuseWhenLimited:
    """For a form with ``self.request``: past the limit, refuse before the password is checked."""

    def clean(self):
        if getattr(self.request, "limited", False):
            raise forms.ValidationError(LIMIT_MESSAGE, code="too_many_attempts")
        return super().clean()


class AdminLoginForm(RefuseWhenLimited, AdminAuthenticationForm):
    pass
