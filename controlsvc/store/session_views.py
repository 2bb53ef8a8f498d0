"""Reading recording sessions: one with its enclosures' progress, gaps and totals
(``session_out``), the list of sessions and the list of recordings. Reading never changes
anything; ``controlsvc.store.sessions`` creates sessions and moves them.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime
from typing import Any, NamedTuple

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


# What a session's detail shows of each enclosure: its part in the session and three columns of
# the enclosure itself (whole rows would also parse 1,000 status documents).
_DETAIL = (
    select(
        SessionEnclosure.enclosure_id,
        SessionEnclosure.file_prefix,
        SessionEnclosure.state,
        SessionEnclosure.message,
        SessionEnclosure.state_changed_at,
        SessionEnclosure.confirmed_at,
        SessionEnclosure.segments_s,
        SessionEnclosure.live_s,
        SessionEnclosure.frames,
        SessionEnclosure.live_frames,
        SessionEnclosure.bytes,
        SessionEnclosure.segments,
        SessionEnclosure.last_frame_at,
        SessionEnclosure.gap_s,
        SessionEnclosure.lost_since,
        Enclosure.name.label("enclosure_name"),
        Enclosure.state.label("enclosure_state"),
        Enclosure.state_changed_at.label("enclosure_changed_at"),
    )
    .outerjoin(Enclosure, Enclosure.id == SessionEnclosure.enclosure_id)
    .order_by(SessionEnclosure.enclosure_id)
)
_GAPS = select(
    SessionGap.enclosure_id,
    SessionGap.started_at,
    SessionGap.ended_at,
    SessionGap.gap_s,
    SessionGap.cause,
).order_by(SessionGap.enclosure_id, SessionGap.started_at)


class _EnclosureNow(NamedTuple):
    """The enclosure's side of ``lost_since``."""

    state: str
    state_changed_at: datetime | None


def session_out(session: Session, rs: RecordingSession, *, lost_grace_s: float = 0.0) -> SessionOut:
    """The session with every enclosure's progress (``session_progress``: the same figures
    the enclosure pages show), whether it is lost, its gaps, and the totals.

    Two Core statements and plain dicts, validated once as a whole: building 1,000
    ``SessionEnclosureOut`` models one by one from ORM rows was 90% of a detail's time."""
    connection = session.connection()
    gaps: dict[str, list[dict[str, Any]]] = {}
    for eid, started_at, ended_at, gap_s, cause in connection.execute(
        _GAPS.where(SessionGap.session_id == rs.id)
    ):
        gaps.setdefault(eid, []).append(
            {"started_at": started_at, "ended_at": ended_at, "gap_s": gap_s, "cause": cause}
        )
    out: list[dict[str, Any]] = []
    states: Counter[str] = Counter()
    gap_total = 0.0
    for row in connection.execute(_DETAIL.where(SessionEnclosure.session_id == rs.id)):
        enc = (
            None
            if row.enclosure_state is None
            else _EnclosureNow(row.enclosure_state, row.enclosure_changed_at)
        )
        lost = session_progress.is_lost(row, row.enclosure_state)
        since = session_progress.lost_since(row.lost_since, enc)
        states[row.state] += 1
        gap_total += row.gap_s
        out.append(
            {
                "enclosure_id": row.enclosure_id,
                "file_prefix": row.file_prefix,
                "state": row.state,
                "message": row.message,
                "state_changed_at": row.state_changed_at,
                "confirmed_at": row.confirmed_at,
                "enclosure_name": row.enclosure_name,
                "enclosure_state": row.enclosure_state,
                "lost_since": since,
                "recorded_s": round(row.segments_s + row.live_s, 3),
                "frames": row.frames,
                "bytes": row.bytes,
                "segments": row.segments,
                "last_frame_at": row.last_frame_at,
                "gap_s": round(row.gap_s, 3),
                "gaps": gaps.get(row.enclosure_id, []),
                "progress": session_progress.progress_fields(row),
                "lost": lost,
                "fails_at": session_progress.fails_at(since, lost_grace_s) if lost else None,
            }
        )
    totals = session_progress.totals_of((e["progress"] for e in out), gap_total)
    return SessionOut.model_validate(
        {
            **_summary_fields(rs),
            "enclosure_states": dict(states),
            "enclosures": out,
            "totals": totals,
        }
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
