"""JSON with exact money: numbers with a fraction become Decimal, never float."""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from integration import wire


class ExactJSONParser(JSONParser):
    """DRF's JSON parser, reading through integration.wire.loads (Decimal for 12.34)."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        raw = stream.read() if stream is not None else b""
        try:
            return wire.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ParseError(f"The body is not valid JSON: {exc}") from None
