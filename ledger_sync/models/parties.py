"""ERP parties, counterparty match proposals and custom-field mappings."""

__all__: list[str] = []
