"""What an alert's reader needs besides the alert: the enclosure's display name and the
session's name and status now (a lost alert raised in a session that was canceled since must
not read as if that session still ran). One query per kind for a whole page. No Flask."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from controlsvc.store.models.enclosures import Enclosure
from controlsvc.store.models.sessions import RecordingSession
from schemas.enums import SessionStatus
from schemas.rest.alerts import AlertOut

__all__ = ["with_context"]


def with_context(session: Session, outs: Sequence[AlertOut]) -> list[AlertOut]:
    sids = sorted({o.session_id for o in outs if o.session_id})
    eids = sorted({o.enclosure_id for o in outs if o.enclosure_id})
    sessions: dict[str, tuple[str, str]] = {}
    if sids:
        for sid, name, status in session.execute(
            select(RecordingSession.id, RecordingSession.name, RecordingSession.status).where(
                RecordingSession.id.in_(sids)
            )
        ):
            sessions[sid] = (name, status)
    names: dict[str, str] = {}
    if eids:
        names = {
            eid: name
            for eid, name in session.execute(
                select(Enclosure.id, Enclosure.name).where(Enclosure.id.in_(eids))
            )
        }
    result = []
    for out in outs:
        known = sessions.get(out.session_id or "")
        result.append(
            out.model_copy(
                update={
                    "enclosure_name": names.get(out.enclosure_id or ""),
                    "session_name": known[0] if known else None,
                    "session_status": SessionStatus(known[1]) if known else None,
                }
            )
        )
    return result
