"""Many rows written in one statement: UPDATEd each by its key, or INSERTed skipping conflicts.

An executemany (psycopg2's ``execute_batch``, pages of 100) renders every row's statement as
text in the client, and PostgreSQL parses, plans and runs each of them: for the bridge's batch
of 500 enclosure rows and 500 status history rows, or a session's 1,000 ``desired`` documents,
most of the cost of writing them. On PostgreSQL the rows travel instead as one JSON parameter,
which ``json_to_recordset`` turns back into typed rows for a single ``UPDATE … FROM`` or
``INSERT … SELECT``: one encoding by pydantic-core's encoder, one statement to parse and plan.
Elsewhere (SQLite), and for a single row, it is an ordinary statement.

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
from sqlalchemy import Connection, DateTime, Table, bindparam, insert, update
from sqlalchemy.engine import Dialect

__all__ = ["insert_returning", "insert_rows", "skipping_conflicts", "update_rows"]

_KEY_PARAM = "_row_key"


def update_rows(
    connection: Connection, table: Table, key: str, rows: Sequence[Mapping[str, Any]]
) -> int:
    """Set, in the row of ``table`` whose ``key`` column equals each row's ``key`` value, the
    row's other values; every row must name the same columns. How many rows were given."""
    if not rows:
        return 0
    names = _same_columns(rows)
    if key not in names:
        raise ValueError(f"every row must hold {key!r}")
    columns = tuple(name for name in names if name != key)
    dialect = connection.dialect
    if dialect.name != "postgresql" or len(rows) == 1:
        statement = _by_key(table, key, columns)
        # Not the key under its own name: a parameter named like a column joins the SET.
        params = [{**{c: row[c] for c in columns}, _KEY_PARAM: row[key]} for row in rows]
        connection.execute(statement, params if len(params) > 1 else params[0])
        return len(rows)
    sql, datetimes = _recordset_update(table, key, columns, dialect)
    connection.exec_driver_sql(sql, {"rows": _encoded(rows, datetimes)})
    return len(rows)


def insert_rows(
    connection: Connection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    skip_conflicts: bool = True,
) -> int:
    """INSERT ``rows`` into ``table``, skipping those that collide with a unique key (unless
    ``skip_conflicts`` is False: then a collision raises); every row must name the same
    columns, and every column it leaves out must have a database default (or be the generated
    key): the values the ORM would fill in are not. How many were inserted (what the driver
    reports)."""
    if not rows:
        return 0
    columns = tuple(_same_columns(rows))
    dialect = connection.dialect
    if dialect.name != "postgresql" or len(rows) == 1:
        result = connection.execute(_ordinary(table, dialect.name, skip_conflicts), list(rows))
        return int(getattr(result, "rowcount", 0) or 0)
    sql, datetimes = _recordset_insert(table, columns, dialect, (), skip_conflicts)
    result = connection.exec_driver_sql(sql, {"rows": _encoded(rows, datetimes)})
    return int(getattr(result, "rowcount", 0) or 0)


def insert_returning(
    connection: Connection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    returning: tuple[str, ...],
    *,
    skip_conflicts: bool = False,
    first: str | None = None,
) -> list[tuple[Any, ...]]:
    """INSERT ``rows`` as ``insert_rows`` does (skipping those that collide with a unique key
    when ``skip_conflicts``; else a collision raises); the ``returning`` columns of each row
    inserted, in the rows' order.

    On PostgreSQL the rows go in their order (``WITH ORDINALITY … ORDER BY``), so a generated
    key grows with it; elsewhere SQLAlchemy's multi-row INSERT sorts what it returns.

    ``first`` (PostgreSQL, several rows): a SELECT list of our own (never user input) the same
    statement evaluates once before any row is inserted, e.g. a transaction lock that must be
    held before the keys are drawn: the rows are joined to it, so none exists before it."""
    if not rows:
        return []
    columns = tuple(_same_columns(rows))
    dialect = connection.dialect
    if dialect.name != "postgresql" or len(rows) == 1:
        if first is not None:
            raise ValueError("first is for several rows on PostgreSQL")
        statement = _ordinary(table, dialect.name, skip_conflicts, returning)
        result = connection.execute(statement, list(rows) if len(rows) > 1 else dict(rows[0]))
        return [tuple(row) for row in result]
    sql, datetimes = _recordset_insert(table, columns, dialect, returning, skip_conflicts, first)
    result = connection.exec_driver_sql(sql, {"rows": _encoded(rows, datetimes)})
    return [tuple(row) for row in result]


@functools.lru_cache(maxsize=64)
def _ordinary(
    table: Table, dialect: str, skip_conflicts: bool, returning: tuple[str, ...] = ()
) -> Any:
    """The ordinary INSERT (SQLite, or one row) for these options, built once."""
    statement = skipping_conflicts(table, dialect) if skip_conflicts else insert(table)
    if returning:
        # Rows skipped return nothing, so SQLAlchemy could not pair the rest with their
        # parameters: only an INSERT that skips none is sorted by them.
        statement = statement.returning(
            *(table.c[name] for name in returning), sort_by_parameter_order=not skip_conflicts
        )
    return statement


def _same_columns(rows: Sequence[Mapping[str, Any]]) -> Any:
    names = rows[0].keys()
    if any(row.keys() != names for row in rows):
        # json_to_recordset would set a column a row leaves out to NULL.
        raise ValueError("every row must name the same columns as the first")
    return names


def _encoded(rows: Sequence[Mapping[str, Any]], datetimes: tuple[str, ...]) -> str:
    for row in rows:
        for name in datetimes:
            value = row[name]
            if isinstance(value, datetime) and value.tzinfo is None:
                raise ValueError(f"naive datetime given to the UTC column {name!r}")
    return to_json(rows).decode("utf-8")


@functools.lru_cache(maxsize=64)
def skipping_conflicts(table: Table, dialect: str) -> Any:
    """``INSERT … ON CONFLICT DO NOTHING`` into ``table`` on this backend (built once)."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table).on_conflict_do_nothing()
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table).on_conflict_do_nothing()
    raise NotImplementedError(f"INSERT ... ON CONFLICT DO NOTHING on {dialect}")  # pragma: no cover


@functools.lru_cache(maxsize=64)
def _by_key(table: Table, key: str, columns: tuple[str, ...]) -> Any:
    return (
        update(table)
        .where(table.c[key] == bindparam(_KEY_PARAM))
        .values({name: bindparam(name) for name in columns})
    )


def _recordset(
    table: Table, columns: tuple[str, ...], dialect: Dialect, *, alias: bool = True
) -> str:
    """``json_to_recordset(...) AS v(<column> <its type>, ...)``: the rows, typed as the
    columns they go to (without the alias ``v``, for ``ROWS FROM``)."""
    quote = dialect.identifier_preparer.quote
    fields = ", ".join(
        f"{quote(column)} {table.c[column].type.compile(dialect=dialect)}" for column in columns
    )
    return f"json_to_recordset(CAST(%(rows)s AS json)) AS {'v' if alias else ''}({fields})"


def _datetimes(table: Table, columns: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(c for c in columns if _holds_datetimes(table.c[c].type))


@functools.lru_cache(maxsize=64)
def _recordset_insert(
    table: Table,
    columns: tuple[str, ...],
    dialect: Dialect,
    returning: tuple[str, ...] = (),
    skip_conflicts: bool = True,
    first: str | None = None,
) -> tuple[str, tuple[str, ...]]:
    """The INSERT for these columns (the rows in their order when it returns ``returning``;
    after ``first``, see ``insert_returning``), and which of them are datetimes."""
    for column in table.c:
        if column.name in columns or column.server_default is not None:
            continue
        generated = column.primary_key and column.autoincrement in (True, "auto")
        if column.default is not None and not generated:
            raise ValueError(f"{table.name}.{column.name} has a default only the ORM fills in")
    quote = dialect.identifier_preparer.quote
    name = dialect.identifier_preparer.format_table(table)
    listed = ", ".join(quote(c) for c in columns)
    # Names and types from our own metadata, quoted by the dialect; the rows are a parameter.
    prefix = ""
    if returning:  # the rows in the array's order: what they return, and the keys they get
        source = f"ROWS FROM ({_recordset(table, columns, dialect, alias=False)}) "
        source += f"WITH ORDINALITY AS v({listed}, _row_order)"
        if first is not None:
            prefix = f"WITH _first AS (SELECT {first}) "
            source += " CROSS JOIN _first"
        source += " ORDER BY _row_order"
    else:
        if first is not None:
            raise ValueError("first is for an INSERT that returns its rows")
        source = _recordset(table, columns, dialect)
    listed_v = ", ".join(f"v.{quote(c)}" for c in columns) if first is not None else listed
    sql = f"{prefix}INSERT INTO {name} ({listed}) SELECT {listed_v} FROM {source}"  # noqa: S608
    if skip_conflicts:
        sql += " ON CONFLICT DO NOTHING"
    if returning:
        sql += " RETURNING " + ", ".join(quote(c) for c in returning)
    return sql, _datetimes(table, columns)


@functools.lru_cache(maxsize=64)
def _recordset_update(
    table: Table, key: str, columns: tuple[str, ...], dialect: Dialect
) -> tuple[str, tuple[str, ...]]:
    """The UPDATE for these columns, and which of them are datetimes."""
    quote = dialect.identifier_preparer.quote
    name = dialect.identifier_preparer.format_table(table)
    assignments = ", ".join(f"{quote(c)} = v.{quote(c)}" for c in columns)
    # Names and types from our own metadata, quoted by the dialect; the rows are a parameter.
    sql = (
        f"UPDATE {name} SET {assignments} "  # noqa: S608
        f"FROM {_recordset(table, (key, *columns), dialect)} "
        f"WHERE {name}.{quote(key)} = v.{quote(key)}"
    )
    return sql, _datetimes(table, columns)


def _holds_datetimes(type_: Any) -> bool:
    return isinstance(getattr(type_, "impl", type_), DateTime)  # ``UTCDateTime`` wraps one
