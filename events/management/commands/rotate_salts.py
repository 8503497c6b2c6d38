from django.core.management.base import BaseCommand

from events.models import Salt
from events.visitors import rotate_salts


class Command(BaseCommand):
    help = "Create today's visitor salt and delete salts older than 48 hours (run daily, e.g. just after 00:00 UTC)."

    def handle(self, *args, **options):
        rotate_salts()
        days = ", ".join(str(day) for day in Salt.objects.order_by("day").values_list("day", flat=True))
        self.stdout.write(f"salts kept: {days}")
