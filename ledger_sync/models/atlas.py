"""ATLAS mirror: custom field definitions, counterparties, orders, items, invoices, payments."""

__all__: list[str] = []
