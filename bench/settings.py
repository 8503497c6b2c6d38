"""Bench-only settings: production settings plus ``bench.urls`` (a bare-view baseline).

Never used in production: the baseline URL exists only when a benchmark starts the server
with ``DJANGO_SETTINGS_MODULE=bench.settings``.
"""

from infinity.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"

# Experiments only (e.g. BENCH_CONN_HEALTH_CHECKS=false measures the per-request "SELECT 1").
import os  # noqa: E402

if os.environ.get("BENCH_CONN_HEALTH_CHECKS") is not None:
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = os.environ["BENCH_CONN_HEALTH_CHECKS"].lower() == "true"  # noqa: F405
