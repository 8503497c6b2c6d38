"""The public collector: tracker hits in, enriched page views and custom events out.

``POST /api/v1/collect`` takes ``{domain, url, referrer, name, props, screen, hash}`` as
JSON, usually sent as ``text/plain`` so browsers need no CORS preflight. It needs no API
key: the site is resolved from ``domain``. Every well-formed body gets 202, kept or
dropped, so the answer never reveals whether a site exists.

``collect(hit)`` runs the pipeline, each step enriching the hit or dropping it with a
``DropReason``:

1. ``page``      — the page URL parses as http(s) with a host          (INVALID_URL)
2. ``bot``       — the user agent is no crawler or headless browser    (BOT)
3. ``referrer``  — the referrer is not a known spam domain             (REFERRER_SPAM)
4. ``site``      — ``domain`` names a site (cached in-process briefly) (UNKNOWN_SITE)
5. ``hostname``  — the page host is the site's domain or a subdomain   (HOSTNAME_MISMATCH)
6. ``store``     — source, UTM, browser/OS/device, country; the visitor hash from the daily
   salt; the session; one INSERT. The IP is used for the country and the hash, then dropped.
   A value the database refuses drops the hit                            (INVALID)

Drops are logged at INFO on ``infinity.collector`` (reason and domain, never the IP) and
counted per process in ``DROP_COUNTS``.
"""

import enum
import hashlib
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.db import DataError
from django.http import HttpResponse
from django.utils import timezone
from django.views.decorators.gzip import gzip_page
from django.views.decorators.http import etag
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_field, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response

from accounts.models import Site
from infinity.api import ApiView
from infinity.clientip import client_ip
from infinity.openapi import RATE_LIMIT_HEADERS
from infinity.throttling import CollectorThrottle

from . import enrich
from .ingest import ingest_tracker_row
from .models import Event, Kind
from .parsers import StrictJSONParser
from .serializers import MetadataField, NameField
from .visitors import tracker_visitor_ids

logger = logging.getLogger("infinity.collector")

PAGEVIEW = "pageview"
MAX_COLLECTOR_BODY = 16 * 1024
MAX_EVENT_NAME = 120
MAX_DOMAIN = 253
SITE_CACHE_SECONDS = 10
SITE_CACHE_SIZE = 10_000


class DropReason(enum.StrEnum):
    INVALID_URL = "INVALID_URL"
    BOT = "BOT"
    REFERRER_SPAM = "REFERRER_SPAM"
    UNKNOWN_SITE = "UNKNOWN_SITE"
    HOSTNAME_MISMATCH = "HOSTNAME_MISMATCH"
    INVALID = "INVALID"  # a value the database refused (a DataError): dropped, so the answer stays 202


DROP_COUNTS: Counter = Counter()


# --- Input ------------------------------------------------------------------------------


class TextJSONParser(StrictJSONParser):
    """JSON sent as ``text/plain`` (a CORS "simple request"): same strict rules as JSON."""

    media_type = "text/plain"


@extend_schema_field(OpenApiTypes.STR)
class _Text(serializers.Field):
    """A string (or null → ""); length is judged by the pipeline, not here."""

    def to_internal_value(self, data):
        if data is None:
            return ""
        if not isinstance(data, str):
            raise serializers.ValidationError(f"{self.field_name} must be a string")
        return data

    def to_representation(self, value):
        return value


class CollectorIn(serializers.Serializer):
    domain = NameField(label="domain", max_length=MAX_DOMAIN)
    url = _Text(error_messages={"required": "url is required", "null": "url is required"})
    referrer = _Text(required=False, allow_null=True, default="")
    name = NameField(label="name", max_length=MAX_EVENT_NAME, required=False, default=PAGEVIEW)
    props = MetadataField(required=False, allow_null=True, default=dict)
    screen = serializers.IntegerField(required=False, allow_null=True, min_value=0, max_value=100_000)
    hash = serializers.BooleanField(required=False, default=False)

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise serializers.ValidationError({"non_field_errors": ["Request body must be a JSON object"]})
        return super().to_internal_value(data)


@dataclass(frozen=True)
class Hit:
    """One validated tracker request. ``ip`` lives only as long as this value."""

    domain: str
    url: str
    referrer: str
    name: str
    props: dict
    hash_mode: bool
    user_agent: str
    ip: str


@dataclass(frozen=True)
class Outcome:
    event_id: int | None = None
    dropped: DropReason | None = None

    @property
    def event(self) -> Event | None:
        """The stored event, read back (a query: for tests and tools, not the request path)."""
        return None if self.event_id is None else Event.objects.get(pk=self.event_id)


class Dropped(Exception):
    def __init__(self, reason: DropReason):
        super().__init__(reason)
        self.reason = reason


# --- Site resolution --------------------------------------------------------------------

_site_cache: dict[str, tuple[float, int | None, str]] = {}
_site_cache_lock = threading.Lock()


def forget_cached_sites() -> None:
    with _site_cache_lock:
        _site_cache.clear()


def _lookup_site(domain: str) -> tuple[int | None, str]:
    candidates = [domain] + ([domain[4:]] if domain.startswith("www.") else [])
    rows = dict(Site.objects.filter(domain__in=candidates).values_list("domain", "pk"))
    for candidate in candidates:
        if candidate in rows:
            return rows[candidate], candidate
    return None, ""


def resolve_site(domain: str) -> tuple[int | None, str]:
    """(site id, site domain) for a payload's ``domain``; unknown domains are cached too."""
    domain = domain.strip().lower().rstrip(".")
    now = time.monotonic()
    cached = _site_cache.get(domain)
    if cached and cached[0] > now:
        return cached[1], cached[2]
    site_id, site_domain = _lookup_site(domain)
    with _site_cache_lock:
        if len(_site_cache) >= SITE_CACHE_SIZE:
            _site_cache.clear()
        _site_cache[domain] = (now + SITE_CACHE_SECONDS, site_id, site_domain)
    return site_id, site_domain


# --- The pipeline -----------------------------------------------------------------------


def _page(hit: Hit) -> enrich.Page:
    if len(hit.url) > enrich.MAX_PATH:
        raise Dropped(DropReason.INVALID_URL)
    page = enrich.parse_page_url(hit.url, keep_hash=hit.hash_mode)
    if page is None:
        raise Dropped(DropReason.INVALID_URL)
    return page


def _reject_bots(hit: Hit) -> None:
    if enrich.is_bot(hit.user_agent):
        raise Dropped(DropReason.BOT)


def _referrer(hit: Hit) -> str:
    host = enrich.referrer_host(hit.referrer)
    if host and enrich.is_referrer_spam(host, tuple(getattr(settings, "REFERRER_SPAM_DOMAINS", ()))):
        raise Dropped(DropReason.REFERRER_SPAM)
    return host


def _site(hit: Hit) -> tuple[int, str]:
    site_id, site_domain = resolve_site(hit.domain)
    if site_id is None:
        raise Dropped(DropReason.UNKNOWN_SITE)
    return site_id, site_domain


def _check_hostname(page: enrich.Page, site_domain: str) -> None:
    if not enrich.host_belongs_to(page.hostname, site_domain):
        raise Dropped(DropReason.HOSTNAME_MISMATCH)


def _store(hit: Hit, *, page: enrich.Page, referrer_host: str, site_id: int, site_domain: str, now: datetime) -> int:
    """The hit's row, stored with the session of either of its visitor ids; its id, committed."""
    source = enrich.traffic_source(referrer_host=referrer_host, page=page, site_domain=site_domain)
    agent = enrich.parse_user_agent(hit.user_agent)
    current, previous = tracker_visitor_ids(site_id=site_id, ip=hit.ip, user_agent=hit.user_agent, now=now)
    is_pageview = hit.name == PAGEVIEW
    return ingest_tracker_row({
        "site_id": site_id,
        "kind": int(Kind.PAGEVIEW if is_pageview else Kind.CUSTOM),
        "name": hit.name,
        "occurred_at": now,
        "received_at": now,
        "visitor": current,
        "earlier_visitor": previous,
        "session": None,
        "hostname": enrich.bare_host(page.hostname)[:253],
        "path": page.path,
        "referrer": enrich.stored_referrer(hit.referrer) if source and referrer_host else "",
        "source": source,
        **page.utm,
        "country": enrich.country_for_ip(hit.ip),
        "browser": agent.browser,
        "os": agent.os,
        "device": agent.device,
        "metadata": {} if is_pageview else hit.props,
    })  # fmt: skip


def collect(hit: Hit, *, now: datetime | None = None) -> Outcome:
    """Run the collector pipeline for one hit: store it, or drop it with a reason."""
    now = now or timezone.now()
    try:
        page = _page(hit)
        _reject_bots(hit)
        referrer_host = _referrer(hit)
        site_id, site_domain = _site(hit)
        _check_hostname(page, site_domain)
        try:
            event_id = _store(hit, page=page, referrer_host=referrer_host, site_id=site_id, site_domain=site_domain, now=now)
        except DataError:  # like an unknown site, a refused value must not show in the answer
            raise Dropped(DropReason.INVALID) from None
    except Dropped as drop:
        DROP_COUNTS[drop.reason] += 1
        logger.info("collector dropped a hit: reason=%s domain=%.100s", drop.reason, hit.domain)
        return Outcome(dropped=drop.reason)
    return Outcome(event_id=event_id)


# --- HTTP -------------------------------------------------------------------------------

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type",
    "Access-Control-Max-Age": "86400",
}


class CollectorView(ApiView):
    """Public: no API key, a per-IP rate limit, CORS open to every origin (no credentials)."""

    authentication_classes = []
    permission_classes = []
    throttle_classes = [CollectorThrottle]
    parser_classes = [TextJSONParser, StrictJSONParser]
    max_body_bytes = MAX_COLLECTOR_BODY

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        for name, value in CORS_HEADERS.items():
            response[name] = value
        return response

    @extend_schema(exclude=True)
    def options(self, request, *args, **kwargs):
        return Response(status=204)

    @extend_schema(
        operation_id="collect",
        summary="Collect a tracker hit (public)",
        description=(
            "Used by the tracking script (`/js/script.js`); needs no API key. Send JSON as `text/plain` "
            "(or `application/json`), at most 16 KB. Answers 202 to every well-formed body, whether the "
            "hit was kept or dropped (unknown site, hostname mismatch, bot, referrer spam, invalid URL)."
        ),
        request=CollectorIn,
        responses={
            202: inline_serializer("CollectorAccepted", {"accepted": serializers.BooleanField()}),
            400: OpenApiTypes.OBJECT,
            413: OpenApiTypes.OBJECT,
            429: OpenApiTypes.OBJECT,
        },
        examples=[
            OpenApiExample(
                "page view",
                request_only=True,
                value={
                    "domain": "example.com",
                    "url": "https://example.com/pricing?utm_source=newsletter",
                    "referrer": "https://www.google.com/",
                    "name": "pageview",
                    "screen": 1440,
                },
            )
        ],
        parameters=RATE_LIMIT_HEADERS,
        auth=[],
        tags=["Tracking"],
    )
    def post(self, request):
        data = CollectorIn(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        collect(
            Hit(
                domain=values["domain"],
                url=values["url"],
                referrer=values["referrer"],
                name=values["name"],
                props=values["props"] or {},
                hash_mode=values["hash"],
                user_agent=request.META.get("HTTP_USER_AGENT", ""),
                ip=client_ip(request),
            )
        )
        return Response({"accepted": True}, status=202)


# --- The tracking script ----------------------------------------------------------------

SCRIPT_PATH = Path(__file__).resolve().parent / "static" / "js" / "script.js"
SCRIPT_MAX_AGE = 86400


def _script_etag(request):
    return hashlib.sha256(SCRIPT_PATH.read_bytes()).hexdigest()[:16]


@gzip_page
@etag(_script_etag)
def tracking_script(request):
    """``/js/script.js``: cacheable for a day by browsers and CDNs, loadable from any origin."""
    response = HttpResponse(SCRIPT_PATH.read_bytes(), content_type="application/javascript; charset=utf-8")
    response["Cache-Control"] = f"public, max-age={SCRIPT_MAX_AGE}"
    response["Access-Control-Allow-Origin"] = "*"
    response["Cross-Origin-Resource-Policy"] = "cross-origin"
    return response
