"""What the sessions' timer reads each tick (``controlsvc.bridge.session_driver``), and which
enclosures it must step.

A tick reads, for each running session, a few columns of its enclosures and the two parts of
their statuses it decides by (``recording``, ``camera``); on PostgreSQL only the rows that
changed since the previous tick's snapshot, plus those a clock can move, so that a tick's cost
follows what moved, not the size of the fleet (``SessionLook.rows``). ``observed`` says what a
status shows of the recording of a session; ``SessionLook.due`` whether an enclosure needs a
step (when in doubt, yes: a step is idempotent).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, and_, bindparam, literal_column, or_, select, text, true
from sqlalchemy.orm import Session

from controlsvc.domain.session_state import ACTIVE_ENCLOSURE_STATES, EncState, Signal, next_state
from controlsvc.store.models.enclosures import Enclosure
from controlsvc.store.models.sessions import RecordingSession, SessionEnclosure
from controlsvc.store.sessions import OFFLINE_STATES
from schemas.enums import EnclosureState

__all__ = ["FULL_LOOK_EVERY", "STEP_LOOK", "SessionLook", "observed"]

# On PostgreSQL a tick reads the rows that changed since the last (``SessionLook.rows``), and
# every row this often.
FULL_LOOK_EVERY = timedelta(seconds=30)


def _when(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def observed(
    recording: Any, camera: Any, enc_state: str, known_last_frame: datetime | None, rs_id: str
) -> tuple[float | None, int, datetime | None, bool] | None:
    """What the enclosure's latest status (its ``recording`` and ``camera`` parts) says about
    its recording of session ``rs_id``: the open segment's seconds (None: unknown), the open
    segment's frames, the last frame if newer than ``known_last_frame`` (else None), whether
    frames flow; None when it is not recording ``rs_id`` (or is away)."""
    live = EnclosureState(enc_state) not in OFFLINE_STATES
    if not (live and isinstance(recording, dict) and recording.get("session_id") == rs_id):
        return None
    if not isinstance(camera, dict):
        camera = {}
    last_frame = _when(camera.get("last_frame_at"))
    segment_start = _when(recording.get("segment_started_at"))
    live_s = None
    if last_frame is not None and segment_start is not None:
        live_s = max(0.0, (last_frame - segment_start).total_seconds())
    if last_frame is not None and known_last_frame is not None and last_frame <= known_last_frame:
        last_frame = None
    frames = camera.get("frames_written") or 0
    return (
        live_s,
        _open_frames(recording, frames),
        last_frame,
        frames > 0 and bool(camera.get("recording")),
    )


def _open_frames(recording: dict[str, Any], frames_written: int) -> int:
    """Frames in the open segment file: as the agent says, else (an agent from before
    ``segment_frames``) all its frames while it has closed none, else unknown (0)."""
    segment = recording.get("segment_frames")
    if isinstance(segment, int) and segment >= 0:
        return segment
    return int(frames_written) if not recording.get("segments_closed") else 0


# What ``SessionLook.due`` reads of each enclosure of a session, in id order (the order the
# chunks lock them in): the enclosure's state and the two parts of its status it looks at.
_LOOK = (
    select(
        SessionEnclosure.id,
        SessionEnclosure.state,
        SessionEnclosure.starting_at,
        SessionEnclosure.lost_since,
        SessionEnclosure.live_s,
        SessionEnclosure.live_frames,
        SessionEnclosure.last_frame_at,
        Enclosure.state.label("enc_state"),
        Enclosure.status["recording"].label("recording"),
        Enclosure.status["camera"].label("camera"),
    )
    .join(Enclosure, Enclosure.id == SessionEnclosure.enclosure_id)
    .where(SessionEnclosure.session_id == bindparam("sid"))
    .order_by(SessionEnclosure.id)
)


def _changed_since(table: str) -> str:
    """PostgreSQL: the row of ``table`` (its current version) was written by a transaction
    the snapshot ``:since`` does not see: committed after it was taken, or still open then.
    ``xmin`` is 32 bits; it is widened to the epoch of the current snapshot's ``xmax`` (the
    previous one when that would put it in the future). Wrong only for a row untouched for
    two billion transactions, which then counts as changed: looked at once more."""
    xmax = "pg_snapshot_xmax(pg_current_snapshot())::text::bigint"
    low = f"{table}.xmin::text::bigint"
    wide = f"(({xmax} >> 32) << 32) + {low}"
    full = f"CASE WHEN {wide} > {xmax} THEN {wide} - 4294967296 ELSE {wide} END"
    return (
        f"NOT pg_visible_in_snapshot(GREATEST({full}, 0)::text::xid8, CAST(:since AS pg_snapshot))"
    )


def _with_snapshot(look: Any) -> Any:
    """``look`` behind the snapshot it was taken in (PostgreSQL): one row per enclosure, each
    with the snapshot in its first column, or, when none matches, one row of the snapshot."""
    snapshot = select(literal_column("pg_current_snapshot()::text").label("snapshot")).cte("snap")
    rows = look.order_by(None).subquery("look")
    return (
        select(snapshot.c.snapshot, *rows.c)
        .select_from(snapshot.outerjoin(rows, true()))
        .order_by(rows.c.id)
    )


# PostgreSQL: every enclosure of the session, and the snapshot of the look.
_LOOK_ALL = _with_snapshot(_LOOK)
# PostgreSQL: the enclosures whose session row or enclosure row changed since the snapshot
# ``:since``, and those a clock can move without any change (``SessionLook.due``'s time-outs):
# pending (the start time), starting (its time-out), and lost or away (the grace).
_LOOK_CHANGED = _with_snapshot(
    _LOOK.where(
        or_(
            # Not the rows the timer's own steps wrote since (``SessionLook.wrote``): they
            # already hold what the enclosure's row said then, which is looked at by itself.
            and_(
                text(_changed_since("session_enclosures")),
                text("session_enclosures.xmin::text::bigint <> ALL(CAST(:own AS bigint[]))"),
            ),
            text(_changed_since("enclosures")),
            SessionEnclosure.state.in_([EncState.PENDING.value, EncState.STARTING.value]),
            SessionEnclosure.lost_since.is_not(None),
            Enclosure.state.in_([s.value for s in OFFLINE_STATES]),
        )
    )
)


# What ``SessionDriver._step`` reads of the enclosures it steps: the two parts of the status,
# not the document (the whole row only for an alert's words, when one is away or late).
STEP_LOOK = select(
    Enclosure.id,
    Enclosure.state,
    Enclosure.state_changed_at,
    Enclosure.status["recording"].label("recording"),
    Enclosure.status["camera"].label("camera"),
).where(Enclosure.id.in_(bindparam("ids", expanding=True)))


@dataclass(frozen=True, slots=True)
class _Looked:
    """A session's last look (PostgreSQL): its snapshot, when it last read every row, and
    the transactions of the timer's own steps since (their 32-bit ids, as ``xmin`` has them)."""

    snapshot: str
    full_at: datetime
    own: list[int] = field(default_factory=list)


class SessionLook:
    """The timer's looks at the running sessions, and what it remembers of the last one of
    each (its snapshot)."""

    def __init__(self, start_timeout: timedelta) -> None:
        self.start_timeout = start_timeout
        self._looked: dict[str, _Looked] = {}  # by session id

    def keep(self, session_ids: list[str]) -> None:
        """Forget the sessions not among ``session_ids`` (no longer running)."""
        self._looked = {sid: last for sid, last in self._looked.items() if sid in session_ids}

    def forget(self, session_id: str) -> None:
        """Read every row of the session at its next look (what was due was not all stepped)."""
        self._looked.pop(session_id, None)

    def wrote(self, session: Session, session_id: str) -> None:
        """The open transaction steps rows of ``session_id`` (PostgreSQL): what it writes is
        the timer's own doing, which its next look need not read again."""
        last = self._looked.get(session_id)
        if last is None or session.get_bind().dialect.name != "postgresql":
            return
        xid = session.execute(text("SELECT pg_current_xact_id()::text")).scalar_one()
        last.own.append(int(xid) % 2**32)

    def rows(self, session: Session, rs: RecordingSession, now: datetime) -> list[Row[Any]]:
        """``_LOOK``'s rows of the enclosures of ``rs`` that may be due (``due`` decides).

        Columns, not ORM objects: this runs every tick for every active session, and loading
        a thousand of each (and decoding their whole statuses) cost a tenth of a second each
        time. On PostgreSQL only the rows that changed since the previous look's snapshot,
        and those a clock moves (``_LOOK_CHANGED``): a tick's cost follows what moved, not the
        fleet (every row of 50,000 would take seconds a tick). Every row is read on the
        first look, once the session has reached its end (everything moves then), after a
        step that could not lock every row it wanted, and every ``FULL_LOOK_EVERY``, which
        also bounds what any case not foreseen here could delay."""
        if session.get_bind().dialect.name != "postgresql":
            return list(session.execute(_LOOK, {"sid": rs.id}))
        last = self._looked.get(rs.id)
        if (
            last is None
            or now >= rs.end_at
            or not last.full_at <= now < last.full_at + FULL_LOOK_EVERY
        ):
            rows = session.execute(_LOOK_ALL, {"sid": rs.id}).all()
            full_at = now
        else:
            params = {"sid": rs.id, "since": last.snapshot, "own": last.own}
            rows = session.execute(_LOOK_CHANGED, params).all()
            full_at = last.full_at
        self._looked[rs.id] = _Looked(rows[0].snapshot, full_at)
        return [row for row in rows if row.id is not None]

    def due(self, rs: RecordingSession, look: Row[Any], now: datetime) -> bool:
        """Whether ``SessionDriver._step`` may change the enclosure (when in doubt, yes), from
        ``_LOOK``'s row of it, read without locks."""
        state = EncState(look.state)
        if state is EncState.PENDING and now >= rs.start_at:
            return True
        if EnclosureState(look.enc_state) in OFFLINE_STATES or look.lost_since is not None:
            return True  # lost: alerts and the grace (rare; not worth predicting)
        if state is EncState.STARTING and (
            look.starting_at is None or now - look.starting_at > self.start_timeout
        ):
            return True
        if state in ACTIVE_ENCLOSURE_STATES and now > rs.end_at + self.start_timeout:
            return True
        seen = observed(look.recording, look.camera, look.enc_state, look.last_frame_at, rs.id)
        if seen is None:
            return bool(look.live_s != 0.0)
        live_s, live_frames, last_frame_at, flowing = seen
        if flowing and next_state(state, Signal.FRAMES, ended=now >= rs.end_at) is not None:
            return True
        return (
            (live_s is not None and live_s != look.live_s)
            or live_frames != look.live_frames
            or (last_frame_at is not None and last_frame_at != look.last_frame_at)
        )
