"""Admin for the reference area."""
