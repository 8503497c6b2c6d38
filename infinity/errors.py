"""The one error shape: ``{"error": {"code": "UPPER_SNAKE", "message": "…"}}``.

DRF exceptions go through ``api_exception_handler``. Everything else under /api/v1 —
Django's own 400/403/404 pages and unhandled exceptions — is rewritten into the envelope by
``infinity.middleware.ApiEnvelopeMiddleware``, the outermost middleware, via ``error_response``.
"""

import logging
import time

from django.http import JsonResponse
from rest_framework import exceptions
from rest_framework.response import Response

logger = logging.getLogger("infinity.api")

API_PREFIX = "/api/v1/"

_CODES = {
    400: "INVALID_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    406: "NOT_ACCEPTABLE",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    429: "RATE_LIMITED",
    500: "INTERNAL_ERROR",
    503: "SERVICE_UNAVAILABLE",
}

_MESSAGES = {
    400: "Bad request",
    401: "Invalid or missing API key",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed here",
    406: "Not acceptable: this endpoint answers application/json",
    413: "Request body too large",
    415: "Unsupported media type: send application/json",
    429: "Rate limit exceeded",
    500: "Internal server error",
    503: "Service temporarily unavailable",
}


def envelope(status, message=None, code=None, **extra):
    body = {"code": code or _CODES.get(status, "ERROR"), "message": message or _MESSAGES.get(status, "Error")}
    body.update(extra)
    return {"error": body}


def error_response(status, message=None, code=None, **extra):
    """A plain Django JsonResponse in the envelope, for paths outside DRF."""
    return JsonResponse(envelope(status, message, code, **extra), status=status)


def is_api_path(path):
    return path.startswith(API_PREFIX) or path == API_PREFIX.rstrip("/")


def _first_validation_error(detail, field=None):
    """Flatten DRF's nested ValidationError detail to (field, message) of the first error."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = field if key == "non_field_errors" else (f"{field}.{key}" if field else key)
            return _first_validation_error(value, name)
    if isinstance(detail, list) and detail:
        return _first_validation_error(detail[0], field)
    return field, str(detail)


class ServiceUnavailable(exceptions.APIException):
    status_code = 503
    default_detail = _MESSAGES[503]
    default_code = "service_unavailable"


TRACEBACK_EVERY = 60.0  # seconds: an outage fails every request, and a traceback each would flood the log
_last_traceback = [float("-inf")]


def _log_database_error(path, exc):
    """One line per failed request; the traceback at most once a minute per process."""
    now = time.monotonic()
    if now - _last_traceback[0] >= TRACEBACK_EVERY:
        _last_traceback[0] = now
        logger.error("database error on %s (next traceback in %d s at the earliest)", path, TRACEBACK_EVERY, exc_info=exc)
    else:
        first_line = next(iter(str(exc).splitlines()), "") or type(exc).__name__
        logger.error("database error on %s: %s", path, first_line)


def api_exception_handler(exc, context):
    from django.core.exceptions import PermissionDenied
    from django.db import DatabaseError, DataError
    from django.http import Http404

    headers = {}
    if isinstance(exc, Http404):  # as DRF's own handler does (e.g. /schema?format=xml)
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    if isinstance(exc, DataError):  # a value the database refuses is bad input, not an outage
        logger.warning("value refused by the database on %s: %s", context["request"].path, exc)
        return Response(envelope(400, "A value in the request cannot be stored or compared"), status=400)
    if isinstance(exc, DatabaseError):
        _log_database_error(context["request"].path, exc)
        exc = ServiceUnavailable()
        headers["Retry-After"] = "5"
    if isinstance(exc, exceptions.ValidationError):
        field, message = _first_validation_error(exc.detail)
        extra = {"field": field} if field else {}
        return Response(envelope(400, message, **extra), status=400)
    if isinstance(exc, (exceptions.NotAuthenticated, exceptions.AuthenticationFailed)):
        # One body for missing, malformed, unknown and revoked keys.
        return Response(envelope(401), status=401, headers={"WWW-Authenticate": "Bearer"})
    if isinstance(exc, exceptions.Throttled):
        wait = max(1, int(exc.wait or 1))
        return Response(
            envelope(429, f"Rate limit exceeded; retry in {wait} seconds"), status=429, headers={"Retry-After": str(wait)}
        )
    if isinstance(exc, exceptions.MethodNotAllowed):
        return Response(envelope(405, f"Method {context['request'].method} is not allowed here"), status=405)
    if isinstance(exc, exceptions.APIException):
        status = exc.status_code
        code = None
        if isinstance(exc, exceptions.ParseError):
            code = "INVALID_JSON"
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return Response(envelope(status, message, code), status=status, headers=headers)
    return None  # unexpected: Django's 500 handler answers in the envelope
