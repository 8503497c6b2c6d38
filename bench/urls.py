"""The production URLs plus two bench-only views: ``/bench/bare``, the cheapest Django view (the
ingest baseline), and ``/api/v1/bench/lean-event``, the event endpoint with DRF taken out."""

from django.conf import settings
from django.http import JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from accounts.keys import confirm_key, generation_key, lookup_key, touch_last_used
from events.ingest import BATCH_EVENT, ingest_one
from events.parsers import loads_strict
from events.views import EventView, accepted
from infinity.throttling import consume
from infinity.urls import *  # noqa: F403
from infinity.urls import urlpatterns as production_urlpatterns


@csrf_exempt
def bare(request):
    """Through the same middleware stack, no database, no DRF: the ceiling for a Django view."""
    return JsonResponse({"success": True, "event_id": "evt_0"}, status=201)


@csrf_exempt
def lean_event(request):
    """``POST /api/v1/events`` without DRF, for ``bench ingest --lean``: the same key cache and
    confirmation, rate-limit round trip, validation and group-committed write, but no Request
    wrapper, parser negotiation, authentication/throttle/permission classes or error handling
    (a bad request is a 500 here). It bounds what the framework costs the ingest ratio."""
    raw = request.META["HTTP_AUTHORIZATION"].split()[1]
    api_key, seen = lookup_key(raw)
    request.shared_read = generation_key()
    consume(request, "events", f"key:{api_key.pk}", settings.RATE_LIMITS["events"])
    api_key = confirm_key(raw, api_key, seen, request.shared_value)
    touch_last_used(api_key)
    return accepted(ingest_one(site=api_key.site, kind=BATCH_EVENT, data=EventView.validate(loads_strict(request.body))))


urlpatterns = [path("bench/bare", bare), path("api/v1/bench/lean-event", lean_event), *production_urlpatterns]
