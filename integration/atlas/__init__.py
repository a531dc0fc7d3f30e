"""ATLAS ETRM: client, typed records and errors."""
