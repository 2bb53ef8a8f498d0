"""The bridge's working copies of enclosure rows: what its writer changes, without the ORM.

``lock_rows`` reads the ingest columns of a batch's enclosures with one locking Core statement
(PostgreSQL: ``FOR NO KEY UPDATE``, in id order, so two bridges never deadlock), creating the
unknown ones; the ingest functions of ``controlsvc.store.enclosures`` change an
``EnclosureRow`` as they change an ``Enclosure``; ``write_back`` sends the columns that
changed, one UPDATE per set of them (``bulk_rows``: on PostgreSQL one statement whatever
the number of rows). Through the ORM, the attribute instrumentation (13 sets per status), the
change tracking and the flush cost the writer a quarter of its CPU (``bench/writer.py``).

The latest status document is the one column that costs to read: psycopg2 parses its JSON for
every row locked (a sixth of the locking's CPU at 2,000 statuses/s). A ``StatusCache`` keeps
the documents a writer last read or wrote, by enclosure and by what identifies a status (its
boot, sequence number and time); the locking SELECT leaves the document out, and a second
one reads it only for the rows whose status the cache does not hold (another bridge wrote it,
or the cache is new). Only ``apply_status`` changes a status, and always with its identity, so
a document found by that identity is the stored one, even if the transaction that wrote it
into the cache rolled back.

Only the ingest columns are written; the row lock taken by ``lock_rows`` keeps anyone else
from changing them meanwhile. Registry columns (name, location, notes, expected_online) are
the API's and are never read or written here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import fields
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Table, bindparam, select
from sqlalchemy.orm import Session

from controlsvc.store.bulk_rows import insert_rows
from controlsvc.store.db import utcnow
from controlsvc.store.enclosures import new_enclosure_row
from controlsvc.store.models.enclosures import Enclosure, EnclosureRow, EnclosureTransition
from controlsvc.store.working_copies import expire_loaded, write_changed

__all__ = [
    "INGEST_COLUMNS",
    "NOT_COLUMNS",
    "EnclosureRow",
    "StatusCache",
    "lock_rows",
    "write_back",
]


# The fields of an ``EnclosureRow`` that are not columns: the snapshot and the transitions.
NOT_COLUMNS = ("loaded", "transitions")
# Every column of an ``EnclosureRow`` but the key and ``retired_at`` (the API's).
INGEST_COLUMNS: tuple[str, ...] = tuple(
    f.name for f in fields(EnclosureRow) if f.name not in ("id", "retired_at", *NOT_COLUMNS)
)
_READ = tuple(f.name for f in fields(EnclosureRow) if f.name not in NOT_COLUMNS)
_STATUS = _READ.index("status")
_LOCKED = _READ[:_STATUS] + _READ[_STATUS + 1 :]  # what the locking SELECT reads
_table: Table = Enclosure.__table__  # type: ignore[assignment]
_TRANSITIONS: Table = EnclosureTransition.__table__  # type: ignore[assignment]

_AnyRow = Row[*tuple[Any, ...]]

# What identifies a stored status: the cache's key beside the enclosure's id.
StatusKey = tuple[str | None, int | None, datetime | None]
_KEY_COLUMNS = tuple(_LOCKED.index(name) for name in ("status_boot_id", "status_seq", "status_at"))
# Documents a cache holds at most (a few KB each): beyond, the oldest entries go.
STATUS_CACHE_SIZE = 20_000


class StatusCache:
    """The status documents one writer last read or wrote (see the module doc)."""

    def __init__(self, size: int = STATUS_CACHE_SIZE) -> None:
        self.size = size
        self._by_id: dict[str, tuple[StatusKey, dict[str, Any] | None]] = {}
        self.hits = 0
        self.misses = 0

    def get(self, eid: str, key: StatusKey) -> tuple[bool, dict[str, Any] | None]:
        """(found, document) for the status ``key`` identifies."""
        entry = self._by_id.get(eid)
        if entry is not None and entry[0] == key and None not in key:
            self.hits += 1
            return True, entry[1]
        self.misses += 1
        return False, None

    def put(self, eid: str, key: StatusKey, document: dict[str, Any] | None) -> None:
        entries = self._by_id
        entries.pop(eid, None)  # to the end: the most recent
        if len(entries) >= self.size:
            del entries[next(iter(entries))]
        entries[eid] = (key, document)


def lock_rows(
    session: Session,
    ids: Iterable[str],
    *,
    now: datetime | None = None,
    statuses: StatusCache | None = None,
) -> dict[str, EnclosureRow]:
    """Working copies of the enclosures with these ids, locked for this transaction; unknown
    ids are created first (an enclosure appears on its first message: the broker has already
    authenticated it). Retired enclosures are included; callers skip them. Their status
    documents come from ``statuses`` where it holds them (a cache of one call otherwise)."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    cache = statuses if statuses is not None else StatusCache()
    found = _lock(session, wanted, cache)
    missing = [eid for eid in wanted if eid not in found]
    if missing:  # rare: one extra round trip only when something is new
        now = now or utcnow()
        insert_rows(session.connection(), _table, [new_enclosure_row(eid, now) for eid in missing])
        found.update(_lock(session, missing, cache))
    return found


def _locking(where: Any) -> Any:
    return (
        select(*(_table.c[name] for name in _LOCKED))
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
# The documents the cache lacks, of rows this transaction has locked already.
_STATUS_ONE = select(_table.c.id, _table.c.status).where(_table.c.id == bindparam("id"))
_STATUS_MANY = select(_table.c.id, _table.c.status).where(
    _table.c.id.in_(bindparam("ids", expanding=True))
)


def _by_ids(session: Session, one: Any, many: Any, ids: list[str]) -> Sequence[_AnyRow]:
    if len(ids) == 1:
        return session.connection().execute(one, {"id": ids[0]}).all()
    return session.connection().execute(many, {"ids": ids}).all()  # fetched at once


def _lock(session: Session, ids: list[str], cache: StatusCache) -> dict[str, EnclosureRow]:
    locked: dict[str, _AnyRow] = {}
    documents: dict[str, dict[str, Any] | None] = {}
    for row_read in _by_ids(session, _LOCK_ONE, _LOCK_MANY, ids):
        eid = row_read[0]
        locked[eid] = row_read
        found, document = cache.get(eid, _key(row_read))
        if found:
            documents[eid] = document
    unread = [eid for eid in locked if eid not in documents]
    if unread:
        for eid, document in _by_ids(session, _STATUS_ONE, _STATUS_MANY, unread):
            documents[eid] = document
            cache.put(eid, _key(locked[eid]), document)
    out = {}
    for eid, values in locked.items():
        full = (*values[:_STATUS], documents[eid], *values[_STATUS:])
        row = EnclosureRow(*full)
        row.loaded = full[2:]
        out[eid] = row
    return out


def _key(values: Sequence[Any]) -> StatusKey:
    boot, seq, at = (values[i] for i in _KEY_COLUMNS)
    return boot, seq, at


def write_back(
    session: Session, rows: Iterable[EnclosureRow], statuses: StatusCache | None = None
) -> int:
    """UPDATE, in the rows whose ingest columns changed since ``lock_rows``, the columns that
    changed (``working_copies.write_changed``), and INSERT the copies' transitions in one
    statement; how many rows were written. A new status document goes into ``statuses``; ORM
    copies of enclosures loaded in the transaction are expired."""
    rows = list(rows)

    def written(row: EnclosureRow, changed: dict[str, Any]) -> None:
        if statuses is not None and "status" in changed:
            statuses.put(row.id, (row.status_boot_id, row.status_seq, row.status_at), row.status)

    count = write_changed(
        session.connection(),
        _table,
        "id",
        rows,
        INGEST_COLUMNS,
        by_identity=("status",),  # a document: comparing two costs more than sending one
        written=written,
    )
    if count:
        expire_loaded(session, Enclosure)
    moves = [move for row in rows for move in row.transitions]
    if moves:
        insert_rows(session.connection(), _TRANSITIONS, moves)
        for row in rows:
            row.transitions.clear()
    return count
