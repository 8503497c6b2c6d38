from django.db import models
from django.utils import timezone as dj_timezone

SCOPE_EVENTS_WRITE = "events:write"
SCOPE_ANALYTICS_READ = "analytics:read"
ALL_SCOPES = (SCOPE_EVENTS_WRITE, SCOPE_ANALYTICS_READ)


def validate_timezone(value):
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from django.core.exceptions import ValidationError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError(f"Unknown timezone {value!r}") from None


class Site(models.Model):
    """The tenant: every event, key and query belongs to exactly one site."""

    domain = models.CharField(max_length=253, unique=True, help_text="e.g. example.com (no scheme, no path)")
    name = models.CharField(max_length=200, blank=True)
    timezone = models.CharField(max_length=64, default="UTC", validators=[validate_timezone])
    created_at = models.DateTimeField(default=dj_timezone.now, editable=False)

    class Meta:
        ordering = ["domain"]

    def __str__(self):
        return self.domain

    def save(self, *args, **kwargs):
        self.domain = self.domain.strip().lower()
        super().save(*args, **kwargs)


def default_scopes():
    return list(ALL_SCOPES)


class ApiKey(models.Model):
    """A site's credential. Only a keyed hash of the raw key is stored."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=16, editable=False, help_text="The first characters of the key, for recognition")
    secret_hash = models.CharField(max_length=64, unique=True, editable=False)
    scopes = models.JSONField(default=default_scopes)
    created_at = models.DateTimeField(default=dj_timezone.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = "API key"
        verbose_name_plural = "API keys"
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.prefix}… ({self.name or 'unnamed'}, {self.site.domain})"

    @property
    def is_active(self):
        now = dj_timezone.now()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)

    def has_scope(self, scope):
        return scope in self.scopes
