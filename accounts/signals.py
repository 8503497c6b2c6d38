"""Any saved or deleted key or site invalidates every worker's cached keys (``accounts.keys``).

Bulk ``QuerySet.update`` sends no signal: code that updates keys in bulk calls
``announce_key_change`` itself (``revoke_key``, the admin's bulk revoke).
"""

from django.db.models.signals import post_delete, post_save

from .keys import announce_key_change
from .models import ApiKey, Site


def _changed(sender, **kwargs):
    announce_key_change()


def connect():
    for model in (ApiKey, Site):
        post_save.connect(_changed, sender=model, dispatch_uid=f"keys-changed-save-{model.__name__}")
        post_delete.connect(_changed, sender=model, dispatch_uid=f"keys-changed-delete-{model.__name__}")
