"""Recording sessions: create, cancel, archive, read; and the steps the bridge drives them by.
No Flask, no paho: plain functions over a ``Session`` (they flush, the caller commits) that
return the ``desired`` documents to publish after the commit (``controlsvc.store.desired``).

A session is durable desired state. Creating one records it and every enclosure's ``desired``
document; that document IS the command. The bridge (``controlsvc.bridge.session_events``,
``controlsvc.bridge.session_driver``) moves each enclosure through
``controlsvc.domain.session_state`` from the agents' events, statuses and its timer, and derives
the session's status from them (``settle``); reading never changes anything."""

from __future__ import annotations

import logging
import secrets
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Table, select, text, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from controlsvc.domain.errors import Conflict, InvalidInput
from controlsvc.domain.session_state import (
    ACTIVE_ENCLOSURE_STATES,
    ACTIVE_SESSION_STATUSES,
    EncState,
    Signal,
    Transition,
    derive_session,
    next_state,
)
from controlsvc.store import desired, eventlog
from controlsvc.store.bulk_rows import insert_rows
from controlsvc.store.db import utcnow
from controlsvc.store.desired import Outgoing
from controlsvc.store.models.enclosures import Enclosure
from controlsvc.store.models.sessions import (
    MESSAGE_LENGTH,
    RecordingSession,
    SessionEnclosure,
    SessionEnclosureRow,
    SessionGap,
)
from controlsvc.store.session_views import get_session, get_session_enclosure
from schemas.enums import EnclosureState, SessionStatus
from schemas.logs import log_ids
from schemas.messages import DesiredRecording
from schemas.rest.sessions import (
    SessionCreate,
)
from schemas.topics import Topics

log = logging.getLogger(__name__)

__all__ = [
    "ACTIVE_SESSION_VALUES",
    "DONE_STATES",
    "OFFLINE_STATES",
    "EventIntent",
    "record_events",
    "apply",
    "archive_session",
    "cancel_enclosure",
    "cancel_session",
    "create_session",
    "desired_recording",
    "settle",
    "state_event",
    "transition_values",
]

OFFLINE_STATES = frozenset({EnclosureState.LOST, EnclosureState.OFFLINE})
_ACTIVE_SE = [s.value for s in ACTIVE_ENCLOSURE_STATES]
ACTIVE_SESSION_VALUES = [s.value for s in ACTIVE_SESSION_STATUSES]
# States in which an enclosure still belongs to a running session (timed_out may come back).
_HOLDING = [*_ACTIVE_SE, EncState.TIMED_OUT.value]
# An enclosure in one of these states is done with the session: its desired is cleared.
DONE_STATES = frozenset({EncState.COMPLETED, EncState.FAILED, EncState.CANCELED})
# pg_advisory_xact_lock key that serialises session creation ("jaxmba" in ASCII, then 2;
# ``eventlog`` uses 1).
CREATE_LOCK_KEY = 0x6A61786D626102
_SE_TABLE: Table = SessionEnclosure.__table__  # type: ignore[assignment]


EventIntent = eventlog.Intent
record_events = eventlog.record_intents  # one multi-row INSERT: a cancel records 1,000


def _clip(text: str | None) -> str | None:
    if text is None or len(text) <= MESSAGE_LENGTH:
        return text
    return text[: MESSAGE_LENGTH - 3] + "..."


def new_session_id(now: datetime) -> str:
    """``YYYYmmdd-HHMMSS-xxxxxx``: sorts by time, safe as a directory name."""
    return f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


# -- transitions (shared by the API and the bridge) -----------------------------------------------


def state_event(
    rs_id: str, se: SessionEnclosure | SessionEnclosureRow, previous: str
) -> dict[str, Any]:
    return {
        "session_id": rs_id,
        "enclosure_id": se.enclosure_id,
        "state": se.state,
        "previous_state": previous,
        "message": se.message,
        "at": se.state_changed_at,
    }


def transition_values(
    se: SessionEnclosure | SessionEnclosureRow, transition: Transition, now: datetime
) -> dict[str, Any]:
    """The columns of ``se`` that ``transition`` sets, and their new values."""
    values: dict[str, Any] = {
        "state": transition.state.value,
        "message": _clip(transition.message),
        "state_changed_at": now,
    }
    if transition.state is EncState.STARTING:
        values["starting_at"] = now
    if transition.state is EncState.RECORDING and se.confirmed_at is None:
        values["confirmed_at"] = now
    if transition.state is EncState.COMPLETED:
        values["live_s"] = 0.0
    return values


def apply(
    se: SessionEnclosure | SessionEnclosureRow,
    transition: Transition | None,
    now: datetime,
    events: list[EventIntent],
) -> bool:
    """Apply ``transition`` to ``se`` and add a ``session.state`` event; False if None."""
    if transition is None:
        return False
    previous = se.state
    for name, value in transition_values(se, transition, now).items():
        setattr(se, name, value)
    events.append(
        ("session.state", state_event(se.session_id, se, previous), se.enclosure_id, None)
    )
    log.info(
        "session %s, enclosure %s: %s -> %s%s",
        se.session_id,
        se.enclosure_id,
        previous,
        se.state,
        f" ({se.message})" if se.message else "",
        extra=log_ids(enclosure_id=se.enclosure_id, session_id=se.session_id),
    )
    return True


def _final_gap(session: Session, rs: RecordingSession, se: SessionEnclosure) -> None:
    """Time after an enclosure's failure until the end: not recorded."""
    if se.state not in (EncState.FAILED.value, EncState.TIMED_OUT.value):
        return
    start = se.last_frame_at or rs.start_at
    end = min(rs.end_at, rs.finished_at or rs.end_at)
    if end <= start:
        return
    inserted = insert_rows(
        session.connection(),
        SessionGap.__table__,  # type: ignore[arg-type]
        [
            {
                "session_id": rs.id,
                "enclosure_id": se.enclosure_id,
                "event_id": f"final:{rs.id}",
                "cause": "not_recorded",
                "started_at": start,
                "ended_at": end,
                "gap_s": (end - start).total_seconds(),
            }
        ],
    )
    if inserted:
        se.gap_s += (end - start).total_seconds()
        se.gaps += 1


def settle(
    session: Session,
    topics: Topics,
    rs: RecordingSession,
    ses: Sequence[SessionEnclosure],
    now: datetime,
    events: list[EventIntent],
) -> list[Outgoing]:
    """Derive the session's status from its enclosures; clear the ``desired`` of enclosures
    that are done. The documents to publish after the commit."""
    previous = SessionStatus(rs.status)
    status = derive_session(
        previous,
        [EncState(se.state) for se in ses],
        started=now >= rs.start_at,
        ended=now >= rs.end_at,
        canceled=rs.cancel_requested_at is not None,
    )
    finished = status.is_terminal
    done = []
    for se in ses:
        state = EncState(se.state)
        if state in DONE_STATES or (finished and state.is_terminal):
            done.append(se.enclosure_id)
    outgoing = desired.clear_many(session, topics, done, rs.id, now=now)
    if status is previous:
        return outgoing
    rs.status = status.value
    if status is SessionStatus.RUNNING and rs.started_at is None:
        rs.started_at = now
    if finished:
        rs.finished_at = now
        for se in ses:
            _final_gap(session, rs, se)
    data = {
        "session_id": rs.id,
        "status": rs.status,
        "previous_status": previous.value,
        "at": now,
        "enclosure_states": dict(Counter(se.state for se in ses)),
    }
    events.append(("session.state", data, None, None))
    log.info(
        "session %s: %s -> %s",
        rs.id,
        previous.value,
        status.value,
        extra=log_ids(session_id=rs.id),
    )
    return outgoing


# -- creating -------------------------------------------------------------------------------------


def desired_recording(rs: RecordingSession, se: SessionEnclosure) -> DesiredRecording:
    return _recording(rs, se.file_prefix)


def _recording(rs: RecordingSession, file_prefix: str) -> DesiredRecording:
    return DesiredRecording(
        session_id=rs.id,
        file_prefix=file_prefix,
        start_at=rs.start_at,
        end_at=rs.end_at,
        target_fps=rs.target_fps,
        fragment_hourly=rs.fragment_hourly,
        segment_minutes=rs.segment_minutes,
        apply_filter=rs.apply_filter,
    )


def _names(ids: Iterable[str]) -> str:
    return ", ".join(sorted(ids))


class _Known(Protocol):
    """What a creation needs to know of each enclosure asked for."""

    @property
    def state(self) -> str: ...
    @property
    def retired_at(self) -> datetime | None: ...


def _known(session: Session, ids: Sequence[str]) -> dict[str, _Known]:
    """Three columns of the enclosures asked for: loading the whole rows (status documents
    included) took a third of a 1,000-enclosure session's creation."""
    rows = session.execute(
        select(Enclosure.id, Enclosure.state, Enclosure.retired_at).where(Enclosure.id.in_(ids))
    )
    return {row.id: row for row in rows}


def _check_enclosures(session: Session, body: SessionCreate, encs: Mapping[str, _Known]) -> None:
    wanted = [e.id for e in body.enclosures]
    unknown = [eid for eid in wanted if eid not in encs or encs[eid].retired_at is not None]
    if unknown:
        raise InvalidInput(f"unknown enclosures: {_names(unknown)}", field="enclosures")
    busy = session.execute(
        select(SessionEnclosure.enclosure_id, SessionEnclosure.session_id, RecordingSession.name)
        .join(RecordingSession, RecordingSession.id == SessionEnclosure.session_id)
        .where(
            SessionEnclosure.enclosure_id.in_(wanted),
            SessionEnclosure.state.in_(_HOLDING),
            RecordingSession.status.in_(ACTIVE_SESSION_VALUES),
        )
        .order_by(SessionEnclosure.enclosure_id)
    ).all()
    if busy:
        described = "; ".join(f"{eid} in session {sid} ({name})" for eid, sid, name in busy)
        raise Conflict(f"enclosures already in an active session: {described}", field="enclosures")
    if not body.allow_offline:
        away = [eid for eid in wanted if encs[eid].state in OFFLINE_STATES]
        if away:
            raise Conflict(
                "enclosures lost or offline (set allow_offline to record on them anyway): "
                + ", ".join(f"{eid} ({encs[eid].state})" for eid in sorted(away)),
                field="enclosures",
            )


def _serialise_creation(session: Session) -> None:
    """Creations one at a time (PostgreSQL: a transaction lock), so two cannot both find an
    enclosure free. Not the enclosures' row locks: the bridge's writer takes those for every
    message, and a creation on 1,000 enclosures would stall it for the whole transaction."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CREATE_LOCK_KEY})


def create_session(
    session: Session,
    topics: Topics,
    body: SessionCreate,
    *,
    created_by_id: int | None = None,
    now: datetime | None = None,
) -> tuple[RecordingSession, list[Outgoing]]:
    """Record a new session and every enclosure's ``desired`` (flushed); the caller commits,
    then publishes the returned documents."""
    now = now or utcnow()
    if body.start_at is not None and body.start_at <= now:
        raise InvalidInput("must be in the future (leave it out to start now)", field="start_at")
    _serialise_creation(session)
    wanted = [e.id for e in body.enclosures]
    encs = _known(session, wanted)
    _check_enclosures(session, body, encs)
    start_at = body.start_at or now
    rs = RecordingSession(
        id=new_session_id(now),
        name=body.name,
        notes=body.notes,
        status=(SessionStatus.SCHEDULED if start_at > now else SessionStatus.RUNNING).value,
        duration_s=body.duration_s,
        start_at=start_at,
        end_at=start_at + timedelta(seconds=body.duration_s),
        target_fps=body.target_fps,
        fragment_hourly=body.fragment_hourly,
        segment_minutes=body.segment_minutes,
        apply_filter=body.apply_filter,
        created_at=now,
        created_by_id=created_by_id,
        started_at=None if start_at > now else now,
    )
    session.add(rs)
    session.flush()
    first = EncState.PENDING if start_at > now else EncState.STARTING
    rows = [
        {
            "session_id": rs.id,
            "enclosure_id": item.id,
            "file_prefix": item.file_prefix,
            "state": first.value,
            "state_changed_at": now,
            "starting_at": now if first is EncState.STARTING else None,
            "lost_since": now if encs[item.id].state in OFFLINE_STATES else None,
            "segments": 0,
            "frames": 0,
            "bytes": 0,
            "segments_s": 0.0,
            "live_s": 0.0,
            "live_frames": 0,
            "gap_s": 0.0,
            "gaps": 0,
        }
        for item in body.enclosures
    ]
    # One statement, the rows one parameter (``bulk_rows``): the ORM's bulk INSERT of a
    # thousand rows took half of the creation's time, all of it before the first document
    # could leave. The response reads them back anyway.
    insert_rows(session.connection(), _SE_TABLE, rows, skip_conflicts=False)
    outgoing = desired.set_recordings(
        session,
        topics,
        [(item.id, _recording(rs, item.file_prefix)) for item in body.enclosures],
        now=now,
    )
    data = {
        "session_id": rs.id,
        "status": rs.status,
        "previous_status": None,
        "at": now,
        "enclosure_states": {first.value: len(rows)},
    }
    record_events(session, [("session.state", data, None, None)])
    log.info("session %s (%s) created on %d enclosures", rs.id, rs.name, len(rows))
    return rs, outgoing


# -- operations -----------------------------------------------------------------------------------


def _lock_session(session: Session, session_id: str) -> RecordingSession:
    get_session(session, session_id)
    query = (
        select(RecordingSession)
        .where(RecordingSession.id == session_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return session.scalars(query).one()


def _lock_enclosures_of(session: Session, session_id: str) -> list[SessionEnclosure]:
    query = (
        select(SessionEnclosure)
        .where(SessionEnclosure.session_id == session_id)
        .order_by(SessionEnclosure.enclosure_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return list(session.scalars(query))


def cancel_session(
    session: Session, topics: Topics, session_id: str, *, now: datetime | None = None
) -> tuple[RecordingSession, list[Outgoing]]:
    """Cancel every enclosure still active and the session (idempotent); ``Conflict`` when
    the session already finished otherwise."""
    now = now or utcnow()
    rs = _lock_session(session, session_id)
    status = SessionStatus(rs.status)
    if status is SessionStatus.CANCELED:
        return rs, []
    if status.is_terminal:
        raise Conflict(f"session {session_id!r} already finished ({rs.status})", field="id")
    rs.cancel_requested_at = now
    ses = _lock_enclosures_of(session, session_id)
    events: list[EventIntent] = []
    # What ``apply`` does for each enclosure's transition, written below as one UPDATE per
    # distinct set of values, in practice one for all: the enclosures stay locked (and the
    # bridge's writer waits) until the commit, and a session may have a thousand of them.
    changes: dict[tuple[tuple[str, Any], ...], list[int]] = {}
    for se in ses:
        transition = next_state(
            EncState(se.state), Signal.CANCEL, ended=now >= rs.end_at, reason="session canceled"
        )
        if transition is None:
            continue
        previous = se.state
        values = transition_values(se, transition, now)
        for name, value in values.items():
            set_committed_value(se, name, value)
        changes.setdefault(tuple(values.items()), []).append(se.id)
        events.append(("session.state", state_event(rs.id, se, previous), se.enclosure_id, None))
    for items, ids in changes.items():
        session.execute(
            update(SessionEnclosure)
            .where(SessionEnclosure.id.in_(ids))
            .values(dict(items))
            .execution_options(synchronize_session=False)
        )
    if changes:
        count = sum(len(ids) for ids in changes.values())
        log.info("session %s: %d enclosures canceled", rs.id, count)
    outgoing = settle(session, topics, rs, ses, now, events)
    record_events(session, events)
    return rs, outgoing


def cancel_enclosure(
    session: Session, topics: Topics, session_id: str, eid: str, *, now: datetime | None = None
) -> tuple[RecordingSession, list[Outgoing]]:
    """Cancel one enclosure of a session (idempotent); ``Conflict`` when it or the session
    already finished otherwise."""
    now = now or utcnow()
    rs = _lock_session(session, session_id)
    target = get_session_enclosure(session, session_id, eid)
    ses = _lock_enclosures_of(session, session_id)
    se = next(s for s in ses if s.id == target.id)
    if se.state == EncState.CANCELED.value:
        return rs, []
    if SessionStatus(rs.status).is_terminal:
        raise Conflict(f"session {session_id!r} already finished ({rs.status})", field="id")
    if EncState(se.state).is_terminal and se.state != EncState.TIMED_OUT.value:
        raise Conflict(f"enclosure {eid!r} already finished ({se.state})", field="eid")
    transition = next_state(
        EncState(se.state), Signal.CANCEL, ended=now >= rs.end_at, reason="canceled"
    )
    if transition is None:  # timed_out: it leaves the session
        transition = Transition(EncState.CANCELED, "canceled")
    events: list[EventIntent] = []
    apply(se, transition, now, events)
    outgoing = settle(session, topics, rs, ses, now, events)
    record_events(session, events)
    return rs, outgoing


def archive_session(
    session: Session, session_id: str, *, now: datetime | None = None
) -> RecordingSession:
    """Archive a finished session (idempotent); ``Conflict`` while it is active."""
    rs = _lock_session(session, session_id)
    if rs.archived_at is not None:
        return rs
    if not SessionStatus(rs.status).is_terminal:
        raise Conflict(
            f"session {session_id!r} is {rs.status}: cancel it or let it finish first",
            field="id",
        )
    rs.archived_at = now or utcnow()
    session.flush()
    return rs
