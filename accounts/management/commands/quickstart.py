import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from accounts.keys import create_api_key
from accounts.models import Site


class Command(BaseCommand):
    help = "First run: create a staff user and a site with an API key, printing their secrets once."

    def add_arguments(self, parser):
        parser.add_argument("--site", default="localhost", help="Domain of the first site (default: localhost)")
        parser.add_argument("--username", default="admin")

    def handle(self, *args, **options):
        User = get_user_model()
        with transaction.atomic():
            if not User.objects.filter(is_superuser=True).exists():
                password = secrets.token_urlsafe(12)
                User.objects.create_superuser(options["username"], "", password)
                self.stdout.write(
                    f"Admin user: {options['username']} / password: {password}  (sign in at /login/ for the dashboard)"
                )
            else:
                self.stdout.write("An admin user exists already; sign in at /login/ for the dashboard.")
            if Site.objects.exists():
                self.stdout.write("A site exists already; create more keys in the admin (Settings › API keys)")
                self.stdout.write("or with: python manage.py create_api_key --site DOMAIN")
                return
            site = Site.objects.create(domain=options["site"], name=options["site"])
            _, raw = create_api_key(site=site, name="quickstart")
        self.stdout.write(f"Site {site.domain} with an API key (events:write, analytics:read). Store it now:")
        self.stdout.write(raw)
