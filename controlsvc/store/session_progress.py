"""What an enclosure recorded in a session, and whether it is lost there: the one place these
figures are computed, so the session page, the enclosure page, the fleet and ``jaxmba-ctl``
show the same numbers (they all read them from the API, never from a heartbeat of their own).

- ``live`` while the enclosure still records the session: the closed segments (each proven by
  its ``segment_closed`` report) plus the open file as the agent's latest status described it
  (the bridge keeps ``live_s``/``live_frames``; while the enclosure is lost they stay as last
  reported).
- ``evidence`` once it is done with the session (completed, failed, canceled, timed out): the
  closed segments only.

A lost or offline enclosure still active in a session is ``lost`` at once (not after the
bridge's next tick), and counts as timed out ``session_lost_grace_s`` after it was lost.
No Flask, no paho.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from controlsvc.domain.session_state import (
    ACTIVE_ENCLOSURE_STATES,
    ACTIVE_SESSION_STATUSES,
)
from controlsvc.store.models.enclosures import Enclosure
from controlsvc.store.models.sessions import RecordingSession, SessionEnclosure
from schemas.enums import EnclosureState
from schemas.rest.sessions import EnclosureSessionOut, RecordingProgress, SessionTotals

__all__ = [
    "ACTIVE_SESSION_ENCLOSURE",
    "ACTIVE_SESSION_ENCLOSURE_STATES",
    "FIGURE_COLUMNS",
    "enclosure_sessions",
    "HasProgress",
    "fails_at",
    "is_lost",
    "lost_in",
    "lost_since",
    "lost_since_of",
    "progress_fields",
    "progress_values",
    "progress_of",
    "recorded",
    "totals_of",
]

_AWAY = frozenset({EnclosureState.LOST.value, EnclosureState.OFFLINE.value})
# An enclosure's figures in a session, as a read selects them: what ``progress_values`` takes
# after the state, in its order, then the time not recorded.
FIGURE_COLUMNS = (
    SessionEnclosure.segments_s,
    SessionEnclosure.live_s,
    SessionEnclosure.frames,
    SessionEnclosure.live_frames,
    SessionEnclosure.bytes,
    SessionEnclosure.segments,
    SessionEnclosure.last_frame_at,
    SessionEnclosure.gap_s,
)
ACTIVE_SESSION_ENCLOSURE_STATES = [s.value for s in ACTIVE_ENCLOSURE_STATES]
_ACTIVE_RS = [s.value for s in ACTIVE_SESSION_STATUSES]
# An enclosure's part in a session that is still going (the join with RecordingSession).
ACTIVE_SESSION_ENCLOSURE = (
    SessionEnclosure.state.in_(ACTIVE_SESSION_ENCLOSURE_STATES),
    RecordingSession.status.in_(_ACTIVE_RS),
)


def _live(state: str) -> bool:
    """Still recording the session: its figures are live, and it can be lost there."""
    return state in ACTIVE_ENCLOSURE_STATES  # a StrEnum set: the stored text is looked up as is


def recorded(
    state: str, segments_s: float, live_s: float, frames: int, live_frames: int
) -> tuple[float, int]:
    """Recorded seconds and frames from a session enclosure's columns: the closed segments,
    plus the open file while it is live (the one rule every page's figures come from)."""
    live = _live(state)
    return (
        round(segments_s + (live_s if live else 0.0), 3),
        frames + (live_frames if live else 0),
    )


class HasProgress(Protocol):
    """The columns of a session enclosure that its figures come from: a ``SessionEnclosure``
    or a row of these columns."""

    @property
    def state(self) -> str: ...

    @property
    def segments_s(self) -> float: ...

    @property
    def live_s(self) -> float: ...

    @property
    def frames(self) -> int: ...

    @property
    def live_frames(self) -> int: ...

    @property
    def bytes(self) -> int: ...

    @property
    def segments(self) -> int: ...

    @property
    def last_frame_at(self) -> datetime | None: ...


def progress_fields(se: HasProgress) -> dict[str, Any]:
    """The fields of ``RecordingProgress`` for the enclosure's figures in its session, live or
    evidence (see the module). A dict: a session's detail validates 1,000 of them at once,
    and the bridge's progress events need no model at all."""
    return progress_values(
        se.state,
        se.segments_s,
        se.live_s,
        se.frames,
        se.live_frames,
        se.bytes,
        se.segments,
        se.last_frame_at,
    )


def progress_values(
    state: str,
    segments_s: float,
    live_s: float,
    frames: int,
    live_frames: int,
    size: int,
    segments: int,
    last_frame_at: datetime | None,
) -> dict[str, Any]:
    """``progress_fields`` from the columns' values (a row unpacked)."""
    recorded_s, total = recorded(state, segments_s, live_s, frames, live_frames)
    return {
        "basis": "live" if _live(state) else "evidence",
        "recorded_s": recorded_s,
        "frames": total,
        "bytes": size,
        "segments": segments,
        "last_frame_at": last_frame_at,
    }


def progress_of(se: HasProgress) -> RecordingProgress:
    """The enclosure's figures in its session as a model (``progress_fields``)."""
    return RecordingProgress(**progress_fields(se))


def totals_of(progress: Iterable[Mapping[str, Any]], gap_s: float) -> SessionTotals:
    """Summed over the enclosures' ``progress_fields``."""
    items = list(progress)
    return SessionTotals(
        basis="live" if any(p["basis"] == "live" for p in items) else "evidence",
        recorded_s=round(sum(p["recorded_s"] for p in items), 3),
        frames=sum(p["frames"] for p in items),
        bytes=sum(p["bytes"] for p in items),
        segments=sum(p["segments"] for p in items),
        gap_s=round(gap_s, 3),
    )


def is_lost(se: HasProgress, enclosure_state: str | None) -> bool:
    """Lost or offline while still active in the session (timed out is its own state)."""
    return lost_in(se.state, enclosure_state)


def lost_in(state: str, enclosure_state: str | None) -> bool:
    """``is_lost`` from the session enclosure's state and the enclosure's."""
    return _live(state) and enclosure_state in _AWAY


class HasState(Protocol):
    """What ``lost_since`` reads of an enclosure: an ``Enclosure`` or a row of these columns."""

    @property
    def state(self) -> str: ...

    @property
    def state_changed_at(self) -> datetime | None: ...


def lost_since(recorded_since: datetime | None, enc: HasState | None) -> datetime | None:
    """Since when: the bridge's record (the session enclosure's ``lost_since``), else (before
    its next tick) the enclosure's change."""
    if enc is None:
        return recorded_since
    return lost_since_of(recorded_since, enc.state, enc.state_changed_at)


def lost_since_of(
    recorded_since: datetime | None, enclosure_state: str | None, changed_at: datetime | None
) -> datetime | None:
    """``lost_since`` from the enclosure's state and its change's time."""
    if recorded_since is not None:
        return recorded_since
    if enclosure_state in _AWAY:
        return changed_at
    return None


def fails_at(since: datetime | None, grace_s: float) -> datetime | None:
    return None if since is None else since + timedelta(seconds=grace_s)


def enclosure_sessions(
    session: Session, encs: Sequence[Enclosure], grace_s: float
) -> dict[str, EnclosureSessionOut]:
    """Each enclosure's part in the active session it belongs to (one query for a page)."""
    ids = [enc.id for enc in encs]
    if not ids:
        return {}
    rows = session.execute(
        select(SessionEnclosure, RecordingSession)
        .join(RecordingSession, RecordingSession.id == SessionEnclosure.session_id)
        .where(
            SessionEnclosure.enclosure_id.in_(ids),
            *ACTIVE_SESSION_ENCLOSURE,
        )
        .order_by(SessionEnclosure.id)
    ).all()
    by_id = {enc.id: enc for enc in encs}
    out: dict[str, EnclosureSessionOut] = {}
    for se, rs in rows:  # the newest last: it wins
        enc = by_id[se.enclosure_id]
        lost = is_lost(se, enc.state)
        since = lost_since(se.lost_since, enc) if lost else None
        out[se.enclosure_id] = EnclosureSessionOut(
            session_id=rs.id,
            session_name=rs.name,
            session_status=rs.status,
            duration_s=rs.duration_s,
            state=se.state,
            lost=lost,
            lost_since=since,
            fails_at=fails_at(since, grace_s) if lost else None,
            progress=progress_of(se),
        )
    return out
