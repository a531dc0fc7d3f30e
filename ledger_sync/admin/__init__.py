"""The back office, one module per area. Importing a module registers its admin classes."""

from django.contrib import admin

from . import atlas, inbound, journals, parties, reconciliation, reference, runs  # noqa: F401

admin.site.site_header = "ledger_sync back office"
admin.site.site_title = "ledger_sync"
admin.site.index_title = "ATLAS ETRM ⇄ Gotransverse AR Ledger"
