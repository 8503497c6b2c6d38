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

from accounts.keys import confirm_key, generation_key, key_generation, lookup_key, touch_last_used
from events.groupcommit import GroupWriter
from events.ingest import BATCH_EVENT, event_row, ingest_one
from events.parsers import loads_strict
from events.views import EventView, accepted
from infinity.throttling import EventsThrottle, LocalCounter, consume
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
    (a bad request is a 500 here). It bounds what the framework costs."""
    raw = request.META["HTTP_AUTHORIZATION"].split()[1]
    api_key, seen = lookup_key(raw)
    request.shared_read = generation_key()
    consume(request, "events", f"key:{api_key.pk}", settings.RATE_LIMITS["events"])
    api_key = confirm_key(raw, api_key, seen, request.shared_value)
    touch_last_used(api_key)
    return accepted(ingest_one(site=api_key.site, kind=BATCH_EVENT, data=EventView.validate(loads_strict(request.body))))


# --- POST /events with one part taken out (``bench ingest --parts``). Each is EventView itself
# (DRF, the key cache and confirmation, validation, ``ingest_one`` building the row) with only
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
        data = self.validate(self.json_body(request))
        row = event_row(site=request.auth.site, kind=self.kind, data=data, now=timezone.now())
        return accepted(self.writer.write(row))


class EventWithoutWrite(_EventWithWriter):
    """Everything but the write: the row is built, then neither group commit nor PostgreSQL."""

    writer = _NoWrite()


class EventWithSleepingWrite(_EventWithWriter):
    """Everything, but the group commit's store sleeps instead of writing to PostgreSQL."""

    writer = GroupWriter(_sleeping_store)


class _InProcessStore:
    """The rate limit counted in this process (the fail-open counter) instead of Redis; the key
    generation that rides along with the Redis hit is read once per process instead."""

    def __init__(self):
        self.counter = LocalCounter()
        self.generation = None

    def hit(self, key, ttl, read=None):
        count, _ = self.counter.hit(key, ttl)
        if read is None:
            return count, None
        if self.generation is None:
            self.generation = key_generation()
        return count, self.generation


class _CountInProcess(EventsThrottle):
    store = _InProcessStore()


class EventWithoutRedis(EventView):
    """Everything, the write included, but the rate limit's Redis round trip."""

    throttle_classes = [_CountInProcess]
    stores_rows = True


PARTS = {"without-write": EventWithoutWrite, "sleeping-write": EventWithSleepingWrite, "without-redis": EventWithoutRedis}

urlpatterns = [
    path("bench/bare", bare),
    path("api/v1/bench/lean-event", lean_event),
    *[path(f"api/v1/bench/event-{part}", view.as_view()) for part, view in PARTS.items()],
    *production_urlpatterns,
]
