"""One error family for the application: a message for a person, and details for machines."""

from __future__ import annotations

from typing import Any


class ApplicationError(Exception):
    def __init__(self, message: str, *, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.details = details or {}


class InvalidTransition(ApplicationError):
    """A state change that the state machine does not allow from the record's current state."""


class ConfigurationError(ApplicationError):
    """A setting is missing or contradicts the mirrored reference data."""
