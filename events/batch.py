"""``POST /api/v1/events/batch``: up to 500 custom or purchase events in one request.

Body: ``{"events": [item, …]}``. An item is the body of ``POST /events`` (a custom event),
or the body of ``POST /events/purchase`` with ``"type": "purchase"``; ``type`` defaults to
``"event"``. Each item is validated on its own by the same serializer as its single-event
endpoint; every valid item is stored in one transaction, committed before the answer.

Answer (200 whenever the batch itself is well-formed, even if items failed)::

    {"success": false, "accepted": 2, "rejected": 1,
     "results": [{"index": 0, "success": true, "event_id": "evt_101"},
                 {"index": 1, "success": false,
                  "error": {"code": "INVALID_REQUEST", "message": "price is required", "field": "price"}},
                 {"index": 2, "success": true, "event_id": "evt_102"}]}

An item may carry an ``idempotency_key`` (``events.idempotency``): an item whose key this site
used within 24 hours stores nothing and answers the first event's id with ``"replayed": true``,
or an ``IDEMPOTENCY_KEY_REUSED`` error when its body differs; so does a later item of the same
batch with the key of an earlier one.

``success`` is true when every item was stored. A malformed batch (not an object, no
``events`` list, 0 or more than 500 items) is a 400 and stores nothing; a body over 1 MB
is a 413. A batch counts as one request against the Events API rate limit.
"""

from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response

from accounts.models import SCOPE_EVENTS_WRITE
from accounts.permissions import HasScope
from infinity.api import ApiView
from infinity.errors import _first_validation_error, envelope
from infinity.openapi import ERROR_RESPONSES, RATE_LIMIT_HEADERS
from infinity.throttling import EventsThrottle

from . import idempotency
from .ingest import BATCH_EVENT, BATCH_PURCHASE, ingest_batch
from .models import Event
from .serializers import MAX_BATCH_ITEMS, BatchIn, EventIn, PurchaseIn

MAX_BATCH_BODY_BYTES = 1024 * 1024
ITEM_SERIALIZERS = {BATCH_EVENT: EventIn, BATCH_PURCHASE: PurchaseIn}


def _item_error(detail) -> dict:
    field, message = _first_validation_error(detail)
    return envelope(400, message, **({"field": field} if field else {}))["error"]


def validate_items(raw_items: list, *, now) -> tuple[list, dict]:
    """Validate each item with EventIn/PurchaseIn → (valid [(index, kind, data)], errors {index: error}).

    One serializer per kind validates every item of that kind (as a ListSerializer's child
    does), so each item gets its own result and the fields are built once per batch.
    """
    serializers_by_kind = {kind: cls(context={"now": now}) for kind, cls in ITEM_SERIALIZERS.items()}
    valid, errors = [], {}
    for index, item in enumerate(raw_items):
        if not isinstance(item, dict):
            errors[index] = _item_error({"non_field_errors": ["Each event must be a JSON object"]})
            continue
        kind = item.get("type", BATCH_EVENT)
        serializer = serializers_by_kind.get(kind) if isinstance(kind, str) else None
        if serializer is None:
            errors[index] = _item_error({"type": ['type must be "event" or "purchase"']})
            continue
        try:
            data = serializer.run_validation(item)
        except serializers.ValidationError as exc:
            errors[index] = _item_error(exc.detail)
            continue
        valid.append((index, kind, data))
    return valid, errors


def item_keys(raw_items: list, valid: list, errors: dict) -> tuple[list, list]:
    """The ``idempotency_key`` of each valid item → (the items whose key is absent or well-formed,
    their keys); a malformed key makes its item an error in ``errors``."""
    kept, keys = [], []
    for index, kind, data in valid:
        try:
            key = idempotency.parse_key(raw_items[index].get(idempotency.BATCH_FIELD), name=idempotency.BATCH_FIELD)
        except ValueError as exc:
            errors[index] = _item_error({idempotency.BATCH_FIELD: [str(exc)]})
            continue
        kept.append((index, kind, data))
        keys.append(key)
    return kept, keys


def _item_result(index: int, outcome) -> dict:
    if isinstance(outcome, idempotency.KeyReused):
        error = envelope(409, str(outcome), idempotency.KEY_REUSED)["error"]
        return {"index": index, "success": False, "error": error}
    if isinstance(outcome, idempotency.Replayed):
        return {"index": index, "success": True, "event_id": Event.public_id(outcome.event_id), "replayed": True}
    return {"index": index, "success": True, "event_id": Event.public_id(outcome)}


BatchResult = inline_serializer(
    name="BatchResult",
    fields={
        "success": serializers.BooleanField(help_text="true when every item was stored"),
        "accepted": serializers.IntegerField(),
        "rejected": serializers.IntegerField(),
        "results": inline_serializer(
            name="BatchItemResult",
            many=True,
            fields={
                "index": serializers.IntegerField(help_text="position in `events`"),
                "success": serializers.BooleanField(),
                "event_id": serializers.CharField(required=False, help_text="evt_…, when stored"),
                "replayed": serializers.BooleanField(
                    required=False,
                    help_text="true when the item's idempotency_key had stored this event_id before: nothing was stored now",
                ),
                "error": inline_serializer(
                    name="BatchItemError",
                    required=False,
                    fields={
                        "code": serializers.CharField(),
                        "message": serializers.CharField(),
                        "field": serializers.CharField(required=False),
                    },
                ),
            },
        ),
    },
)

BATCH_EXAMPLES = [
    OpenApiExample(
        "mixed",
        request_only=True,
        value={
            "events": [
                {
                    "event_name": "user_signup",
                    "metadata": {"plan": "premium"},
                    "visitor_id": "u_42",
                    "timestamp": "2024-01-15T10:30:00Z",
                },
                {
                    "type": "purchase",
                    "price": 2999,
                    "currency": "USD",
                    "product_name": "Premium Plan",
                    "quantity": 1,
                    "visitor_id": "u_42",
                    "timestamp": "2024-01-15T10:31:00Z",
                },
                {"type": "purchase", "currency": "USD", "product_name": "Premium Plan"},
            ]
        },
    ),  # fmt: skip
    OpenApiExample(
        "per-item results",
        response_only=True,
        status_codes=["200"],
        value={
            "success": False,
            "accepted": 2,
            "rejected": 1,
            "results": [
                {"index": 0, "success": True, "event_id": "evt_101"},
                {"index": 1, "success": True, "event_id": "evt_102"},
                {
                    "index": 2,
                    "success": False,
                    "error": {"code": "INVALID_REQUEST", "message": "price is required", "field": "price"},
                },
            ],
        },
    ),  # fmt: skip
]


class BatchView(ApiView):
    permission_classes = [HasScope(SCOPE_EVENTS_WRITE)]
    throttle_classes = [EventsThrottle]
    max_body_bytes = MAX_BATCH_BODY_BYTES

    @extend_schema(
        operation_id="send_event_batch",
        summary="Send a batch of events",
        description=(
            f"Up to {MAX_BATCH_ITEMS} custom events and purchases in one request (body ≤ 1 MB). An item is the body of "
            '`POST /events`, or the body of `POST /events/purchase` with `"type": "purchase"`. Each item is validated '
            "like its single endpoint; all valid items are stored in one transaction before the answer, which reports "
            "each item's result in input order (200 even when some items failed). A malformed batch is a 400 and stores "
            "nothing. A batch counts as one request against the Events API rate limit. An item's optional "
            "`idempotency_key` works as the `Idempotency-Key` header of `POST /events`: a replayed item answers "
            '`"replayed": true` with the first event_id; a key reused with another body is an item error '
            "`IDEMPOTENCY_KEY_REUSED`."
        ),
        request=BatchIn,
        responses={200: BatchResult, **ERROR_RESPONSES},
        examples=BATCH_EXAMPLES,
        parameters=RATE_LIMIT_HEADERS,
        tags=["Events"],
    )
    def post(self, request):
        batch = BatchIn(data=request.data)
        batch.is_valid(raise_exception=True)
        items = batch.validated_data["events"]
        valid, errors = validate_items(items, now=timezone.now())
        valid, keys = item_keys(items, valid, errors)
        pairs = [(kind, data) for _, kind, data in valid]
        stored = ingest_batch(site=request.auth.site, items=pairs, keys=keys) if valid else []
        outcomes = {index: outcome for (index, _, _), outcome in zip(valid, stored, strict=True)}
        results = [
            _item_result(index, outcomes[index])
            if index in outcomes
            else {"index": index, "success": False, "error": errors[index]}
            for index in range(len(items))
        ]
        accepted = sum(result["success"] for result in results)
        body = {"success": accepted == len(items), "accepted": accepted, "rejected": len(items) - accepted, "results": results}
        return Response(body)
