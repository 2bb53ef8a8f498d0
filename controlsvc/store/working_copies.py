"""Rows read into plain objects, changed in memory, and written back: only the rows that
changed, each with only the columns that changed, rows changing the same columns in one
``bulk_rows.update_rows`` statement.

The bridge's writer changes hundreds of rows per transaction (enclosures, sessions'
enclosures). Through the ORM, loading them as mapped objects, the attribute instrumentation and
the unit of work's flush cost more than the statements themselves (``bench/writer.py``). A
working copy is a plain object (a dataclass) read by one Core statement, whose ``loaded`` holds
the values of ``columns`` as read; ``write_changed`` compares and writes.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from typing import Any, Protocol, TypeVar

from sqlalchemy import Connection, Table
from sqlalchemy.orm import Session

from controlsvc.store.bulk_rows import update_rows

__all__ = ["WorkingCopy", "expire_loaded", "write_changed"]


class WorkingCopy(Protocol):
    """A row's plain copy: its columns as attributes, ``loaded`` as read or last written."""

    loaded: tuple[Any, ...]


Copy = TypeVar("Copy", bound=WorkingCopy)


def write_changed(
    connection: Connection,
    table: Table,
    key: str,
    rows: Iterable[Copy],
    columns: tuple[str, ...],
    *,
    by_identity: Collection[str] = (),
    written: Callable[[Copy, dict[str, Any]], None] | None = None,
) -> int:
    """UPDATE in ``table`` the rows among ``rows`` whose ``columns`` differ from their
    ``loaded`` values (in that order), setting the columns that changed; ``loaded`` moves to
    the written values. ``by_identity``: columns compared by identity (a large document:
    comparing two would cost more than sending one). ``written(row, changed)`` is told of each
    row written. How many rows were written."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        now = tuple(getattr(row, name) for name in columns)
        loaded = row.loaded
        if now == loaded:
            continue
        params = {
            name: value
            for name, value, before in zip(columns, now, loaded, strict=True)
            if (value is not before if name in by_identity else value != before)
        }
        if written is not None:
            written(row, params)
        names = tuple(params)
        params[key] = getattr(row, key)
        groups.setdefault(names, []).append(params)
        row.loaded = now
    for group in groups.values():
        update_rows(connection, table, key, group)
    return sum(len(group) for group in groups.values())


def expire_loaded(session: Session, model: type) -> None:
    """Forget the ORM copies of ``model`` read earlier in the transaction (an alert's subject,
    say): ``write_changed`` changed their rows behind the ORM's back, and the next use of one
    reads it again."""
    for obj in list(session.identity_map.values()):
        if isinstance(obj, model):
            session.expire(obj)
