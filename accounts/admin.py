from django import forms
from django.contrib import admin, messages
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from .keys import announce_key_change, assign_new_secret, parse_scopes
from .models import ALL_SCOPES, DEFAULT_SCOPES, ApiKey, Site
from .passwords import AdminLoginForm


class ApiKeyForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        choices=[(s, s) for s in ALL_SCOPES],
        widget=forms.CheckboxSelectMultiple,
        initial=list(DEFAULT_SCOPES),
        help_text=(
            "A new key can send events and read analytics unless narrowed. data:manage (read and erase a "
            "visitor's events) only when ticked."
        ),
    )
    revoked = forms.BooleanField(required=False, help_text="Revoking takes effect on the next request and cannot be undone.")

    class Meta:
        model = ApiKey
        fields = ["site", "name", "scopes", "expires_at"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk and self.instance.revoked_at:
            self.fields["revoked"].initial = True
            self.fields["revoked"].disabled = True

    def clean_scopes(self):
        try:
            return parse_scopes(self.cleaned_data["scopes"])
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    form = ApiKeyForm
    list_display = ["masked_key", "name", "site", "scope_list", "created_at", "last_used_at", "status"]
    list_filter = ["site"]
    search_fields = ["name", "prefix", "site__domain"]
    readonly_fields = ["masked_key", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke_selected"]

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["site", "name", "scopes", "expires_at"]
        return ["masked_key", "site", "name", "scopes", "expires_at", "revoked", "created_at", "last_used_at", "revoked_at"]

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields + (["site"] if obj else [])

    @admin.display(description="Key")
    def masked_key(self, obj):
        return f"{obj.prefix}…" if obj.prefix else "—"

    @admin.display(description="Scopes")
    def scope_list(self, obj):
        return ", ".join(obj.scopes)

    @admin.display(description="Status")
    def status(self, obj):
        if obj.revoked_at:
            return mark_safe('<span style="color:#b00">revoked</span>')
        if not obj.is_active:
            return "expired"
        return "active"

    def save_model(self, request, obj, form, change):
        raw = None
        if not change:
            raw = assign_new_secret(obj)
        if form.cleaned_data.get("revoked") and obj.revoked_at is None:
            obj.revoked_at = timezone.now()
        super().save_model(request, obj, form, change)
        if raw:
            messages.warning(
                request,
                format_html(
                    'New API key for {}: <code id="new-api-key">{}</code> — copy it now, it will not be shown again.',
                    obj.site.domain,
                    raw,
                ),
            )

    @admin.action(description="Revoke selected API keys")
    def revoke_selected(self, request, queryset):
        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        announce_key_change()
        self.message_user(request, f"Revoked {count} key(s).", messages.SUCCESS)


class ApiKeyInline(admin.TabularInline):
    model = ApiKey
    fields = ["prefix", "name", "scopes", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Site)
class SiteAdmin(admin.ModelAdmin):
    list_display = ["domain", "name", "timezone", "retention_days", "created_at"]
    search_fields = ["domain", "name"]
    inlines = [ApiKeyInline]


admin.site.site_header = "Infinity Metrics"
admin.site.site_title = "Infinity Metrics"
admin.site.index_title = "Administration"
admin.site.login_form = AdminLoginForm  # refuses past the attempt limit (see infinity.urls)


# --- Dashboard access: memberships (who may view which site) and shared links ---------------

from .models import Membership, ShareLink  # noqa: E402


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]
    verbose_name = "viewer"
    verbose_name_plural = "Viewers (users who are not staff and may open this site's dashboard)"


SiteAdmin.inlines = [*SiteAdmin.inlines, MembershipInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "site", "created_at"]
    list_filter = ["site"]
    search_fields = ["user__username", "site__domain"]
    autocomplete_fields = ["user", "site"]


class ShareLinkForm(forms.ModelForm):
    password = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Optional. Viewers enter it once and stay in for 24 hours. Leave empty to keep the current one.",
    )
    remove_password = forms.BooleanField(required=False)
    revoked = forms.BooleanField(required=False, help_text="The link stops working at once; this cannot be undone.")

    class Meta:
        model = ShareLink
        fields = ["site", "name"]


@admin.register(ShareLink)
class ShareLinkAdmin(admin.ModelAdmin):
    form = ShareLinkForm
    list_display = ["__str__", "site", "link", "protected", "created_at", "revoked_at"]
    list_filter = ["site"]
    search_fields = ["name", "site__domain"]
    readonly_fields = ["link", "created_by", "created_at", "revoked_at"]

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["site", "name", "password"]
        return ["link", "site", "name", "password", "remove_password", "revoked", "created_by", "created_at", "revoked_at"]

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields + (["site"] if obj else [])

    @admin.display(description="Link")
    def link(self, obj):
        if not obj.pk:
            return "—"
        return format_html('<a href="/share/{0}/">/share/{0}/</a>', obj.token)

    @admin.display(description="Password", boolean=True)
    def protected(self, obj):
        return obj.has_password

    def save_model(self, request, obj, form, change):
        if form.cleaned_data.get("password"):
            obj.set_password(form.cleaned_data["password"])
        elif form.cleaned_data.get("remove_password"):
            obj.set_password(None)
        if form.cleaned_data.get("revoked") and obj.revoked_at is None:
            obj.revoked_at = timezone.now()
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)
