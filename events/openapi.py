from drf_spectacular.utils import OpenApiExample, inline_serializer
from rest_framework import serializers

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
