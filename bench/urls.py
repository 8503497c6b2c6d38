"""The production URLs plus ``/bench/bare``: the cheapest Django view, the ingest baseline."""

from django.http import JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from infinity.urls import *  # noqa: F403
from infinity.urls import urlpatterns as production_urlpatterns


@csrf_exempt
def bare(request):
    """Through the same middleware stack, no database, no DRF: the ceiling for a Django view."""
    return JsonResponse({"success": True, "event_id": "evt_0"}, status=201)


urlpatterns = [path("bench/bare", bare), *production_urlpatterns]
