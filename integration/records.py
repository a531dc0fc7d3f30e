"""What the ATLAS and AR Ledger record parsers share: the record error and the field reader.

Each system keeps its own RecordError subclass (so `except RecordError` in one integration never
swallows the other's) and its own reader subclass for what really differs between the two wires:
which fields are required unless marked optional, how lenient text, booleans, integers and dates
are, and how a missing field is explained to the person who has to fix it.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar


class RecordError(ValueError):
    """One remote record could not be read. Carries what a person needs to find and fix it."""

    def __init__(self, entity: str, record_id: Any, field_name: str, problem: str, raw: Any = None):
        self.entity = entity
        self.record_id = record_id
        self.field = field_name
        self.problem = problem
        self.raw = raw
        where = f"{entity} {record_id}" if record_id is not None else f"{entity} (no id)"
        super().__init__(f"{where}: field '{field_name}' {problem}")


class FieldReader:
    """Reads the fields of one raw record, raising `error` with the record's identity."""

    error: ClassVar[type[RecordError]] = RecordError
    # How a missing required field is explained: says who must send it.
    missing_hint: ClassVar[str] = "is missing"

    def __init__(self, entity: str, raw: Any, *, record_id: Any = None):
        if not isinstance(raw, Mapping):
            raise self.error(entity, record_id, "(record)", "is not a JSON object", raw)
        self.entity = entity
        self.raw = raw
        self.record_id = self.identify(raw.get("id"), record_id)

    def identify(self, raw_id: Any, fallback: Any) -> Any:
        """The id named in errors: the record's own, else the one the caller knows it by."""
        return fallback if raw_id is None else raw_id

    def fail(self, name: str, problem: str) -> RecordError:
        return self.error(self.entity, self.record_id, name, problem, self.raw)

    def _get(self, name: str, required: bool) -> Any:
        value = self.raw.get(name)
        if value is None and required:
            raise self.fail(name, self.missing_hint)
        return value

    def to_decimal(self, name: str, value: Any) -> Decimal:
        """`value` (not None) as an exact, finite Decimal; never through a binary float."""
        if isinstance(value, bool | float):
            # A float means the JSON was parsed without Decimal: refuse rather than round.
            raise self.fail(name, "was read as a binary float; parse with integration.wire")
        try:
            number = value if isinstance(value, Decimal) else Decimal(str(value).strip())
        except InvalidOperation:
            raise self.fail(name, f"must be a number, got {value!r}") from None
        if not number.is_finite():
            raise self.fail(name, f"must be a finite number, got {value!r}")
        return number

    def list(self, name: str) -> list[Any]:
        value = self.raw.get(name)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(name, f"must be a list, got {value!r}")
        return value
