"""Gotransverse reference data (ledger, calendar, periods, GL accounts) and posting settings."""

__all__: list[str] = []
