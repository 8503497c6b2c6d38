"""``GET /api/v1/export?start_date=…&end_date=…&format=ndjson|csv``: every raw event of the key's
site on those days (the site's timezone, both inclusive), streamed (``events.export``). Scope
``data:manage``."""

from datetime import date

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import serializers

from accounts.models import SCOPE_DATA_MANAGE
from accounts.permissions import HasScope
from infinity.api import ApiView
from infinity.openapi import ERROR_RESPONSES, RATE_LIMIT_HEADERS
from infinity.throttling import AnalyticsThrottle

from .export import COLUMNS, FORMATS, day_window, export_chunks

MIN_YEAR, MAX_YEAR = 1970, 9000


def _day(params, name: str) -> date:
    raw = params.get(name)
    if raw is None:
        raise serializers.ValidationError({name: [f"{name} is required (YYYY-MM-DD)"]})
    try:
        day = date.fromisoformat(raw) if len(raw) == 10 else None
    except ValueError:
        day = None
    if day is None:
        raise serializers.ValidationError({name: [f"{name} must be an ISO 8601 date (YYYY-MM-DD), got {raw[:40]!r}"]})
    if not MIN_YEAR <= day.year <= MAX_YEAR:
        raise serializers.ValidationError({name: [f"{name} must be between {MIN_YEAR} and {MAX_YEAR}"]})
    return day


def export_params(params) -> tuple[date, date, str]:
    start, end = _day(params, "start_date"), _day(params, "end_date")
    if start > end:
        raise serializers.ValidationError({"start_date": ["start_date must be on or before end_date"]})
    format = params.get("format", "ndjson")
    if format not in FORMATS:
        raise serializers.ValidationError({"format": [f"format must be one of {', '.join(FORMATS)}, got {format[:40]!r}"]})
    return start, end, format


_ERRORS = {s: r for s, r in ERROR_RESPONSES.items() if s not in (413, 415)}


@extend_schema_view(get=extend_schema(
    operation_id="export_events",
    summary="Export Raw Events",
    description=(
        "Every stored event of the key's site whose timestamp falls on `start_date`…`end_date` (calendar days in "
        "the site's timezone, both inclusive), oldest first, streamed as NDJSON (one JSON object per line) or CSV "
        "(a header line, then one line per event). The columns, in order: "
        + ", ".join(f"`{c}`" for c in COLUMNS)
        + ". `manage.py import_events` reads the same file back. Needs the `data:manage` scope. Counts against "
        "the Analytics API rate limit."
    ),
    parameters=[
        OpenApiParameter("start_date", OpenApiTypes.DATE, required=True, description="First day (YYYY-MM-DD)"),
        OpenApiParameter("end_date", OpenApiTypes.DATE, required=True, description="Last day (YYYY-MM-DD), inclusive"),
        OpenApiParameter("format", {"type": "string", "enum": list(FORMATS), "default": "ndjson"}),
        *RATE_LIMIT_HEADERS,
    ],
    responses={
        (200, "application/x-ndjson"): OpenApiResponse(OpenApiTypes.STR, description="One event per line"),
        (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="A header line, then one event per line"),
        **_ERRORS,
    },
    tags=["Data rights"],
))  # fmt: skip
class ExportView(ApiView):
    permission_classes = [HasScope(SCOPE_DATA_MANAGE)]
    throttle_classes = [AnalyticsThrottle]

    def get(self, request):
        start, end, format = export_params(request.query_params)
        site = request.auth.site
        window = day_window(site=site, start=start, end=end)
        body = (piece for piece, _ in export_chunks(site=site, window=window, format=format))
        response = StreamingHttpResponse(body, content_type=FORMATS[format])
        name = f"{site.domain}-events-{start.isoformat()}-{end.isoformat()}.{format}"
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response
