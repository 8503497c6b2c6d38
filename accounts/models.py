from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone as dj_timezone

SCOPE_EVENTS_WRITE = "events:write"
SCOPE_ANALYTICS_READ = "analytics:read"
SCOPE_DATA_MANAGE = "data:manage"  # read and erase a visitor's events: never granted unless asked for
DEFAULT_SCOPES = (SCOPE_EVENTS_WRITE, SCOPE_ANALYTICS_READ)
ALL_SCOPES = (*DEFAULT_SCOPES, SCOPE_DATA_MANAGE)


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
    retention_days = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Keep events of today and this many days before it (in the site's timezone); older days are "
        "deleted, with their rollups, by the rollup timer. Empty: keep forever.",
    )

    class Meta:
        ordering = ["domain"]

    def __str__(self):
        return self.domain

    def save(self, *args, **kwargs):
        self.domain = self.domain.strip().lower()
        super().save(*args, **kwargs)


def default_scopes():
    return list(DEFAULT_SCOPES)


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


class Membership(models.Model):
    """View access to one site's dashboard for a user who is not staff (staff see every site)."""

    user = models.ForeignKey("auth.User", on_delete=models.CASCADE, related_name="site_memberships")
    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="memberships")
    created_at = models.DateTimeField(default=dj_timezone.now, editable=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "site"], name="membership_unique")]
        ordering = ["site__domain", "user__username"]

    def __str__(self):
        return f"{self.user} → {self.site}"


def new_share_token():
    import secrets

    return secrets.token_urlsafe(24)  # 192 random bits


class ShareLink(models.Model):
    """A read-only public dashboard at ``/share/<token>/``; revocable, optionally behind a password.

    The token is kept as is (not hashed) so that the owner can copy the link again: it opens
    one site's dashboard read-only, never settings or keys."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="share_links")
    name = models.CharField(max_length=100, blank=True, help_text="For you: where the link is used")
    token = models.CharField(max_length=64, unique=True, default=new_share_token, editable=False)
    password_hash = models.CharField(max_length=128, blank=True, editable=False)
    created_by = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=dj_timezone.now, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.site.domain}: {self.name or self.token[:8] + '…'}"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @property
    def has_password(self) -> bool:
        return bool(self.password_hash)

    def set_password(self, raw: str | None) -> None:
        from django.contrib.auth.hashers import make_password

        self.password_hash = make_password(raw) if raw else ""

    def check_password(self, raw: str) -> bool:
        from django.contrib.auth.hashers import check_password

        return bool(self.password_hash) and check_password(raw, self.password_hash)
