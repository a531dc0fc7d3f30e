"""Database helpers the ORM does not offer fast enough. Shared machinery: no domain imports."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import connection


def rows_update(model: Any, objects: Sequence[Any], fields: Sequence[str]) -> None:
    """Write `fields` of many rows: one `UPDATE ... WHERE pk = %s`, sent as one executemany.

    Django's bulk_update builds a CASE WHEN per row and field, which costs seconds per thousand
    rows carrying request/response JSON; this costs milliseconds. Values go through each
    field's own database preparation, so dates and decimals are stored as the ORM would.
    """
    if not objects:
        return
    meta = model._meta
    columns = [meta.get_field(name) for name in fields]
    quote = connection.ops.quote_name
    # Only model metadata (table and column names, quoted) is formatted in; values are params.
    sql = (
        f"UPDATE {quote(meta.db_table)} SET "  # noqa: S608
        + ", ".join(f"{quote(column.column)} = %s" for column in columns)
        + f" WHERE {quote(meta.pk.column)} = %s"
    )
    params = [
        [column.get_db_prep_save(getattr(obj, column.attname), connection) for column in columns]
        + [obj.pk]
        for obj in objects
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)
