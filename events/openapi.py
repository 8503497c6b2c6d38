from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, inline_serializer
from rest_framework import serializers

from infinity.openapi import ErrorEnvelope

from .idempotency import HEADER, KEY_REUSED, KEY_REUSED_MESSAGE, MAX_KEY, REPLAYED_HEADER

EventAccepted = inline_serializer(
    name="EventAccepted",
    fields={"success": serializers.BooleanField(), "event_id": serializers.CharField(help_text="evt_…")},
)

EVENT_EXAMPLES = [
    OpenApiExample(
        "user_signup",
        request_only=True,
        value={
            "event_name": "user_signup",
            "metadata": {"plan": "premium", "source": "landing_page"},
            "visitor_id": "optional_visitor_id",
            "timestamp": "2024-01-15T10:30:00Z",
        },
    ),
    OpenApiExample("accepted", response_only=True, status_codes=["201"], value={"success": True, "event_id": "evt_123456789"}),
]

PURCHASE_EXAMPLES = [
    OpenApiExample(
        "premium_plan",
        request_only=True,
        value={
            "price": 2999,
            "currency": "USD",
            "product_name": "Premium Plan",
            "quantity": 1,
            "metadata": {"billing": "monthly", "category": "subscription"},
            "visitor_id": "optional_visitor_id",
            "timestamp": "2024-01-15T10:30:00Z",
        },
    ),
    OpenApiExample("accepted", response_only=True, status_codes=["201"], value={"success": True, "event_id": "evt_123456790"}),
]

IDEMPOTENCY_HEADERS = [
    OpenApiParameter(
        HEADER,
        {"type": "string", "minLength": 1, "maxLength": MAX_KEY, "pattern": "^[\\x20-\\x7e]+$"},
        OpenApiParameter.HEADER,
        description=(
            f"Optional: 1-{MAX_KEY} printable ASCII characters, unique per event (a UUID, say). A retry with the same "
            "key on the same site within 24 hours stores nothing and answers the first request's `event_id` and "
            f"status, with `{REPLAYED_HEADER}: true`; the same key with a different body is a 409 `{KEY_REUSED}`."
        ),
    ),
    OpenApiParameter(
        REPLAYED_HEADER, OpenApiTypes.STR, OpenApiParameter.HEADER, response=[201], enum=["true"],
        description="Present on a retry answered from its Idempotency-Key: nothing was stored this time",
    ),
]  # fmt: skip

KEY_REUSED_RESPONSE = OpenApiResponse(
    ErrorEnvelope,
    description="The Idempotency-Key was used within 24 hours with a different body",
    examples=[OpenApiExample(KEY_REUSED, value={"error": {"code": KEY_REUSED, "message": KEY_REUSED_MESSAGE}})],
)
