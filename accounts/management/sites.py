"""The ``--site DOMAIN`` option of management commands, looked up one way everywhere."""

from django.core.management.base import CommandError

from accounts.models import Site


def site_named(domain: str) -> Site:
    """The site of ``domain`` as an operator types it (case and spaces as ``Site.save`` stores
    them), or the command's error naming it."""
    site = Site.objects.filter(domain=domain.strip().lower()).first()
    if site is None:
        raise CommandError(f"No site with domain {domain!r}")
    return site
