"""Recording sessions moved by the agents' events, inside the bridge's batch transaction.

``on_events`` is called by the ``Writer`` with the NEW agent events of a batch, inside the
batch's transaction, so an event applies exactly once. What an event does is decided by the
domain (``controlsvc.domain.session_reactions.react``); this module reads the facts it needs
(locking the rows in a fixed order, a batch's lookups at once) and carries the reaction out. The
timer's side is ``controlsvc.bridge.session_driver``.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from controlsvc.domain import alert_words
from controlsvc.domain.enclosure_state import bounded_at
from controlsvc.domain.session_reactions import (
    ENCLOSURE_KINDS,
    RECOVERED_BY_FRAMES,
    SESSION_KINDS,
    AlertChange,
    Gap,
    Reaction,
    react,
)
from controlsvc.domain.session_state import EncState, next_state
from controlsvc.store import alerts, session_enclosure_rows
from controlsvc.store.bulk_rows import insert_rows
from controlsvc.store.db import utcnow
from controlsvc.store.enclosures import insert_new
from controlsvc.store.models.enclosures import Enclosure
from controlsvc.store.models.sessions import (
    Alert,
    RecordingSession,
    SessionEnclosure,
    SessionEnclosureRow,
    SessionGap,
    SessionSegment,
)
from controlsvc.store.session_progress import progress_fields
from controlsvc.store.sessions import (
    EventIntent,
    apply,
)
from schemas.enums import EventKind
from schemas.events import Event as AgentEventMessage
from schemas.events import SegmentClosed, event_payload

log = logging.getLogger(__name__)

__all__ = ["on_events"]


_FRAMES_AGAIN = (EventKind.RECORDING_STARTED, EventKind.RECORDING_RESUMED)
_RS_CACHE_KEY = "jaxmba.bridge.sessions.rs"


# -- events (the writer's transaction) -----------------------------------------------------------


def _recording_session(session: Session, session_id: str) -> RecordingSession | None:
    """The session, loaded once per transaction: the identity map holds objects weakly, so
    ``session.get`` would read the row again for each of a fan-out's 1,000 events."""
    transaction = session.get_transaction()
    cached = session.info.get(_RS_CACHE_KEY)
    if cached is None or cached[0] is not transaction:
        cached = session.info[_RS_CACHE_KEY] = (transaction, {})
    known: dict[str, RecordingSession | None] = cached[1]
    if session_id not in known:
        known[session_id] = session.get(RecordingSession, session_id)
    return known[session_id]


def alert_subject(session: Session, eid: str) -> str:
    """The enclosure as alerts name it (its display name, and the id once)."""
    enc = session.get(Enclosure, eid)
    return alert_words.who(eid, enc.name if enc is not None else None)


def session_named(
    session: Session, se: SessionEnclosure | SessionEnclosureRow
) -> tuple[str | None, str]:
    """(session name, session id) for an alert's sentence."""
    rs = _recording_session(session, se.session_id)
    return (rs.name if rs is not None else None), se.session_id


def _add_gap(session: Session, se: SessionEnclosureRow, event_id: str, gap: Gap) -> None:
    inserted = insert_rows(
        session.connection(),
        SessionGap.__table__,  # type: ignore[arg-type]
        [
            {
                "session_id": se.session_id,
                "enclosure_id": se.enclosure_id,
                "event_id": event_id,
                "cause": gap.cause,
                "started_at": gap.started_at,
                "ended_at": gap.ended_at,
                "gap_s": gap.seconds,
            }
        ],
    )
    if inserted:
        se.gap_s += gap.seconds
        se.gaps += 1


def _progress(se: SessionEnclosureRow) -> dict[str, Any]:
    """The ``session.progress`` event of one enclosure: the figures the API shows."""
    return {
        "session_id": se.session_id,
        "enclosure_id": se.enclosure_id,
        "state": se.state,
        **progress_fields(se),
        "gap_s": round(se.gap_s, 3),
    }


@dataclass
class _BatchFacts:
    """What ``on_events`` looked up for a whole batch at once (a fan-out or a cancel brings
    a thousand events; one statement each, with its autoflush, was most of their cost)."""

    new_segments: set[tuple[str, str, str]]  # (session, enclosure, path) inserted just now
    open_frame_alerts: dict[str, set[str]]  # enclosure -> open alerts that frames recover
    # enclosure -> its agent's clock offset (s), from the caller's copy of its latest status
    skews: Mapping[str, float | None]
    changed_alerts: set[str] = field(default_factory=set)  # enclosures: look again


def _segment_key(se: SessionEnclosureRow, seg: SegmentClosed) -> tuple[str, str, str]:
    return (se.session_id, se.enclosure_id, seg.path)


def _insert_segments(
    session: Session, closed: Sequence[tuple[SessionEnclosureRow, AgentEventMessage, datetime]]
) -> set[tuple[str, str, str]]:
    """Store the evidence of these ``segment_closed`` events in one statement; the keys of
    the segments not known before (a segment is stored once per path)."""
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    for se, event, received_at in closed:
        seg = event_payload(event)
        assert isinstance(seg, SegmentClosed)
        rows.setdefault(
            _segment_key(se, seg),
            {
                "session_id": se.session_id,
                "enclosure_id": se.enclosure_id,
                "event_id": event.event_id,
                "path": seg.path,
                "started_at": seg.started_at,
                "ended_at": seg.ended_at,
                "frames": seg.frames,
                "bytes": seg.bytes,
                "sha256": seg.sha256,
                "sidecar_path": seg.sidecar_path,
                "received_at": received_at,
            },
        )
    return insert_new(
        session,
        SessionSegment.__table__,  # type: ignore[arg-type]
        list(rows.values()),
        key=("session_id", "enclosure_id", "path"),
    )


def _open_frame_alerts(session: Session, eids: set[str]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    if eids:
        rows = session.execute(
            select(Alert.enclosure_id, Alert.kind).where(
                Alert.enclosure_id.in_(sorted(eids)),
                Alert.kind.in_(RECOVERED_BY_FRAMES),
                Alert.recovered_at.is_(None),
            )
        )
        for eid, kind in rows:
            if eid is not None:
                found.setdefault(eid, set()).add(kind)
    return found


def _segment(se: SessionEnclosureRow, event: AgentEventMessage, facts: _BatchFacts) -> None:
    seg = event_payload(event)
    assert isinstance(seg, SegmentClosed)
    key = _segment_key(se, seg)
    if key not in facts.new_segments:
        return
    facts.new_segments.discard(key)  # a second copy in the same batch is a duplicate
    se.segments += 1
    se.frames += seg.frames
    se.bytes += seg.bytes
    se.segments_s += max(0.0, (seg.ended_at - seg.started_at).total_seconds())
    se.live_s = 0.0  # the next status reports the new open segment
    if se.last_frame_at is None or seg.ended_at > se.last_frame_at:
        se.last_frame_at = seg.ended_at


def on_events(
    session: Session,
    items: Sequence[tuple[str, AgentEventMessage, datetime]],
    events: list[EventIntent],
    *,
    skews: Mapping[str, float | None],
) -> None:
    """Apply newly stored agent events ``(enclosure id, event, received at)`` to their
    sessions, in order, with ONE locking read of their sessions' enclosures (a fan-out brings
    1,000 ``recording_started`` at once; one round trip each is most of their cost) into
    working copies (``store.session_enclosure_rows``), written back in one statement.
    Event-log entries are added to ``events`` (recorded by the writer last).

    ``skews``: each of these enclosures' clock offset, from the writer's working copies of
    their rows (``controlsvc.store.enclosure_rows``), which hold this batch's statuses."""
    pairs = {
        (event.session_id, eid)
        for eid, event, _ in items
        if event.kind in SESSION_KINDS and event.session_id is not None
    }
    copies = _Copies(session, session_enclosure_rows.lock_pairs(session, pairs))
    ses = copies.by_pair
    mine = [
        (se, eid, event, received_at)
        for eid, event, received_at in items
        if event.session_id is not None and (se := ses.get((event.session_id, eid))) is not None
    ]
    facts = _BatchFacts(
        new_segments=_insert_segments(
            session,
            [(se, e, at) for se, _, e, at in mine if e.kind is EventKind.SEGMENT_CLOSED],
        ),
        open_frame_alerts=_open_frame_alerts(
            session, {eid for _, eid, e, _ in mine if e.kind in _FRAMES_AGAIN}
        ),
        skews=skews,
    )
    for eid, event, received_at in items:
        if event.kind in ENCLOSURE_KINDS:
            _enclosure_event(session, copies, eid, event, events)
        elif event.kind in SESSION_KINDS and event.session_id is not None:
            se = ses.get((event.session_id, eid))
            if se is not None:  # else a recording outside any session (a direct command)
                _session_event(session, se, eid, event, received_at, events, facts)
    copies.write_back()


class _Copies:
    """The working copies of one ``on_events`` call, one per row, written back at its end."""

    def __init__(
        self, session: Session, by_pair: dict[tuple[str, str], SessionEnclosureRow]
    ) -> None:
        self._session = session
        self.by_pair = by_pair

    def active(self, eid: str) -> SessionEnclosureRow | None:
        """The enclosure's part in the session it records now, as this batch left it: the
        copies are written first (rare: an enclosure's own event, such as a camera fault)."""
        self.write_back()
        found = session_enclosure_rows.lock_active(self._session, eid)
        if found is None:
            return None
        return self.by_pair.setdefault((found.session_id, found.enclosure_id), found)

    def write_back(self) -> None:
        session_enclosure_rows.write_back(self._session, self.by_pair.values())


def _session_event(
    session: Session,
    se: SessionEnclosureRow,
    eid: str,
    event: AgentEventMessage,
    received_at: datetime,
    events: list[EventIntent],
    facts: _BatchFacts,
) -> None:
    rs = _recording_session(session, se.session_id)
    if rs is None:  # pragma: no cover - the foreign key forbids it
        return
    # The agent's time on the service's clock (its reported skew, never after arrival + 5 s):
    # a skewed agent's early stop must not pass for the end.
    at = bounded_at(event.at, received_at, facts.skews[eid])
    reaction = react(event.kind, event_payload(event), event.data, at=at, end_at=rs.end_at)
    if reaction is not None:
        _carry_out(session, se, eid, event, reaction, events, facts)


def _enclosure_event(
    session: Session,
    copies: _Copies,
    eid: str,
    event: AgentEventMessage,
    events: list[EventIntent],
) -> None:
    se = copies.active(eid)
    if se is None:
        return  # alerts are for enclosures in an active session
    reaction = react(event.kind, event_payload(event), event.data, at=event.at)
    if reaction is not None:
        _carry_out(session, se, eid, event, reaction, events, None)


def _carry_out(
    session: Session,
    se: SessionEnclosureRow,
    eid: str,
    event: AgentEventMessage,
    reaction: Reaction,
    events: list[EventIntent],
    facts: _BatchFacts | None,
) -> None:
    """Do what ``react`` decided, in its order, in the batch's transaction."""
    now = utcnow()
    if reaction.gap is not None:
        _add_gap(session, se, event.event_id, reaction.gap)
    if reaction.segment and facts is not None:
        _segment(se, event, facts)
    if reaction.stopped_at is not None:
        se.stopped_at = reaction.stopped_at
    if reaction.clear_live:
        se.live_s = 0.0
    changed = False
    if reaction.signal is not None:
        if reaction.on_change is not None and reaction.on_change.raise_kind and facts is not None:
            facts.changed_alerts.add(eid)  # may raise one: later events look again
        move = next_state(
            EncState(se.state), reaction.signal, ended=reaction.ended, reason=reaction.reason
        )
        changed = apply(se, move, now, events)
    if reaction.progress:
        events.append(("session.progress", _progress(se), eid, None))
    change = reaction.on_change if changed else None
    if change is not None and (change.only_if is None or se.state == change.only_if.value):
        _change_alerts(session, se, eid, change, events, facts, now)
    if reaction.at_once is not None:
        _change_alerts(session, se, eid, reaction.at_once, events, None, now)


def _change_alerts(
    session: Session,
    se: SessionEnclosureRow,
    eid: str,
    change: AlertChange,
    events: list[EventIntent],
    facts: _BatchFacts | None,
    now: datetime,
) -> None:
    if change.raise_kind is not None and change.words is not None:
        words = change.words(alert_subject(session, eid), *session_named(session, se))
        alerts.raise_alert(
            session, change.raise_kind, eid, words, events, session_id=se.session_id, now=now
        )
    if not change.recover:
        return
    # The frame alerts were looked up for the whole batch, unless an earlier event of this
    # batch may have raised one (then ``recover`` looks itself).
    open_kinds: Collection[str] = change.recover
    batch_knows = facts is not None and eid not in facts.changed_alerts
    if facts is not None and batch_knows and change.recover == RECOVERED_BY_FRAMES:
        open_kinds = facts.open_frame_alerts.get(eid, set())
    for kind in change.recover:
        if kind in open_kinds:
            alerts.recover(session, kind, eid, events, now=now)
