"""Signals the events app sends, for the apps built on it (analytics keeps derived data)."""

from django.dispatch import Signal

# Events of a site were deleted (a visitor's erasure, a reset of the site's data). Sent inside the
# deleting transaction with ``site_id`` and ``spans``: the [start, end) UTC ranges that held the
# deleted events, or None for all of the site's events. Receivers drop what they derived from them.
events_deleted = Signal()
