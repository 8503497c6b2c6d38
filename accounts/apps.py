from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    # Shown in the admin as "Settings › API keys", as the API reference says.
    verbose_name = "Settings"

    def ready(self):
        from . import signals

        signals.connect()
