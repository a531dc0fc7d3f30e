"""What every admin page of a mirrored record shows the same way, whichever remote system it
comes from: the raw JSON pretty-printed, and the observed change history as a diff."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from integration import wire
from ledger_sync.admin.display import pretty_json
from ledger_sync.models import RecordChange


def raw_json_block(raw_json: str | None, *, summary: str = "Show the raw JSON") -> SafeString:
    """The stored raw JSON, indented (HTML-escaped) and folded in a panel; text that is not
    JSON is shown as it is. Pages show it to superusers only (readonly.SuperuserOnlyFields)."""
    if not raw_json:
        return format_html("<em>{}</em>", "None")
    return format_html(
        '<details class="raw-json"><summary>{}</summary>'
        '<pre style="white-space:pre-wrap;margin:0">{}</pre></details>',
        summary,
        pretty_json(raw_json),
    )


def change_history_table(changes: Iterable[RecordChange]) -> SafeString:
    """One row per changed field: before (struck), after, when, and the run that saw it."""
    rows = []
    for change in changes:
        run_link = (
            format_html(
                '<a href="{}">{}</a>',
                reverse("admin:ledger_sync_syncrun_change", args=[change.sync_run_id]),
                f"run {change.sync_run_id}",
            )
            if change.sync_run_id
            else change.source
        )
        items = change.changes.items() if isinstance(change.changes, dict) else ()
        for field_name, values in sorted(items):
            before, after = values if isinstance(values, list | tuple) else (None, values)
            rows.append(
                (
                    field_name,
                    json_text(before),
                    json_text(after),
                    f"{change.changed_at:%Y-%m-%d %H:%M:%S}",
                    run_link,
                )
            )
    if not rows:
        return format_html("<em>{}</em>", "No change seen since it was first mirrored.")
    body = format_html_join(
        "",
        "<tr><td><code>{}</code></td><td><del>{}</del></td><td><ins>{}</ins></td>"
        "<td>{}</td><td>{}</td></tr>",
        rows,
    )
    return format_html(
        "<table><thead><tr><th>Field</th><th>Before</th><th>After</th><th>When</th>"
        "<th>Run</th></tr></thead><tbody>{}</tbody></table>",
        body,
    )


def json_text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return value
    return wire.dumps(value)
