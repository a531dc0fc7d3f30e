from django.apps import AppConfig


class LedgerSyncConfig(AppConfig):
    name = "ledger_sync"
    verbose_name = "Ledger sync"
    default_auto_field = "django.db.models.BigAutoField"
