"""Admin for the parties area."""
