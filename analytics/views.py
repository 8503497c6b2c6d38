from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema, inline_serializer
from rest_framework import exceptions, serializers
from rest_framework.response import Response

from accounts.models import SCOPE_ANALYTICS_READ
from accounts.permissions import HasScope
from infinity.api import ApiView
from infinity.openapi import ERROR_RESPONSES, RATE_LIMIT_HEADERS
from infinity.throttling import AnalyticsThrottle

from .engine import run_query
from .query import COMPARISONS, DIMENSIONS, MAX_HOURLY_DAYS, MAX_LIMIT, MAX_RANGE_DAYS, METRICS, QueryError, parse_query

_MONEY = {"revenue", "average_order_value"}
_RATIOS = {"bounce_rate", "visit_duration", "views_per_visit", "conversion_rate"}


def _metric_field(name):
    help_text = METRICS[name].description
    if name in _MONEY:
        return serializers.DictField(child=serializers.IntegerField(), required=False, help_text=help_text)
    if name in _RATIOS:
        return serializers.FloatField(required=False, help_text=help_text)
    return serializers.IntegerField(required=False, help_text=help_text)


def _metrics_serializer(name):
    return inline_serializer(name=name, fields={m: _metric_field(m) for m in METRICS})


# One class for every series (the period's and the comparison's): drf-spectacular takes two classes
# of one component name for a conflict (W001, which fails check --deploy).
_SeriesPoint = type(
    inline_serializer(name="SeriesPoint", fields={"date": serializers.CharField(), **{m: _metric_field(m) for m in METRICS}})
)


def _series(help_text):
    return serializers.ListField(child=_SeriesPoint(), required=False, help_text=help_text)


Period = inline_serializer(name="Period", fields={"start": serializers.DateField(), "end": serializers.DateField()})
AnalyticsOut = inline_serializer(
    name="Analytics",
    fields={
        "data": _metrics_serializer("AnalyticsData"),
        "period": Period,
        "series": _series("With `interval`: one point per bucket, empty buckets zero-filled."),
        "breakdown": serializers.ListField(
            child=inline_serializer(
                name="BreakdownRow",
                fields={"value": serializers.CharField(allow_null=True), **{m: _metric_field(m) for m in METRICS}},
            ),
            required=False,
            help_text="With `breakdown`: top `limit` values ordered by the first metric (descending).",
        ),
        "comparison": inline_serializer(
            name="Comparison",
            fields={
                "data": _metrics_serializer("ComparisonData"),
                "period": Period,
                "series": _series("With `interval`: the comparison period's points, bucket by bucket."),
            },
            required=False,
            help_text="With `compare`: the totals (and series) of the previous period or of the same dates a year earlier.",
        ),
        "query": serializers.DictField(required=False, help_text="The normalized query (absent for reference-only requests)."),
        "estimated": inline_serializer(
            name="Estimates",
            fields={
                "relative_standard_error": serializers.FloatField(help_text="Of each estimate: 0.0163 (1.63 %)."),
                "values": serializers.ListField(
                    child=serializers.CharField(),
                    help_text="Paths of the estimated numbers, e.g. `data.unique_visitors`, `series.3.unique_visitors`, "
                    "`breakdown.0.conversion_rate`, `comparison.data.unique_visitors`.",
                ),
            },
            required=False,
            help_text="Present (on requests beyond the reference's three parameters) when a unique-visitor count or a "
            "conversion rate is a HyperLogLog estimate: a union of visitor sets of more than 512 visitors across "
            "rollup buckets. Every other number is exact.",
        ),
    },
)

_DIMENSION_NAMES = ", ".join([*DIMENSIONS, "metadata.<key>"])


class AnalyticsView(ApiView):
    permission_classes = [HasScope(SCOPE_ANALYTICS_READ)]
    throttle_classes = [AnalyticsThrottle]

    @extend_schema(
        operation_id="get_analytics",
        summary="Get Analytics Data",
        description=(
            "Retrieve analytics data for your dashboard: totals, and optionally a time series, a breakdown, "
            "filters and a comparison with the previous period. Dates are inclusive days in the query's "
            "timezone (default: the site's). Metric definitions are in the README (Analytics API)."
        ),
        parameters=[
            OpenApiParameter(
                "start_date", OpenApiTypes.DATE, description="ISO 8601 date (e.g. 2024-01-01); default 29 days before end_date"
            ),
            OpenApiParameter(
                "end_date", OpenApiTypes.DATE, description=f"ISO 8601 date; default today. Range ≤ {MAX_RANGE_DAYS} days"
            ),
            OpenApiParameter(
                "metrics",
                OpenApiTypes.STR,
                description=f"Comma-separated list of {', '.join(METRICS)}; default page_views,unique_visitors,events",
            ),
            OpenApiParameter(
                "interval",
                OpenApiTypes.STR,
                enum=["hour", "day", "week", "month"],
                description=f"Adds `series`; hour allows ranges of ≤ {MAX_HOURLY_DAYS} days",
            ),
            OpenApiParameter("breakdown", OpenApiTypes.STR, description=f"Adds `breakdown` by one of {_DIMENSION_NAMES}"),
            OpenApiParameter(
                "limit",
                {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 10},
                description=f"Breakdown rows, 1–{MAX_LIMIT}, default 10",
            ),
            OpenApiParameter(
                "filters",
                OpenApiTypes.STR,
                description=(
                    "`<dimension><op><value>` joined by `;` (AND); op is `==`, `!=` or `~` (contains, case-insensitive). "
                    "Escape a literal `;` as `\\;` and a backslash as `\\\\`; URL-encode the whole value."
                ),
                examples=[OpenApiExample("page and country", value="page==/pricing;country==DE")],
            ),
            OpenApiParameter(
                "hours",
                {"type": "integer", "minimum": 1, "maximum": 72},
                description="Instead of start_date and end_date: the N hours up to now (e.g. 24 for the last 24 hours); "
                "`period` then names the local days the window touches, and a series only its buckets",
            ),
            OpenApiParameter("timezone", OpenApiTypes.STR, description="IANA timezone name; default the site's timezone"),
            OpenApiParameter(
                "compare",
                OpenApiTypes.STR,
                enum=list(COMPARISONS),
                description="Adds `comparison`: the as many days just before (`previous_period`) or the same dates a year "
                "earlier (`year_over_year`; 29 February compares with 28 February); with `interval`, its series too",
            ),
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
            ),
            OpenApiExample(
                "daily series with revenue",
                response_only=True,
                value={
                    "data": {"visits": 120, "revenue": {"EUR": 1500, "USD": 2999}},
                    "period": {"start": "2024-01-01", "end": "2024-01-02"},
                    "series": [
                        {"date": "2024-01-01", "visits": 70, "revenue": {"USD": 2999}},
                        {"date": "2024-01-02", "visits": 50, "revenue": {"EUR": 1500}},
                    ],
                    "query": {
                        "start_date": "2024-01-01",
                        "end_date": "2024-01-02",
                        "metrics": ["visits", "revenue"],
                        "timezone": "UTC",
                        "interval": "day",
                        "breakdown": None,
                        "limit": None,
                        "filters": None,
                        "compare": None,
                    },
                },
            ),
            OpenApiExample(
                "top pages from Germany",
                response_only=True,
                value={
                    "data": {"page_views": 900, "bounce_rate": 41.5},
                    "period": {"start": "2024-01-01", "end": "2024-01-31"},
                    "breakdown": [
                        {"value": "/", "page_views": 600, "bounce_rate": 45.0},
                        {"value": "/pricing", "page_views": 300, "bounce_rate": 30.12},
                    ],
                    "query": {
                        "start_date": "2024-01-01",
                        "end_date": "2024-01-31",
                        "metrics": ["page_views", "bounce_rate"],
                        "timezone": "UTC",
                        "interval": None,
                        "breakdown": "page",
                        "limit": 2,
                        "filters": "country==DE",
                        "compare": None,
                    },
                },
            ),
        ],
        tags=["Analytics"],
    )
    def get(self, request):
        try:
            query = parse_query(request.query_params, site=request.auth.site)
            return Response(run_query(query))
        except QueryError as exc:
            raise exceptions.ValidationError({exc.param: [exc.message]}) from None
