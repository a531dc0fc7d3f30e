"""The back office, one module per area. Importing a module registers its admin classes."""

from . import (  # noqa: F401
    atlas,
    inbound,
    job_runs,
    journals,
    parties,
    problems,
    reconciliation,
    reference,
    runs,
)

# The site itself (titles, the dashboard home, navigation by task) is ledger_sync.admin_site.
