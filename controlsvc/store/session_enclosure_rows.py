"""The bridge's working copies of sessions' enclosure rows: what agents' events change, without
the ORM (``working_copies``).

A fan-out brings a thousand ``recording_started`` (or, on cancel, ``recording_stopped``) events
at once. Loaded as ``SessionEnclosure`` objects and flushed by the unit of work, each cost the
writer about 0.18 ms of its 0.37 (``bench/writer.py --kind event``); read by one locking Core
statement and written back by one, a fraction of that.

``lock_pairs``, ``lock_active`` and the sessions' timer's ``lock_free`` lock the rows (``FOR
UPDATE``) in the order the API's cancel locks them (session, enclosure), so they never
deadlock; ``write_back`` writes the columns that changed. ORM copies of these rows loaded
earlier in the transaction are expired by ``write_back``: they would hide what it wrote.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import fields
from typing import Any

from sqlalchemy import Table, bindparam, select
from sqlalchemy.orm import Session

from controlsvc.domain.session_state import ACTIVE_ENCLOSURE_STATES
from controlsvc.store.models.sessions import SessionEnclosure, SessionEnclosureRow
from controlsvc.store.working_copies import expire_loaded, write_changed

__all__ = [
    "WRITTEN",
    "SessionEnclosureRow",
    "lock_active",
    "lock_free",
    "lock_pairs",
    "write_back",
]

_READ = tuple(f.name for f in fields(SessionEnclosureRow) if f.name != "loaded")
# What identifies the row and its place (never changed by an event) stays out.
WRITTEN: tuple[str, ...] = tuple(
    name for name in _READ if name not in ("id", "session_id", "enclosure_id", "file_prefix")
)
_FIRST_WRITTEN = _READ.index(WRITTEN[0])
_table: Table = SessionEnclosure.__table__  # type: ignore[assignment]
_c = _table.c

_PAIRS = (
    select(*(_c[name] for name in _READ))
    .where(
        _c.session_id.in_(bindparam("sids", expanding=True)),
        _c.enclosure_id.in_(bindparam("eids", expanding=True)),
    )
    .order_by(_c.session_id, _c.enclosure_id)
    .with_for_update()
)
_ACTIVE = (
    select(*(_c[name] for name in _READ))
    .where(
        _c.enclosure_id == bindparam("eid"),
        _c.state.in_([s.value for s in ACTIVE_ENCLOSURE_STATES]),
    )
    .order_by(_c.id.desc())
    .limit(1)
    .with_for_update()
)


_FREE = (
    select(*(_c[name] for name in _READ))
    .where(_c.id.in_(bindparam("ids", expanding=True)))
    .order_by(_c.session_id, _c.enclosure_id)
    .with_for_update(skip_locked=True)
)


def _copy(values: Any) -> SessionEnclosureRow:
    row = SessionEnclosureRow(*values)
    row.loaded = tuple(values[_FIRST_WRITTEN:])
    return row


def lock_pairs(
    session: Session, pairs: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], SessionEnclosureRow]:
    """The ``(session id, enclosure id)`` rows that exist among ``pairs``, locked."""
    wanted = set(pairs)
    if not wanted:
        return {}
    params = {
        "sids": sorted({sid for sid, _ in wanted}),
        "eids": sorted({eid for _, eid in wanted}),
    }
    out = {}
    # A few rows beyond the pairs may match (another of these enclosures in the same session):
    # locked for this short transaction, not used.
    for values in session.connection().execute(_PAIRS, params).all():
        row = _copy(values)
        if (row.session_id, row.enclosure_id) in wanted:
            out[(row.session_id, row.enclosure_id)] = row
    return out


def lock_free(session: Session, ids: Iterable[int]) -> list[SessionEnclosureRow]:
    """The rows of ``ids`` nobody else holds, locked, in (session, enclosure) order; those
    another transaction holds are left out (the sessions' timer never waits for the writer)."""
    wanted = sorted(set(ids))
    if not wanted:
        return []
    return [_copy(values) for values in session.connection().execute(_FREE, {"ids": wanted})]


def lock_active(session: Session, eid: str) -> SessionEnclosureRow | None:
    """The enclosure's part in the session it is recording now (the newest), locked."""
    values = session.connection().execute(_ACTIVE, {"eid": eid}).first()
    return None if values is None else _copy(values)


def write_back(session: Session, rows: Iterable[SessionEnclosureRow]) -> int:
    """UPDATE the columns that changed since the rows were locked; how many rows were
    written. ORM copies of rows of this table loaded in the transaction are expired."""
    written = write_changed(session.connection(), _table, "id", rows, WRITTEN)
    if written:
        expire_loaded(session, SessionEnclosure)
    return written
