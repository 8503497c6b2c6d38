from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import serializers
from rest_framework.response import Response

from accounts.models import SCOPE_EVENTS_WRITE
from accounts.permissions import HasScope
from infinity.api import ApiView
from infinity.errors import envelope
from infinity.openapi import ERROR_RESPONSES, RATE_LIMIT_HEADERS
from infinity.throttling import EventsThrottle

from . import idempotency
from .ingest import BATCH_EVENT, BATCH_PURCHASE, ingest_keyed, ingest_one
from .models import Event
from .openapi import (
    EVENT_EXAMPLES,
    IDEMPOTENCY_HEADERS,
    KEY_REUSED_RESPONSE,
    PURCHASE_EXAMPLES,
    EventAccepted,
)
from .serializers import EventIn, PurchaseIn


def _send_schema(operation_id, summary, description, request, examples):
    return extend_schema_view(
        post=extend_schema(
            operation_id=operation_id,
            summary=summary,
            description=description,
            request=request,
            responses={201: EventAccepted, **ERROR_RESPONSES, 409: KEY_REUSED_RESPONSE},
            examples=examples,
            parameters=[*IDEMPOTENCY_HEADERS, *RATE_LIMIT_HEADERS],
            tags=["Events"],
        )
    )


class _SendView(ApiView):
    """Validate the body with ``serializer``, store it as a ``kind``, answer with its public id.

    One serializer per view validates every request through ``run_validation`` (as a
    ListSerializer's child validates each item): a new serializer per request copies and
    rebuilds all its fields, which cost more than the rest of the request's validation.
    """

    permission_classes = [HasScope(SCOPE_EVENTS_WRITE)]
    throttle_classes = [EventsThrottle]
    serializer: serializers.Serializer
    kind: str

    def post(self, request):
        try:
            key = idempotency.parse_key(request.headers.get(idempotency.HEADER))
        except ValueError as exc:
            raise serializers.ValidationError({idempotency.HEADER: [str(exc)]}) from None
        data = self.serializer.run_validation(request.data)
        if key is None:
            event_id = ingest_one(site=request.auth.site, kind=self.kind, data=data)
            return Response({"success": True, "event_id": Event.public_id(event_id)}, status=201)
        try:
            event_id, replayed = ingest_keyed(site=request.auth.site, kind=self.kind, data=data, key=key)
        except idempotency.KeyReused as exc:
            return Response(envelope(409, str(exc), idempotency.KEY_REUSED), status=409)
        headers = {idempotency.REPLAYED_HEADER: "true"} if replayed else None
        return Response({"success": True, "event_id": Event.public_id(event_id)}, status=201, headers=headers)


@_send_schema("send_event", "Send Event", "Send a custom event to your analytics.", EventIn, EVENT_EXAMPLES)
class EventView(_SendView):
    serializer = EventIn()
    kind = BATCH_EVENT


@_send_schema(
    "send_purchase",
    "Send Purchase Event",
    "Track revenue events through the API. `price` is the unit price in minor units of `currency`.",
    PurchaseIn,
    PURCHASE_EXAMPLES,
)
class PurchaseView(_SendView):
    serializer = PurchaseIn()
    kind = BATCH_PURCHASE
