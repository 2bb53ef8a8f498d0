"""Reading recording sessions: one with its enclosures' progress, gaps and totals
(``session_json``), the list of sessions and the list of recordings. Reading never changes
anything; ``controlsvc.store.sessions`` creates sessions and moves them.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from pydantic_core import to_json
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from controlsvc.domain.errors import NotFound
from controlsvc.store import session_progress
from controlsvc.store.body_versions import Version, digest
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
from schemas.rest.sessions import SessionSummary

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
        *session_progress.FIGURE_COLUMNS,
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


# What a session's detail shows moves these: a state (with its message, its time and, once,
# ``confirmed_at``), a segment closed (its frames, bytes and seconds), a gap, the bridge's record
# of a loss, the enclosure's own state (lost, offline) or name. Each such write sets its time to
# now, past every earlier one, or adds one to a count. The last three move with every status.
_DETAIL_VERSION = select(
    func.count(),
    func.max(SessionEnclosure.state_changed_at),
    func.max(SessionEnclosure.confirmed_at),
    func.max(SessionEnclosure.lost_since),
    func.sum(SessionEnclosure.segments),
    func.sum(SessionEnclosure.gaps),
    func.max(Enclosure.state_changed_at),
    func.max(Enclosure.edited_at),
    # The live part: last.
    func.sum(SessionEnclosure.live_frames),
    func.sum(SessionEnclosure.live_s),
    func.max(SessionEnclosure.last_frame_at),
).outerjoin(Enclosure, Enclosure.id == SessionEnclosure.enclosure_id)
_LIVE_PARTS = 3


def detail_version(session: Session, rs: RecordingSession, *, lost_grace_s: float = 0.0) -> Version:
    """A cheap validator for ``session_json``: the session's own fields and one aggregate
    statement over its enclosures (see ``_DETAIL_VERSION``), no rows."""
    own = (*_summary_fields(rs).values(), lost_grace_s)
    parts = tuple(
        session.connection()
        .execute(_DETAIL_VERSION.where(SessionEnclosure.session_id == rs.id))
        .one()
    )
    return Version(settled=digest((*own, *parts[:-_LIVE_PARTS])), etag=digest((*own, *parts)))


def session_json(session: Session, rs: RecordingSession, *, lost_grace_s: float = 0.0) -> bytes:
    """``GET /api/sessions/{id}``'s body: ``session_document`` serialised as it stands. The
    document is what ``SessionOut`` would dump (the tests hold the two equal); validating
    1,000 enclosures' dicts against it again cost a third of a detail's time."""
    return to_json(session_document(session, rs, lost_grace_s=lost_grace_s))


def session_document(
    session: Session, rs: RecordingSession, *, lost_grace_s: float = 0.0
) -> dict[str, Any]:
    """The session with every enclosure's progress (``session_progress``: the same figures
    the enclosure pages show), whether it is lost, its gaps, and the totals, as plain data in
    ``SessionOut``'s shape (times aware, in UTC).

    Two Core statements, each row unpacked once: building 1,000 ``SessionEnclosureOut`` models
    one by one from ORM rows was 90% of a detail's time."""
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
    for (
        eid,
        file_prefix,
        state,
        message,
        state_changed_at,
        confirmed_at,
        segments_s,
        live_s,
        frames,
        live_frames,
        size,
        segments,
        last_frame_at,
        gap_s,
        recorded_lost_since,
        enclosure_name,
        enclosure_state,
        enclosure_changed_at,
    ) in connection.execute(_DETAIL.where(SessionEnclosure.session_id == rs.id)):
        lost = session_progress.lost_in(state, enclosure_state)
        since = session_progress.lost_since_of(
            recorded_lost_since, enclosure_state, enclosure_changed_at
        )
        states[state] += 1
        gap_total += gap_s
        out.append(
            {
                "enclosure_id": eid,
                "enclosure_name": enclosure_name,
                "file_prefix": file_prefix,
                "state": state,
                "message": message,
                "state_changed_at": state_changed_at,
                "confirmed_at": confirmed_at,
                "enclosure_state": enclosure_state,
                "lost_since": since,
                "recorded_s": round(segments_s + live_s, 3),
                "frames": frames,
                "bytes": size,
                "segments": segments,
                "last_frame_at": last_frame_at,
                "gap_s": round(gap_s, 3),
                "gaps": gaps.get(eid, []),
                "progress": session_progress.progress_values(
                    state, segments_s, live_s, frames, live_frames, size, segments, last_frame_at
                ),
                "lost": lost,
                "fails_at": session_progress.fails_at(since, lost_grace_s) if lost else None,
            }
        )
    totals = session_progress.totals_of((e["progress"] for e in out), gap_total)
    return {
        **_summary_fields(rs),
        "enclosure_states": dict(states),
        "enclosures": out,
        "totals": totals.model_dump(),
    }


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
