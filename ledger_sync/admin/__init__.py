"""The back office, one module per area. Importing a module registers its admin classes."""

from django.contrib import admin

from . import (  # noqa: F401
    atlas,
    inbound,
    journals,
    parties,
    problems,
    reconciliation,
    reference,
    runs,
)

admin.site.site_header = "ledger_sync back office"
admin.site.site_title = "ledger_sync"
admin.site.index_title = "ATLAS ETRM ⇄ Gotransverse AR Ledger"
