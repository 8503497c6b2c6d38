from drf_spectacular.utils import extend_schema
from rest_framework.response import Response

from accounts.models import SCOPE_EVENTS_WRITE
from accounts.permissions import HasScope
from infinity.api import ApiView
from infinity.openapi import ERROR_RESPONSES, RATE_LIMIT_HEADERS
from infinity.throttling import EventsThrottle

from .ingest import ingest_event, ingest_purchase
from .openapi import EVENT_EXAMPLES, PURCHASE_EXAMPLES, EventAccepted
from .serializers import EventIn, PurchaseIn


class EventView(ApiView):
    permission_classes = [HasScope(SCOPE_EVENTS_WRITE)]
    throttle_classes = [EventsThrottle]

    @extend_schema(
        operation_id="send_event",
        summary="Send Event",
        description="Send a custom event to your analytics.",
        request=EventIn,
        responses={201: EventAccepted, **ERROR_RESPONSES},
        examples=EVENT_EXAMPLES,
        parameters=RATE_LIMIT_HEADERS,
        tags=["Events"],
    )
    def post(self, request):
        data = EventIn(data=request.data)
        data.is_valid(raise_exception=True)
        event = ingest_event(site=request.auth.site, **data.validated_data)
        return Response({"success": True, "event_id": event.public_id}, status=201)


class PurchaseView(ApiView):
    permission_classes = [HasScope(SCOPE_EVENTS_WRITE)]
    throttle_classes = [EventsThrottle]

    @extend_schema(
        operation_id="send_purchase",
        summary="Send Purchase Event",
        description="Track revenue events through the API. `price` is the unit price in minor units of `currency`.",
        request=PurchaseIn,
        responses={201: EventAccepted, **ERROR_RESPONSES},
        examples=PURCHASE_EXAMPLES,
        parameters=RATE_LIMIT_HEADERS,
        tags=["Events"],
    )
    def post(self, request):
        data = PurchaseIn(data=request.data)
        data.is_valid(raise_exception=True)
        event = ingest_purchase(site=request.auth.site, **data.validated_data)
        return Response({"success": True, "event_id": event.public_id}, status=201)
