"""The integer ids of the JABS layer: given on first sight, resolved back to ours.

Plain functions over a ``Session`` (they flush; the caller commits).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import InstrumentedAttribute, Session

from controlsvc.domain.errors import NotFound
from controlsvc.store.bulk_rows import insert_rows
from controlsvc.store.db import utcnow
from controlsvc.store.models.jabs import JabsEnclosure, JabsSession
from schemas.ids import ENCLOSURE_ID_MAX_LENGTH

__all__ = [
    "MAX_ID",
    "derive_enclosure_id",
    "enclosure_ids",
    "enclosure_of",
    "session_ids",
    "session_of",
]

# Ids are 32-bit in the original's database (and in ours).
MAX_ID = 2**31 - 1
_NOT_ID_CHARS = re.compile(r"[^a-z0-9-]+")


def derive_enclosure_id(name: str) -> str:
    """Our enclosure id for a JABS device name (its host name): lower case, every run of other
    characters one '-', at most 63 characters; the original name stays the display name."""
    derived = _NOT_ID_CHARS.sub("-", name.strip().lower()).strip("-")
    derived = derived[:ENCLOSURE_ID_MAX_LENGTH].rstrip("-")
    return derived or "jabs-device"


def _given(
    session: Session,
    model: type[JabsEnclosure] | type[JabsSession],
    column: InstrumentedAttribute[str],
    keys: Iterable[str],
) -> dict[str, int]:
    """The JABS id of each of ``keys`` (our ids, in ``column``), giving one to those without
    (insert-if-absent: two requests may give ids at once)."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}

    def known() -> dict[str, int]:
        rows = session.execute(select(column, model.id).where(column.in_(wanted)))
        return {key: jid for key, jid in rows}

    found = known()
    missing = [key for key in wanted if key not in found]
    if missing:
        now = utcnow()
        insert_rows(
            session.connection(),
            model.__table__,  # type: ignore[arg-type]
            [{column.key: key, "created_at": now} for key in missing],
        )
        found = known()
    return found


def enclosure_ids(session: Session, eids: Iterable[str]) -> dict[str, int]:
    """The JABS id of each enclosure, giving one to those without."""
    return _given(session, JabsEnclosure, JabsEnclosure.enclosure_id, eids)


def session_ids(session: Session, sids: Iterable[str]) -> dict[str, int]:
    """The JABS id of each session, giving one to those without."""
    return _given(session, JabsSession, JabsSession.session_id, sids)


def enclosure_of(session: Session, jid: int) -> JabsEnclosure:
    row = session.get(JabsEnclosure, jid) if 1 <= jid <= MAX_ID else None
    if row is None:
        raise NotFound(f"no device with id {jid}", field="device_id")
    return row


def session_of(session: Session, jid: int) -> str:
    row = session.get(JabsSession, jid) if 1 <= jid <= MAX_ID else None
    if row is None:
        raise NotFound(f"no recording session with id {jid}", field="session_id")
    return row.session_id
