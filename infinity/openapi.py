"""Shared OpenAPI pieces: bearer auth, the error envelope, rate-limit headers."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, inline_serializer
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework import serializers


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "`Authorization: Bearer YOUR_API_KEY` — create keys in the admin under Settings › API keys.",
        }


ErrorEnvelope = inline_serializer(
    name="Error",
    fields={
        "error": inline_serializer(
            name="ErrorBody",
            fields={
                "code": serializers.CharField(help_text="UPPER_SNAKE error code, e.g. INVALID_REQUEST"),
                "message": serializers.CharField(help_text="What went wrong, naming the field"),
                "field": serializers.CharField(required=False, help_text="The offending field, for validation errors"),
            },
        )
    },
)


def _error(description, code, message):
    return OpenApiResponse(
        ErrorEnvelope,
        description=description,
        examples=[OpenApiExample(code, value={"error": {"code": code, "message": message}})],
    )


ERROR_RESPONSES = {
    400: _error("Bad Request", "INVALID_REQUEST", "Event name is required"),
    401: _error("Unauthorized (missing, invalid or revoked API key)", "UNAUTHORIZED", "Invalid or missing API key"),
    403: _error("Forbidden (the key lacks the scope)", "FORBIDDEN", "This API key lacks the 'events:write' scope"),
    413: _error("Request body too large", "PAYLOAD_TOO_LARGE", "Request body exceeds 32768 bytes"),
    415: _error("Unsupported media type", "UNSUPPORTED_MEDIA_TYPE", 'Unsupported media type "text/plain" in request.'),
    429: _error("Rate limited (see Retry-After)", "RATE_LIMITED", "Rate limit exceeded; retry in 12 seconds"),
    500: _error("Internal Server Error", "INTERNAL_ERROR", "Internal server error"),
    503: _error("Database unavailable (see Retry-After)", "SERVICE_UNAVAILABLE", "Service temporarily unavailable"),
}

RATE_LIMIT_HEADERS = [
    OpenApiParameter("X-RateLimit-Limit", OpenApiTypes.INT, OpenApiParameter.HEADER, response=True,
                     description="Requests allowed per minute"),
    OpenApiParameter("X-RateLimit-Remaining", OpenApiTypes.INT, OpenApiParameter.HEADER, response=True,
                     description="Remaining requests in the current window"),
    OpenApiParameter("X-RateLimit-Reset", OpenApiTypes.INT, OpenApiParameter.HEADER, response=True,
                     description="Unix timestamp (seconds) when the window resets"),
    OpenApiParameter("Retry-After", OpenApiTypes.INT, OpenApiParameter.HEADER, response=[429, 503],
                     description="Seconds to wait before retrying"),
]  # fmt: skip


class SchemaView(SpectacularAPIView):
    """``/api/v1/schema``. There is one API version, so ``?version=`` is ignored: otherwise
    drf-spectacular copies whatever bytes the caller sent into the Content-Disposition header."""

    def _get_version_parameter(self, request):
        return None


class DocsView(SpectacularSwaggerView):
    """``/api/v1/docs``. No OPTIONS: the page has no metadata to describe, and DRF's metadata
    answer cannot be rendered by its HTML renderer; it is a 405 like any other method."""

    metadata_class = None
