"""The back office, one module per area. Importing a module registers its admin classes."""

from . import atlas, inbound, job_runs, journals, parties, reference, runs  # noqa: F401

# The site itself (titles, the dashboard home, navigation by task) is ledger_sync.admin_site.
