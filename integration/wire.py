"""JSON on the wire with exact money: numbers are read as Decimal and written back as numbers.

The standard library can parse floats as Decimal but cannot write a Decimal as a JSON number;
simplejson does both, so every remote body goes through these two functions.
"""

from __future__ import annotations

from typing import Any

import simplejson


def loads(text: str | bytes) -> Any:
    """Parse JSON with every non-integer number as Decimal (never through float)."""
    return simplejson.loads(text, use_decimal=True)


def dumps(value: Any, *, indent: int | None = None) -> str:
    """Write JSON with Decimal as a JSON number, keeping its digits."""
    return simplejson.dumps(value, use_decimal=True, indent=indent, default=_default)


def canonical(value: Any) -> str:
    """Stable text of a JSON value (sorted keys, no spaces): what content hashes are taken of."""
    return simplejson.dumps(
        value, use_decimal=True, sort_keys=True, separators=(",", ":"), default=_default
    )


def _default(value: Any) -> Any:
    from datetime import UTC, date, datetime

    if isinstance(value, datetime):
        # ATLAS dates carry no zone and are read as UTC; write them back the same way.
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.isoformat(timespec="seconds")
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
