from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema, inline_serializer
from rest_framework import exceptions, serializers
from rest_framework.response import Response

from accounts.models import SCOPE_ANALYTICS_READ
from accounts.permissions import HasScope
from infinity.api import ApiView
from infinity.openapi import ERROR_RESPONSES, RATE_LIMIT_HEADERS
from infinity.throttling import AnalyticsThrottle

from .query import METRICS, QueryError, parse_query, run_query

AnalyticsOut = inline_serializer(
    name="Analytics",
    fields={
        "data": inline_serializer(name="AnalyticsData", fields={name: serializers.IntegerField(required=False) for name in METRICS}),
        "period": inline_serializer(name="Period", fields={"start": serializers.DateField(), "end": serializers.DateField()}),
    },
)


class AnalyticsView(ApiView):
    permission_classes = [HasScope(SCOPE_ANALYTICS_READ)]
    throttle_classes = [AnalyticsThrottle]

    @extend_schema(
        operation_id="get_analytics",
        summary="Get Analytics Data",
        description="Retrieve analytics data for your dashboard. Dates are inclusive days in the site's timezone.",
        parameters=[
            OpenApiParameter("start_date", OpenApiTypes.DATE, description="ISO 8601 date (e.g. 2024-01-01); default 29 days before end_date"),
            OpenApiParameter("end_date", OpenApiTypes.DATE, description="ISO 8601 date (e.g. 2024-01-31); default today"),
            OpenApiParameter("metrics", OpenApiTypes.STR, description=f"Comma-separated list of {', '.join(METRICS)}; default all"),
            *RATE_LIMIT_HEADERS,
        ],
        responses={200: AnalyticsOut, **{s: r for s, r in ERROR_RESPONSES.items() if s not in (413, 415)}},
        examples=[
            OpenApiExample(
                "january",
                response_only=True,
                value={
                    "data": {"page_views": 15420, "unique_visitors": 3247, "events": 892},
                    "period": {"start": "2024-01-01", "end": "2024-01-31"},
                },
            )
        ],
        tags=["Analytics"],
    )
    def get(self, request):
        try:
            query = parse_query(request.query_params, site=request.auth.site)
        except QueryError as exc:
            raise exceptions.ValidationError({exc.param: [exc.message]}) from None
        return Response(run_query(query))
