"""The production URLs plus bench-only views: ``/bench/bare``, the cheapest Django view;
``/api/v1/bench/lean-event``, the event endpoint with DRF taken out; and
``/api/v1/bench/event-<part>``, the event endpoint with one part of its work taken out or
replaced (``bench ingest --parts``), to measure what each part costs."""

import itertools
import os
import time

from django.conf import settings
from django.http import JsonResponse
from django.urls import path
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from rest_framework.response import Response

from accounts.keys import touch_last_used, verify_key
from events.groupcommit import GroupWriter
from events.ingest import BATCH_EVENT, event_row, ingest_one
from events.models import Event
from events.parsers import loads_strict
from events.views import EventView
from infinity.counters import LocalCounters
from infinity.throttling import WINDOW, EventsThrottle, RateLimit, count
from infinity.urls import *  # noqa: F403
from infinity.urls import urlpatterns as production_urlpatterns


@csrf_exempt
def bare(request):
    """Through the same middleware stack, no database, no DRF: the ceiling for a Django view."""
    return JsonResponse({"success": True, "event_id": "evt_0"}, status=201)


@csrf_exempt
def lean_event(request):
    """``POST /api/v1/events`` without DRF, for ``bench ingest --lean``: the same key cache,
    rate-limit round trip, validation and group-committed write, but no Request
    wrapper, parser negotiation, authentication/throttle/permission classes or error handling
    (a bad request is a 500 here). It bounds what the framework costs."""
    api_key = verify_key(request.META["HTTP_AUTHORIZATION"].split()[1])
    count(request, "events", f"key:{api_key.pk}", settings.RATE_LIMITS["events"])
    touch_last_used(api_key)
    data = EventView.serializer.run_validation(loads_strict(request.body))
    event_id = ingest_one(site=api_key.site, kind=BATCH_EVENT, data=data)
    return JsonResponse({"success": True, "event_id": Event.public_id(event_id)}, status=201)


# --- POST /events with one part taken out (``bench ingest --parts``). Each is EventView itself
# (DRF, the key cache, validation, ``ingest_one`` building the row) with only
# the named part changed. None is a way to run the product: the first two answer 201 for rows
# they never stored (``stores_rows``).
_fake_ids = itertools.count(1)  # next() on it is atomic under the GIL


class _NoWrite:
    """A writer that takes the row and stores nothing: no group commit, no PostgreSQL."""

    def write(self, row):
        return next(_fake_ids)


# What a group commit costs when the database costs nothing: the same GroupWriter, over a store
# that sleeps for about a commit's latency (BENCH_SLEEP_WRITE_MS, default 0.5 ms) instead of writing.
_SLEEP_WRITE = float(os.environ.get("BENCH_SLEEP_WRITE_MS", "0.5")) / 1000


def _sleeping_store(rows):
    time.sleep(_SLEEP_WRITE)
    return [next(_fake_ids) for _ in rows]


class _EventWithWriter(EventView):
    """EventView whose row goes to ``writer`` instead of the process's group writer."""

    writer = None
    stores_rows = False

    def post(self, request):
        data = self.serializer.run_validation(request.data)
        row = event_row(site=request.auth.site, kind=self.kind, data=data, now=timezone.now())
        return Response({"success": True, "event_id": Event.public_id(self.writer.write(row))}, status=201)


class EventWithoutWrite(_EventWithWriter):
    """Everything but the write: the row is built, then neither group commit nor PostgreSQL."""

    writer = _NoWrite()


class EventWithSleepingWrite(_EventWithWriter):
    """Everything, but the group commit's store sleeps instead of writing to PostgreSQL."""

    writer = GroupWriter(_sleeping_store)


class _CountInProcess(EventsThrottle):
    """The events limit counted in this process (the fail-open counter) instead of Redis."""

    counters = LocalCounters()

    def allow_request(self, request, view):
        window = int(time.time() // WINDOW)
        hits = self.counters.hit(f"events:key:{request.auth.pk}:{window}", WINDOW + 5)
        limit = settings.RATE_LIMITS["events"]
        request._request.rate_limit = RateLimit(limit, max(0, limit - hits), (window + 1) * WINDOW)
        return hits <= limit


class EventWithoutRedis(EventView):
    """Everything, the write included, but the rate limit's Redis round trip (the key
    generation is still read from Redis)."""

    throttle_classes = [_CountInProcess]
    stores_rows = True


PARTS = {"without-write": EventWithoutWrite, "sleeping-write": EventWithSleepingWrite, "without-redis": EventWithoutRedis}

urlpatterns = [
    path("bench/bare", bare),
    path("api/v1/bench/lean-event", lean_event),
    *[path(f"api/v1/bench/event-{part}", view.as_view()) for part, view in PARTS.items()],
    *production_urlpatterns,
]
