"""The integer ids of the JABS layer: given on first sight, resolved back to ours.

Plain functions over a ``Session`` (they flush; the caller commits).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from controlsvc.compat.jabs.models import JabsEnclosure, JabsSession
from controlsvc.db import utcnow
from controlsvc.enclosures import insert_ignore
from controlsvc.errors import NotFound
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


def enclosure_ids(session: Session, eids: Iterable[str]) -> dict[str, int]:
    """The JABS id of each enclosure, giving one to those without."""
    wanted = sorted(set(eids))
    if not wanted:
        return {}
    known = _enclosure_rows(session, wanted)
    missing = [eid for eid in wanted if eid not in known]
    if missing:
        now = utcnow()
        insert_ignore(
            session,
            JabsEnclosure.__table__,  # type: ignore[arg-type]
            [{"enclosure_id": eid, "created_at": now} for eid in missing],
        )
        known = _enclosure_rows(session, wanted)
    return known


def _enclosure_rows(session: Session, eids: list[str]) -> dict[str, int]:
    rows = session.execute(
        select(JabsEnclosure.enclosure_id, JabsEnclosure.id).where(
            JabsEnclosure.enclosure_id.in_(eids)
        )
    )
    return {eid: jid for eid, jid in rows}


def session_ids(session: Session, sids: Iterable[str]) -> dict[str, int]:
    """The JABS id of each session, giving one to those without."""
    wanted = sorted(set(sids))
    if not wanted:
        return {}
    known = _session_rows(session, wanted)
    missing = [sid for sid in wanted if sid not in known]
    if missing:
        now = utcnow()
        insert_ignore(
            session,
            JabsSession.__table__,  # type: ignore[arg-type]
            [{"session_id": sid, "created_at": now} for sid in missing],
        )
        known = _session_rows(session, wanted)
    return known


def _session_rows(session: Session, sids: list[str]) -> dict[str, int]:
    rows = session.execute(
        select(JabsSession.session_id, JabsSession.id).where(JabsSession.session_id.in_(sids))
    )
    return {sid: jid for sid, jid in rows}


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
