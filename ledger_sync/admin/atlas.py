"""Admin for the atlas area."""
