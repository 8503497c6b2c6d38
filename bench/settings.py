"""Bench-only settings: production settings plus ``bench.urls`` (a bare-view baseline).

Never used in production: the baseline URL exists only when a benchmark starts the server
with ``DJANGO_SETTINGS_MODULE=bench.settings``.
"""

from infinity.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
