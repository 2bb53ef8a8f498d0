"""The bridge's working copies of enclosure rows: what its writer changes, without the ORM.

``lock_rows`` reads the ingest columns of a batch's enclosures with one locking Core statement
(PostgreSQL: ``FOR NO KEY UPDATE``, in id order, so two bridges never deadlock), creating the
unknown ones; the ingest functions of ``controlsvc.store.enclosures`` change an
``EnclosureRow`` as they change an ``Enclosure``; ``write_back`` sends the columns that
changed, one UPDATE per set of them (``bulk_rows``: on PostgreSQL one statement whatever
the number of rows). Through the ORM, the attribute instrumentation (13 sets per status), the
change tracking and the flush cost the writer a quarter of its CPU (``bench/writer.py``).

Only the ingest columns are written; the row lock taken by ``lock_rows`` keeps anyone else
from changing them meanwhile. Registry columns (name, location, notes, expected_online) are
the API's and are never read or written here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import fields
from datetime import datetime
from typing import Any

from sqlalchemy import Table, bindparam, select
from sqlalchemy.orm import Session

from controlsvc.store.bulk_rows import update_rows
from controlsvc.store.db import utcnow
from controlsvc.store.enclosures import insert_ignore, new_enclosure_row
from controlsvc.store.models.enclosures import Enclosure, EnclosureRow

__all__ = ["INGEST_COLUMNS", "EnclosureRow", "lock_rows", "write_back"]


# Every field of an ``EnclosureRow`` but the key, ``retired_at`` (the API's) and the snapshot.
INGEST_COLUMNS: tuple[str, ...] = tuple(
    f.name for f in fields(EnclosureRow) if f.name not in ("id", "retired_at", "loaded")
)
_READ = tuple(f.name for f in fields(EnclosureRow) if f.name != "loaded")
_table: Table = Enclosure.__table__  # type: ignore[assignment]


def lock_rows(
    session: Session, ids: Iterable[str], *, now: datetime | None = None
) -> dict[str, EnclosureRow]:
    """Working copies of the enclosures with these ids, locked for this transaction; unknown
    ids are created first (an enclosure appears on its first message: the broker has already
    authenticated it). Retired enclosures are included; callers skip them."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    found = _lock(session, wanted)
    missing = [eid for eid in wanted if eid not in found]
    if missing:  # rare: one extra round trip only when something is new
        now = now or utcnow()
        insert_ignore(session, _table, [new_enclosure_row(eid, now) for eid in missing])
        found.update(_lock(session, missing))
    return found


def _locking(where: Any) -> Any:
    return (
        select(*(_table.c[name] for name in _READ))
        .where(where)
        .order_by(_table.c.id)
        # NO KEY UPDATE (PostgreSQL): inserting a command or a session row that references
        # the enclosure (a KEY SHARE lock) need not wait for a batch to commit.
        .with_for_update(key_share=True)
    )


# Built once: an ack's batch locks one row, and building this SELECT of 23 columns (and its
# cache key) anew cost more CPU than running it. One id is an equality: an ``IN`` list is
# expanded into the SQL anew at each execution.
_LOCK_ONE = _locking(_table.c.id == bindparam("id"))
_LOCK_MANY = _locking(_table.c.id.in_(bindparam("ids", expanding=True)))


def _lock(session: Session, ids: list[str]) -> dict[str, EnclosureRow]:
    params: dict[str, Any]
    if len(ids) == 1:
        statement, params = _LOCK_ONE, {"id": ids[0]}
    else:
        statement, params = _LOCK_MANY, {"ids": ids}
    out = {}
    for values in session.connection().execute(statement, params).all():  # fetched at once
        row = EnclosureRow(*values)
        row.loaded = tuple(values[2:])
        out[row.id] = row
    return out


def write_back(session: Session, rows: Iterable[EnclosureRow]) -> int:
    """UPDATE, in the rows whose ingest columns changed since ``lock_rows``, the columns that
    changed (one ``update_rows`` per set of columns; their snapshot moves to the written values);
    how many rows were written."""
    changed: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        now = tuple(getattr(row, name) for name in INGEST_COLUMNS)
        loaded = row.loaded
        if now == loaded:
            continue
        # The document by identity: comparing two status dicts would cost more than sending one.
        params = {
            name: value
            for name, value, before in zip(INGEST_COLUMNS, now, loaded, strict=True)
            if (value is not before if name == "status" else value != before)
        }
        columns = tuple(params)
        params["id"] = row.id
        changed.setdefault(columns, []).append(params)
        row.loaded = now
    connection = session.connection()
    for params_list in changed.values():
        update_rows(connection, _table, "id", params_list)
    return sum(len(group) for group in changed.values())
