from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class LedgerSyncConfig(AppConfig):
    default = True  # the app's config; BackOfficeAdminConfig below is the admin's
    name = "ledger_sync"
    verbose_name = "Ledger sync"
    default_auto_field = "django.db.models.BigAutoField"


class BackOfficeAdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin with the back office's site (dashboard home, task navigation) as
    the default `admin.site`; listed in INSTALLED_APPS in place of django.contrib.admin."""

    default = False  # named in INSTALLED_APPS; not the default config of ledger_sync
    default_site = "ledger_sync.admin_site.BackOfficeSite"
