import logging
import time

from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.middleware.csrf import CsrfViewMiddleware

from infinity.errors import error_response, is_api_path
from infinity.throttling import count_anonymous

logger = logging.getLogger("infinity.api")


class ApiEnvelopeMiddleware:
    """For /api/v1: rate-limit headers on every response, and errors never in HTML.

    DRF views record their throttle state on the request. Anything that never reached a
    throttle (an unknown path, the schema) is counted against the caller's IP here.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not is_api_path(request.path_info):
            return self.get_response(request)
        response = self.get_response(request)
        if response.status_code >= 400 and not response.get("Content-Type", "").startswith("application/json"):
            # Django's own pages (404 in DEBUG, CSRF 403, 400 for a bad Host) are HTML.
            message = f"No endpoint at {request.path}" if response.status_code == 404 else None
            response = error_response(response.status_code, message)
        if getattr(request, "unmetered", False):  # infinity.health: probes are not clients
            return response
        if getattr(request, "rate_limit", None) is None:
            if not count_anonymous(request) and response.status_code < 500:
                response = error_response(429, "Rate limit exceeded")
                response["Retry-After"] = str(max(1, request.rate_limit[2] - int(time.time())))
        limit, remaining, reset = request.rate_limit
        response["X-RateLimit-Limit"] = str(limit)
        response["X-RateLimit-Remaining"] = str(remaining)
        response["X-RateLimit-Reset"] = str(reset)
        return response

    def process_exception(self, request, exception):
        if is_api_path(request.path_info):
            logger.exception("unhandled error on %s %s", request.method, request.path_info)
            return error_response(500)
        return None


class _BrowserOnly:
    """Pass /api/v1 requests straight through: they authenticate by API key, set no cookie,
    answer JSON and are CSRF-exempt, so sessions, users, CSRF and messages would only cost
    time. The admin and every other page get the stock middleware unchanged."""

    def __call__(self, request):
        if is_api_path(request.path_info):
            return self.get_response(request)
        return super().__call__(request)


class BrowserSessionMiddleware(_BrowserOnly, SessionMiddleware):
    pass


class BrowserCsrfViewMiddleware(_BrowserOnly, CsrfViewMiddleware):
    def process_view(self, request, view_func, view_args, view_kwargs):
        if is_api_path(request.path_info):
            return None
        return super().process_view(request, view_func, view_args, view_kwargs)


class BrowserAuthenticationMiddleware(_BrowserOnly, AuthenticationMiddleware):
    pass


class BrowserMessageMiddleware(_BrowserOnly, MessageMiddleware):
    pass
