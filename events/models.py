import json
from decimal import Decimal

from django.db import models
from django.utils import timezone

from accounts.models import Site


def _positional(number: float) -> str:
    """A float as PostgreSQL's jsonb prints it: positional notation, no negative zero."""
    if number == 0:
        return "0.0"
    text = repr(number)
    return format(Decimal(text), "f") if "e" in text else text


class MetadataEncoder(json.JSONEncoder):
    """Metadata as JSON with every float in positional notation (1e-07 → 0.0000001, 1e+20 →
    100000000000000000000), as PostgreSQL's jsonb stores it. Analytics compare metadata values
    as text, and on SQLite that text is the stored literal (``analytics.query.MetadataText``),
    so both databases answer the same. Metadata is flat (``events.serializers``)."""

    def encode(self, o):
        if isinstance(o, dict) and any(type(v) is float for v in o.values()):
            encode = super().encode
            items = (f"{encode(k)}: {_positional(v) if type(v) is float else encode(v)}" for k, v in o.items())
            return "{" + ", ".join(items) + "}"
        return super().encode(o)


class Kind(models.IntegerChoices):
    PAGEVIEW = 1, "pageview"
    CUSTOM = 2, "custom"
    PURCHASE = 3, "purchase"


class Event(models.Model):
    """One row per page view, custom event or purchase: every metric is one query over it.

    ``occurred_at`` is the event's own time (UTC); ``received_at`` when we stored it.
    ``visitor`` is a 64-bit keyed hash (never an IP or a raw caller id); null means the
    event belongs to no visitor. The public id is derived: ``evt_<id>``.
    """

    id = models.BigAutoField(primary_key=True)
    # No index of its own: both composite indexes below lead with site (one index less to
    # maintain on every insert).
    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="+", db_index=False)
    kind = models.PositiveSmallIntegerField(choices=Kind.choices)
    name = models.CharField(max_length=200)
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField(default=timezone.now)
    visitor = models.BigIntegerField(null=True, blank=True)
    session = models.BigIntegerField(null=True, blank=True)
    # Page and traffic source (tracker events; empty for server-side events).
    hostname = models.CharField(max_length=253, blank=True, default="")
    path = models.CharField(max_length=2000, blank=True, default="")
    referrer = models.CharField(max_length=2000, blank=True, default="")
    source = models.CharField(max_length=100, blank=True, default="")
    utm_source = models.CharField(max_length=200, blank=True, default="")
    utm_medium = models.CharField(max_length=200, blank=True, default="")
    utm_campaign = models.CharField(max_length=200, blank=True, default="")
    utm_term = models.CharField(max_length=200, blank=True, default="")
    utm_content = models.CharField(max_length=200, blank=True, default="")
    # Visitor environment, derived at ingestion; the IP itself is never stored.
    country = models.CharField(max_length=2, blank=True, default="")
    browser = models.CharField(max_length=50, blank=True, default="")
    os = models.CharField(max_length=50, blank=True, default="")
    device = models.CharField(max_length=10, blank=True, default="")
    metadata = models.JSONField(default=dict, blank=True, encoder=MetadataEncoder)
    # Purchases: price per unit in minor units of ``currency`` (ISO 4217, upper case).
    price = models.BigIntegerField(null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True, default="")
    quantity = models.IntegerField(null=True, blank=True)
    product_name = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        indexes = [
            models.Index(fields=["site", "occurred_at"], name="event_site_time"),
            # Session assignment looks up a visitor's latest event: one index range scan.
            models.Index(fields=["site", "visitor", "occurred_at"], name="event_site_visitor_time"),
        ]

    PUBLIC_PREFIX = "evt_"

    @classmethod
    def public_id(cls, event_id: int) -> str:
        """The ``event_id`` the API answers with for the row ``event_id``."""
        return f"{cls.PUBLIC_PREFIX}{event_id}"


class Salt(models.Model):
    """The random key of one UTC day for tracker visitor hashes.

    Today's and yesterday's salts are kept (a visit may cross midnight); older ones are
    deleted, so a visitor id can never be recomputed or linked across days.
    """

    day = models.DateField(unique=True)
    secret = models.BinaryField(max_length=32)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self):
        return f"salt {self.day}"


class IdempotencyKey(models.Model):
    """A client's ``Idempotency-Key`` on one site and the event it stored (``events.idempotency``).

    The (site, key) primary key decides which of concurrent duplicates stores its event, across
    processes; rows older than a day no longer count and are deleted by ``created_at``, so
    forgetting a key never reads the events table."""

    pk = models.CompositePrimaryKey("site", "key")
    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="+", db_index=False)
    key = models.CharField(max_length=200)
    body_hash = models.CharField(max_length=32)
    event_id = models.BigIntegerField()
    created_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["created_at"], name="idempotency_created")]
