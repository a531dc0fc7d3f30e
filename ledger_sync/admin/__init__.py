"""The back office, one module per area. Importing a module registers its admin classes."""

from . import atlas, inbound, journals, parties, reference, runs  # noqa: F401
