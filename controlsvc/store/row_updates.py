"""UPDATE many rows, each by its key, in one statement.

An executemany UPDATE (psycopg2's ``execute_batch``, pages of 100) renders every row's
statement as text in the client, and PostgreSQL parses, plans and runs each of them: for the
bridge's batch of 500 enclosure rows, or a session's 1,000 ``desired`` documents, most of the
cost of writing them. On PostgreSQL the rows travel instead as one JSON parameter, which
``json_to_recordset`` turns back into typed rows for a single ``UPDATE … FROM``: one encoding
by pydantic-core's encoder, one statement to parse and plan. Elsewhere (SQLite), and for a
single row, it is an ordinary UPDATE.

The values are what the columns' own types would take: JSON data, numbers, strings, booleans,
None (SQL NULL, in a JSON column too) and timezone-aware datetimes (a naive one is refused, as
``UTCDateTime`` refuses it).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pydantic_core import to_json
from sqlalchemy import Connection, DateTime, Table, bindparam, update
from sqlalchemy.engine import Dialect

__all__ = ["update_rows"]

_KEY_PARAM = "_row_key"


def update_rows(
    connection: Connection, table: Table, key: str, rows: Sequence[Mapping[str, Any]]
) -> int:
    """Set, in the row of ``table`` whose ``key`` column equals each row's ``key`` value, the
    row's other values; every row must name the same columns. How many rows were given."""
    if not rows:
        return 0
    names = rows[0].keys()
    if key not in names or any(row.keys() != names for row in rows):
        # json_to_recordset would set a column a row leaves out to NULL.
        raise ValueError(f"every row must hold {key!r} and the same columns as the first")
    columns = tuple(name for name in names if name != key)
    dialect = connection.dialect
    if dialect.name != "postgresql" or len(rows) == 1:
        statement = _by_key(table, key, columns)
        # Not the key under its own name: a parameter named like a column joins the SET.
        params = [{**{c: row[c] for c in columns}, _KEY_PARAM: row[key]} for row in rows]
        connection.execute(statement, params if len(params) > 1 else params[0])
        return len(rows)
    sql, datetimes = _recordset_update(table, key, columns, dialect)
    for row in rows:
        for name in datetimes:
            value = row[name]
            if isinstance(value, datetime) and value.tzinfo is None:
                raise ValueError(f"naive datetime given to the UTC column {name!r}")
    connection.exec_driver_sql(sql, {"rows": to_json(rows).decode("utf-8")})
    return len(rows)


@functools.lru_cache(maxsize=64)
def _by_key(table: Table, key: str, columns: tuple[str, ...]) -> Any:
    return (
        update(table)
        .where(table.c[key] == bindparam(_KEY_PARAM))
        .values({name: bindparam(name) for name in columns})
    )


@functools.lru_cache(maxsize=64)
def _recordset_update(
    table: Table, key: str, columns: tuple[str, ...], dialect: Dialect
) -> tuple[str, tuple[str, ...]]:
    """The statement for these columns, and which of them are datetimes."""
    quote = dialect.identifier_preparer.quote
    name = dialect.identifier_preparer.format_table(table)

    def typed(column: str) -> str:
        return f"{quote(column)} {table.c[column].type.compile(dialect=dialect)}"

    fields = ", ".join(typed(column) for column in (key, *columns))
    assignments = ", ".join(f"{quote(c)} = v.{quote(c)}" for c in columns)
    # Names and types from our own metadata, quoted by the dialect; the rows are a parameter.
    sql = (
        f"UPDATE {name} SET {assignments} "  # noqa: S608
        f"FROM json_to_recordset(CAST(%(rows)s AS json)) AS v({fields}) "
        f"WHERE {name}.{quote(key)} = v.{quote(key)}"
    )
    datetimes = tuple(c for c in columns if _holds_datetimes(table.c[c].type))
    return sql, datetimes


def _holds_datetimes(type_: Any) -> bool:
    return isinstance(getattr(type_, "impl", type_), DateTime)  # ``UTCDateTime`` wraps one
