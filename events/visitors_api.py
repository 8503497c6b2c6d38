"""``DELETE /api/v1/visitors/<visitor_id>`` and ``GET /api/v1/visitors/<visitor_id>/events``:
erase and read the events of a caller-supplied visitor (``events.data_rights``). Scope
``data:manage``, which no key has unless it was granted. The site is the key's: an id unknown
on it is a visitor without events (200, nothing deleted), whatever other sites hold."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema, extend_schema_view, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response

from accounts.models import SCOPE_DATA_MANAGE
from accounts.permissions import HasScope
from infinity.api import ApiView
from infinity.openapi import ERROR_RESPONSES, RATE_LIMIT_HEADERS
from infinity.throttling import AnalyticsThrottle, EventsThrottle

from .data_rights import erase_visitor, event_record, visitor_events
from .models import Event
from .serializers import MAX_VISITOR_ID, NameField

DEFAULT_PAGE = 100
MAX_PAGE = 1000

_visitor_field = NameField(label="visitor_id", max_length=MAX_VISITOR_ID, single_line=False)


def _visitor_id(raw: str) -> str:
    """The id as ingestion normalizes it (stripped, 1-200 characters), or a 400 naming it."""
    try:
        return _visitor_field.to_internal_value(raw)
    except serializers.ValidationError as exc:
        raise serializers.ValidationError({"visitor_id": exc.detail}) from None


def _page_params(params) -> tuple[int | None, int]:
    limit = params.get("limit", str(DEFAULT_PAGE))
    if not limit.isdigit() or not 1 <= int(limit) <= MAX_PAGE:
        raise serializers.ValidationError({"limit": [f"limit must be an integer from 1 to {MAX_PAGE}"]})
    after = params.get("after")
    if after is None:
        return None, int(limit)
    digits = after.removeprefix(Event.PUBLIC_PREFIX)
    if not after.startswith(Event.PUBLIC_PREFIX) or not digits.isdigit() or len(digits) > 19:
        raise serializers.ValidationError({"after": ["after must be the next value of a previous page"]})
    return int(digits), int(limit)


VISITOR_PARAMETER = OpenApiParameter(
    "visitor_id",
    OpenApiTypes.STR,
    OpenApiParameter.PATH,
    description="The `visitor_id` your backend sent with the events (1-200 characters, URL-encoded)",
)
_ERRORS = {s: r for s, r in ERROR_RESPONSES.items() if s not in (413, 415)}


@extend_schema_view(
    delete=extend_schema(
        operation_id="erase_visitor",
        summary="Erase a Visitor",
        description=(
            "Delete every event of a caller-supplied `visitor_id` on the key's site (GDPR art. 17, CCPA "
            "deletion), and stop counting them in analytics at once. Needs the `data:manage` scope. A "
            "visitor without events answers `deleted: 0`. Counts against the Events API rate limit."
        ),
        parameters=[VISITOR_PARAMETER, *RATE_LIMIT_HEADERS],
        responses={
            200: inline_serializer(
                name="VisitorErased",
                fields={"visitor_id": serializers.CharField(), "deleted": serializers.IntegerField(help_text="events deleted")},
            ),
            **_ERRORS,
        },
        examples=[OpenApiExample("erased", response_only=True, value={"visitor_id": "user-4521", "deleted": 37})],
        tags=["Data rights"],
    )
)
class VisitorView(ApiView):
    permission_classes = [HasScope(SCOPE_DATA_MANAGE)]
    throttle_classes = [EventsThrottle]
    http_method_names = ["delete", "options"]

    def delete(self, request, visitor_id):
        visitor_id = _visitor_id(visitor_id)
        deleted = erase_visitor(site=request.auth.site, visitor_id=visitor_id)
        return Response({"visitor_id": visitor_id, "deleted": deleted})


@extend_schema_view(
    get=extend_schema(
        operation_id="get_visitor_events",
        summary="Get a Visitor's Events",
        description=(
            "Every stored event of a caller-supplied `visitor_id` on the key's site, oldest first, a page at a "
            "time (GDPR art. 15 access request). Pass the answer's `next` as `after` for the following page; "
            "`next` is null on the last. Needs the `data:manage` scope. Counts against the Analytics API rate limit."
        ),
        parameters=[
            VISITOR_PARAMETER,
            OpenApiParameter(
                "limit",
                {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": DEFAULT_PAGE},
                description=f"Events per page, 1-{MAX_PAGE}, default {DEFAULT_PAGE}",
            ),
            OpenApiParameter("after", OpenApiTypes.STR, description="The previous page's `next` (an `evt_…` id)"),
            *RATE_LIMIT_HEADERS,
        ],
        responses={
            200: inline_serializer(
                name="VisitorEvents",
                fields={
                    "visitor_id": serializers.CharField(),
                    "events": serializers.ListField(child=serializers.DictField(), help_text="docs/privacy.md lists the fields"),
                    "next": serializers.CharField(allow_null=True, help_text="`after` for the next page; null on the last"),
                },
            ),
            **_ERRORS,
        },
        examples=[
            OpenApiExample(
                "one page",
                response_only=True,
                value={
                    "visitor_id": "user-4521",
                    "events": [
                        {
                            "event_id": "evt_101",
                            "type": "custom",
                            "event_name": "signup",
                            "timestamp": "2024-01-15T10:30:00Z",
                            "received_at": "2024-01-15T10:30:01.204Z",
                            "metadata": {"plan": "pro"},
                            "price": None,
                            "currency": "",
                            "quantity": None,
                            "product_name": "",
                            "hostname": "",
                            "path": "",
                            "referrer": "",
                            "source": "",
                            "utm_source": "",
                            "utm_medium": "",
                            "utm_campaign": "",
                            "utm_term": "",
                            "utm_content": "",
                            "country": "",
                            "browser": "",
                            "os": "",
                            "device": "",
                        },
                    ],
                    "next": None,
                },
            )
        ],
        tags=["Data rights"],
    )
)
class VisitorEventsView(ApiView):
    permission_classes = [HasScope(SCOPE_DATA_MANAGE)]
    throttle_classes = [AnalyticsThrottle]

    def get(self, request, visitor_id):
        visitor_id = _visitor_id(visitor_id)
        after, limit = _page_params(request.query_params)
        try:
            events, more = visitor_events(site=request.auth.site, visitor_id=visitor_id, after=after, limit=limit)
        except ValueError as exc:
            raise serializers.ValidationError({"after": [str(exc)]}) from None
        next_after = Event.public_id(events[-1].pk) if more else None
        return Response({"visitor_id": visitor_id, "events": [event_record(e) for e in events], "next": next_after})
