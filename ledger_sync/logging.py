"""Log formatting: the structured fields passed as `extra=` reach the output.

Services log an event name with its fields (`logger.info("cycle.finished", extra={...})`). The
standard formatter would drop those fields; these keep them — as `key=value` after the message for
a person at a terminal (LOG_FORMAT=text, the default), or as one JSON object per line for a log
pipeline (LOG_FORMAT=json, python-json-logger). Callers never pass secrets, tokens or full IBANs.
"""

from __future__ import annotations

import logging
from typing import Any

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None)).keys()
) | {"message", "asctime", "taskName"}


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = {
            key: value
            for key, value in vars(record).items()
            if key not in _STANDARD_ATTRIBUTES and not key.startswith("_")
        }
        if not fields:
            return text
        rendered = " ".join(f"{key}={_render(value)}" for key, value in sorted(fields.items()))
        head, newline, rest = text.partition("\n")  # keep a traceback below the fields
        return f"{head} {rendered}{newline}{rest}"


def _render(value: Any) -> str:
    text = str(value)
    return repr(text) if (" " in text or not text) else text
