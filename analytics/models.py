"""Rollups: derived data, always rebuildable from events (``manage.py rollup --rebuild``)."""

from django.db import models

from accounts.models import Site


class RolledBucket(models.Model):
    """A closed time bucket [start, end) of a site whose tallies are in ``Rollup``.

    ``grain`` is ``day`` (a local day in ``timezone``) or ``hour`` (a local hour of a day
    not closed yet or of the last ``rollups.HOUR_DAYS`` days). ``dimensions`` lists the dimension keys rolled up for it;
    ``watermark`` is the highest event id when it was built. A bucket is rolled up twice:
    *provisional* a minute after it ends (its event metrics are final) and *final* once
    ``VISIT_WINDOW`` has passed too (its visit metrics are final).
    """

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="+")
    grain = models.CharField(max_length=4)
    start = models.DateTimeField()
    end = models.DateTimeField()
    timezone = models.CharField(max_length=64)
    dimensions = models.JSONField(default=list)
    watermark = models.BigIntegerField(default=0)
    final = models.BooleanField(default=True)  # False: visits starting in it may still change
    built_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["site", "grain", "start"], name="rolled_bucket_unique")]
        indexes = [models.Index(fields=["site", "start"], name="rolled_bucket_site_start")]


class Rollup(models.Model):
    """The tally of one (bucket, dimension, value); dimension '' is the bucket's totals."""

    id = models.BigAutoField(primary_key=True)
    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="+")
    grain = models.CharField(max_length=4)
    start = models.DateTimeField()
    dimension = models.CharField(max_length=250)
    value = models.TextField(blank=True, default="")
    page_views = models.BigIntegerField(default=0)
    events = models.BigIntegerField(default=0)
    purchases = models.BigIntegerField(default=0)
    revenue = models.JSONField(default=dict)
    orders = models.JSONField(default=dict)
    visitors = models.BinaryField()
    visitor_count = models.BigIntegerField(default=0)
    buyers = models.BinaryField()
    buyer_count = models.BigIntegerField(default=0)
    visits = models.BigIntegerField(default=0)
    bounces = models.BigIntegerField(default=0)
    duration_us = models.BigIntegerField(default=0)
    visit_page_views = models.BigIntegerField(default=0)

    class Meta:
        indexes = [models.Index(fields=["site", "dimension", "start"], name="rollup_site_dim_start")]


class RollupCursor(models.Model):
    """Events with ``id > last_id`` have not been checked for landing in rolled buckets."""

    last_id = models.BigIntegerField(default=0)
    checked_at = models.DateTimeField(null=True)
