"""Reading recording sessions: one with its enclosures' progress, gaps and totals
(``session_out``), the list of sessions and the list of recordings. Reading never changes
anything; ``controlsvc.store.sessions`` creates sessions and moves them.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from controlsvc.domain.errors import NotFound
from controlsvc.store import session_progress
from controlsvc.store.models.enclosures import Enclosure
from controlsvc.store.models.sessions import (
    RecordingSession,
    SessionEnclosure,
    SessionGap,
)
from controlsvc.store.pagination import (
    Page,
    after_key,
    cursor_datetime,
    decode_cursor,
    next_cursor,
)
from schemas.enums import SessionStatus
from schemas.rest.sessions import (
    GapOut,
    SessionEnclosureOut,
    SessionOut,
    SessionSummary,
)

log = logging.getLogger(__name__)


# -- reading ---------------------------------------------------------------------------------------


def get_session(session: Session, session_id: str) -> RecordingSession:
    rs = session.get(RecordingSession, session_id) if len(session_id) <= 64 else None
    if rs is None:
        raise NotFound(f"no session {session_id!r}", field="id")
    return rs


def get_session_enclosure(session: Session, session_id: str, eid: str) -> SessionEnclosure:
    """The enclosure's part in the session; ``NotFound`` saying which is missing."""
    get_session(session, session_id)
    se = session.scalar(
        select(SessionEnclosure).where(
            SessionEnclosure.session_id == session_id, SessionEnclosure.enclosure_id == eid
        )
    )
    if se is None:
        raise NotFound(f"enclosure {eid!r} is not part of session {session_id!r}", field="eid")
    return se


def _enclosures_of(session: Session, session_id: str) -> list[SessionEnclosure]:
    return list(
        session.scalars(
            select(SessionEnclosure)
            .where(SessionEnclosure.session_id == session_id)
            .order_by(SessionEnclosure.enclosure_id)
        )
    )


def _summary_fields(rs: RecordingSession) -> dict[str, Any]:
    return {
        "id": rs.id,
        "name": rs.name,
        "notes": rs.notes,
        "status": rs.status,
        "duration_s": rs.duration_s,
        "start_at": rs.start_at,
        "end_at": rs.end_at,
        "target_fps": rs.target_fps,
        "fragment_hourly": rs.fragment_hourly,
        "segment_minutes": rs.segment_minutes,
        "apply_filter": rs.apply_filter,
        "created_at": rs.created_at,
        "started_at": rs.started_at,
        "finished_at": rs.finished_at,
        "archived": rs.archived_at is not None,
    }


def session_out(session: Session, rs: RecordingSession, *, lost_grace_s: float = 0.0) -> SessionOut:
    """The session with every enclosure's progress (``session_progress``: the same figures
    the enclosure pages show), whether it is lost, its gaps, and the totals."""
    ses = _enclosures_of(session, rs.id)
    gaps: dict[str, list[GapOut]] = {}
    for gap in session.scalars(
        select(SessionGap)
        .where(SessionGap.session_id == rs.id)
        .order_by(SessionGap.enclosure_id, SessionGap.started_at)
    ):
        gaps.setdefault(gap.enclosure_id, []).append(GapOut.model_validate(gap))
    # Only the columns shown: whole rows would also parse 1,000 status documents.
    encs = {
        enc.id: enc
        for enc in session.connection().execute(
            select(Enclosure.id, Enclosure.name, Enclosure.state, Enclosure.state_changed_at).where(
                Enclosure.id.in_([se.enclosure_id for se in ses])
            )
        )
    }
    out = []
    for se in ses:
        enc = encs.get(se.enclosure_id)
        lost = session_progress.is_lost(se, enc.state if enc else None)
        since = session_progress.lost_since(se, enc)
        out.append(
            SessionEnclosureOut(
                enclosure_id=se.enclosure_id,
                file_prefix=se.file_prefix,
                state=se.state,
                message=se.message,
                state_changed_at=se.state_changed_at,
                confirmed_at=se.confirmed_at,
                enclosure_name=enc.name if enc else None,
                enclosure_state=enc.state if enc else None,
                lost_since=since,
                recorded_s=round(se.recorded_s, 3),
                frames=se.frames,
                bytes=se.bytes,
                segments=se.segments,
                last_frame_at=se.last_frame_at,
                gap_s=round(se.gap_s, 3),
                gaps=gaps.get(se.enclosure_id, []),
                progress=session_progress.progress_of(se),
                lost=lost,
                fails_at=session_progress.fails_at(since, lost_grace_s) if lost else None,
            )
        )
    totals = session_progress.totals_of((e.progress for e in out), sum(se.gap_s for se in ses))
    return SessionOut(
        **_summary_fields(rs),
        enclosure_states=dict(Counter(se.state for se in ses)),
        enclosures=out,
        totals=totals,
    )


def list_sessions(
    session: Session,
    *,
    limit: int,
    cursor: str | None = None,
    status: SessionStatus | None = None,
    archived: bool | None = False,
) -> Page:
    """Sessions, newest first, as ``SessionSummary`` items."""
    query = select(RecordingSession)
    if status is not None:
        query = query.where(RecordingSession.status == status.value)
    if archived is True:
        query = query.where(RecordingSession.archived_at.is_not(None))
    elif archived is False:
        query = query.where(RecordingSession.archived_at.is_(None))
    if cursor is not None:
        key = decode_cursor(cursor, "created_at", "id")
        at = cursor_datetime(key["created_at"])
        query = query.where(
            after_key(RecordingSession.created_at, RecordingSession.id, at, str(key["id"]))
        )
    query = query.order_by(RecordingSession.created_at.desc(), RecordingSession.id.desc())
    rows = list(session.scalars(query.limit(limit + 1)))
    items = rows[:limit]
    counts: dict[str, Counter[str]] = {rs.id: Counter() for rs in items}
    if items:
        for sid, state, n in session.execute(
            select(SessionEnclosure.session_id, SessionEnclosure.state, func.count())
            .where(SessionEnclosure.session_id.in_(list(counts)))
            .group_by(SessionEnclosure.session_id, SessionEnclosure.state)
        ).all():
            counts[sid][state] = n
    summaries = [
        SessionSummary(**_summary_fields(rs), enclosure_states=dict(counts[rs.id])) for rs in items
    ]
    after = next_cursor(rows, limit, lambda rs: {"created_at": rs.created_at, "id": rs.id})
    return Page(items=summaries, next_cursor=after)
