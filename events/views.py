from django.http import HttpResponse
from drf_spectacular.utils import extend_schema, extend_schema_view

from accounts.models import SCOPE_EVENTS_WRITE
from accounts.permissions import HasScope
from infinity.api import ApiView
from infinity.openapi import ERROR_RESPONSES, RATE_LIMIT_HEADERS
from infinity.throttling import EventsThrottle

from .ingest import BATCH_EVENT, BATCH_PURCHASE, ingest_one
from .models import Event
from .openapi import EVENT_EXAMPLES, PURCHASE_EXAMPLES, EventAccepted
from .serializers import BoundValidator, EventIn, PurchaseIn


def _send_schema(operation_id, summary, description, request, examples):
    return extend_schema_view(
        post=extend_schema(
            operation_id=operation_id,
            summary=summary,
            description=description,
            request=request,
            responses={201: EventAccepted, **ERROR_RESPONSES},
            examples=examples,
            parameters=RATE_LIMIT_HEADERS,
            tags=["Events"],
        )
    )


def accepted(event_id: int) -> HttpResponse:
    """The 201 of a stored event, its two-key body written directly: DRF's Response, renderer
    and template-response machinery cost 7 % of an event request's instructions (callgrind);
    JsonResponse's json.dumps was another ~6 % of its sampled time (py-spy)."""
    body = b'{"success":true,"event_id":"%s"}' % Event.public_id(event_id).encode()
    return HttpResponse(body, status=201, content_type="application/json")


class _SendView(ApiView):
    """Validate one body with ``validate``, store it as a ``kind``, answer with its public id."""

    permission_classes = [HasScope(SCOPE_EVENTS_WRITE)]
    throttle_classes = [EventsThrottle]
    validate: BoundValidator  # bound once per process, not a serializer per request
    kind: str

    def post(self, request):
        event_id = ingest_one(site=request.auth.site, kind=self.kind, data=self.validate(self.json_body(request)))
        return accepted(event_id)


@_send_schema("send_event", "Send Event", "Send a custom event to your analytics.", EventIn, EVENT_EXAMPLES)
class EventView(_SendView):
    validate = BoundValidator(EventIn, {})
    kind = BATCH_EVENT


@_send_schema(
    "send_purchase",
    "Send Purchase Event",
    "Track revenue events through the API. `price` is the unit price in minor units of `currency`.",
    PurchaseIn,
    PURCHASE_EXAMPLES,
)
class PurchaseView(_SendView):
    validate = BoundValidator(PurchaseIn, {})
    kind = BATCH_PURCHASE
