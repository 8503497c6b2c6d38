"""The site admin's data operations, added here because they concern the events (the accounts
app, underneath, knows nothing of them): "Reset site data" keeps a site and its keys and deletes
its events and rollups; deleting a site lists what goes without loading its events."""

from collections import Counter

from django.contrib import admin, messages
from django.contrib.admin.utils import NestedObjects
from django.db import router
from django.db.models.deletion import Collector
from django.template.response import TemplateResponse
from django.utils.text import capfirst

from accounts.admin import SiteAdmin as AccountsSiteAdmin
from accounts.models import Site

from .data_rights import erase_site_events
from .models import Event


class _CountingCollector(NestedObjects):
    """The admin's collector, except that rows one DELETE removes (events, rollups: nothing
    refers to them) are counted, not loaded to be listed: a site can hold millions."""

    def can_fast_delete(self, *args, **kwargs):
        return Collector.can_fast_delete(self, *args, **kwargs)


admin.site.unregister(Site)


@admin.register(Site)
class SiteAdmin(AccountsSiteAdmin):
    actions = [*AccountsSiteAdmin.actions, "reset_site_data"]

    @admin.action(description="Reset site data (delete every event and rollup)", permissions=["delete"])
    def reset_site_data(self, request, queryset):
        sites = list(queryset.order_by("domain"))
        if request.POST.get("confirmed") != "yes":
            counts = [(site, Event.objects.filter(site=site).count()) for site in sites]
            context = {
                **self.admin_site.each_context(request),
                "title": "Reset site data: are you sure?",
                "opts": self.model._meta,
                "sites": counts,
                "total": sum(count for _, count in counts),
            }
            return TemplateResponse(request, "admin/events/reset_site_data.html", context)
        deleted = sum(erase_site_events(site=site) for site in sites)
        names = ", ".join(site.domain for site in sites)
        self.message_user(request, f"Deleted {deleted:,} events and the rollups of {names}.", messages.SUCCESS)
        return None

    def get_deleted_objects(self, objs, request):
        """As Django's, with the events and rollups counted instead of listed one by one."""
        objs = list(objs)
        if not objs:
            return [], {}, set(), []
        collector = _CountingCollector(using=router.db_for_write(Site), origin=objs)
        collector.collect(objs)
        perms_needed = set()

        def describe(obj):
            opts = obj._meta
            if self.admin_site.is_registered(obj.__class__):
                if not self.admin_site.get_model_admin(obj.__class__).has_delete_permission(request, obj):
                    perms_needed.add(opts.verbose_name)
            return f"{capfirst(opts.verbose_name)}: {obj}"

        to_delete = collector.nested(describe)
        model_count = Counter({model._meta.verbose_name_plural: len(rows) for model, rows in collector.model_objs.items()})
        for rows in collector.fast_deletes:
            count = rows.count()
            if count:
                model_count[rows.model._meta.verbose_name_plural] += count
                to_delete.append(f"{count:,} {rows.model._meta.verbose_name_plural}")
        return to_delete, dict(model_count), perms_needed, [describe(obj) for obj in collector.protected]
