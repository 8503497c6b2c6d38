from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from accounts.keys import create_api_key, parse_scopes
from accounts.models import DEFAULT_SCOPES, Site


class Command(BaseCommand):
    help = "Create an API key for a site (creating the site if needed). The raw key is the last line printed."

    def add_arguments(self, parser):
        parser.add_argument("--site", required=True, help="Site domain, e.g. example.com")
        parser.add_argument("--name", default="", help="A label for the key")
        parser.add_argument(
            "--scopes",
            default=",".join(DEFAULT_SCOPES),
            help="Comma-separated, of events:write, analytics:read, data:manage (default: the first two)",
        )
        parser.add_argument("--timezone", default=None, help="Timezone for a newly created site (default UTC)")

    def handle(self, *args, **options):
        try:
            scopes = parse_scopes(options["scopes"])
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        domain = options["site"].strip().lower()
        if not domain:
            raise CommandError("--site must not be empty")
        with transaction.atomic():
            site, created = Site.objects.get_or_create(
                domain=domain, defaults={"name": domain, "timezone": options["timezone"] or "UTC"}
            )
            api_key, raw = create_api_key(site=site, name=options["name"], scopes=scopes)
        if created:
            self.stdout.write(f"Created site {site.domain}")
        self.stdout.write(f"Created API key {api_key.prefix}… for {site.domain} with scopes {', '.join(scopes)}")
        self.stdout.write("Store it now; it will not be shown again:")
        self.stdout.write(raw)
