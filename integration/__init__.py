"""Remote systems (ATLAS ETRM, Gotransverse AR Ledger) and their sandboxes; no Django models."""
