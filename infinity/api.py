"""The base class of every /api/v1 DRF view."""

from rest_framework.views import APIView


class ApiView(APIView):
    """DRF's APIView with the API's policies from ``REST_FRAMEWORK``: API-key authentication,
    JSON in and out, errors in the envelope. A request refused before its throttle ran (a bad
    key, a missing scope) is counted against the client IP by ``ApiEnvelopeMiddleware``."""
