"""The bridge's side of recording sessions: it alone moves them forward.

- ``on_event`` (called by the ``Writer`` for each NEW agent event, inside the batch's
  transaction, so an event applies exactly once): recording started/resumed -> ``recording``;
  segment closed -> the evidence row and the counters; recording stopped -> ``completed`` (end
  reached) or ``failed`` (early); recording failed -> ``failed`` with the agent's reason;
  camera stalled/recovered and disk low -> alerts and gaps.
- ``SessionDriver`` (a thread, every ``TICK_S``): start times, progress and confirmation from
  the latest status, lost enclosures (alert, then ``timed_out`` after
  ``[SERVICE] session_lost_grace_s``), start and end time-outs
  (``[SERVICE] session_start_timeout_s``), the session's status (``sessions.settle``), clearing
  ``desired`` of enclosures that are done; then publishing ``desired`` documents the broker
  has not acknowledged, all active ones again after every (re)connection, ``enclosure_lost``
  alerts for enclosures expected online (``alerts.watch_expected_online``), the pending
  alerts (MQTT, mail), and each enclosure's derived state on ``service/fleet/{eid}``
  (``controlsvc.fleet``).

Everything it decides is in the database, so a restarted bridge carries on. Several bridges may
run: the timer locks rows with SKIP LOCKED and every step is idempotent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from controlsvc import alert_words, alerts, desired
from controlsvc.bridge.client import BridgeClient
from controlsvc.bridge.stats import BridgeStats, LogThrottle
from controlsvc.config import Settings
from controlsvc.db import Database, is_down, utcnow
from controlsvc.enclosure_state import bounded_at, clock_skew, status_cause
from controlsvc.enclosures import current_status, insert_ignore, insert_new
from controlsvc.fleet import FleetPublisher
from controlsvc.mail import MailOutbox, make_mailer
from controlsvc.models.enclosures import Enclosure
from controlsvc.models.sessions import (
    Alert,
    DesiredVersion,
    RecordingSession,
    SessionEnclosure,
    SessionGap,
    SessionSegment,
)
from controlsvc.session_progress import progress_of, totals_of
from controlsvc.session_state import (
    ACTIVE_ENCLOSURE_STATES,
    EncState,
    Signal,
    derive_session,
    next_state,
)
from controlsvc.sessions import (
    ACTIVE_SESSION_VALUES,
    DONE_STATES,
    OFFLINE_STATES,
    EventIntent,
    apply,
    record_events,
    settle,
)
from schemas.enums import EnclosureState, EventKind, SessionStatus
from schemas.events import (
    CameraRecovered,
    RecordingFailed,
    RecordingResumed,
    RecordingStopped,
    SegmentClosed,
    event_payload,
)
from schemas.events import Event as AgentEventMessage

log = logging.getLogger(__name__)

__all__ = ["END_TOLERANCE_S", "TICK_S", "SessionDriver", "on_event", "on_events"]

# The timer runs this often: start times and time-outs are decided within half a second.
TICK_S = 0.5
# Desired documents the broker has not acknowledged are looked for this often.
REPUBLISH_EVERY_S = 2.0
# The timer locks at most this many enclosures of a session per transaction (the writer may be
# waiting for one of them).
STEP_CHUNK = 100
# A running session's totals go to the event log this often.
PROGRESS_EVERY_S = 5.0
# A stop this close to the end counts as reaching it (agent and service clocks differ a bit).
END_TOLERANCE_S = 2.0
# After an error, the timer logs it at most once per this many seconds.
ERROR_LOG_PERIOD_S = 60.0

_SESSION_KINDS = frozenset(
    {
        EventKind.RECORDING_STARTED,
        EventKind.RECORDING_RESUMED,
        EventKind.SEGMENT_CLOSED,
        EventKind.RECORDING_STOPPED,
        EventKind.RECORDING_FAILED,
    }
)
_ENCLOSURE_KINDS = frozenset(
    {EventKind.CAMERA_STALLED, EventKind.CAMERA_RECOVERED, EventKind.DISK_LOW}
)
_ACTIVE = [s.value for s in ACTIVE_ENCLOSURE_STATES]
# Alerts an enclosure's frames flowing again closes.
_RECOVERED_BY_FRAMES = ("recording_timed_out", "recording_failed")
_FRAMES_AGAIN = (EventKind.RECORDING_STARTED, EventKind.RECORDING_RESUMED)
_RS_CACHE_KEY = "jaxmba.bridge.sessions.rs"


# -- events (the writer's transaction) -----------------------------------------------------------


def _session_enclosures(
    session: Session, pairs: set[tuple[str, str]]
) -> dict[tuple[str, str], SessionEnclosure]:
    """The ``(session id, enclosure id)`` rows, locked, in the order the API's cancel locks
    them (session, enclosure), so the two never deadlock."""
    if not pairs:
        return {}
    query = (
        select(SessionEnclosure)
        .where(
            SessionEnclosure.session_id.in_(sorted({sid for sid, _ in pairs})),
            SessionEnclosure.enclosure_id.in_(sorted({eid for _, eid in pairs})),
        )
        .order_by(SessionEnclosure.session_id, SessionEnclosure.enclosure_id)
        .with_for_update()
    )
    # A few rows beyond the pairs may match (another of these enclosures in the same
    # session): locked for this short transaction, not used.
    rows = {(se.session_id, se.enclosure_id): se for se in session.scalars(query)}
    return {key: se for key, se in rows.items() if key in pairs}


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


def _who(session: Session, eid: str) -> str:
    """The enclosure as alerts name it (its display name, and the id once)."""
    enc = session.get(Enclosure, eid)
    return alert_words.who(eid, enc.name if enc is not None else None)


def _named(session: Session, se: SessionEnclosure) -> tuple[str | None, str]:
    """(session name, session id) for an alert's sentence."""
    rs = _recording_session(session, se.session_id)
    return (rs.name if rs is not None else None), se.session_id


def _active_enclosure(session: Session, eid: str) -> SessionEnclosure | None:
    """The enclosure's part in the session it is recording now, if any."""
    return session.scalar(
        select(SessionEnclosure)
        .where(SessionEnclosure.enclosure_id == eid, SessionEnclosure.state.in_(_ACTIVE))
        .order_by(SessionEnclosure.id.desc())
        .limit(1)
        .with_for_update()
    )


def _add_gap(
    session: Session,
    se: SessionEnclosure,
    event_id: str,
    cause: str,
    started_at: datetime,
    ended_at: datetime,
    gap_s: float,
) -> None:
    inserted = insert_ignore(
        session,
        SessionGap.__table__,  # type: ignore[arg-type]
        [
            {
                "session_id": se.session_id,
                "enclosure_id": se.enclosure_id,
                "event_id": event_id,
                "cause": cause,
                "started_at": started_at,
                "ended_at": ended_at,
                "gap_s": gap_s,
            }
        ],
    )
    if inserted:
        se.gap_s += gap_s
        se.gaps += 1


def _progress(se: SessionEnclosure) -> dict[str, Any]:
    """The ``session.progress`` event of one enclosure: the figures the API shows."""
    return {
        "session_id": se.session_id,
        "enclosure_id": se.enclosure_id,
        "state": se.state,
        **progress_of(se).model_dump(),
        "gap_s": round(se.gap_s, 3),
    }


@dataclass
class _BatchFacts:
    """What ``on_events`` looked up for a whole batch at once (a fan-out or a cancel brings
    a thousand events; one statement each, with its autoflush, was most of their cost)."""

    new_segments: set[tuple[str, str, str]]  # (session, enclosure, path) inserted just now
    open_frame_alerts: dict[str, set[str]]  # enclosure -> open alerts that frames recover
    changed_alerts: set[str] = field(default_factory=set)  # enclosures: look again


def _segment_key(se: SessionEnclosure, seg: SegmentClosed) -> tuple[str, str, str]:
    return (se.session_id, se.enclosure_id, seg.path)


def _insert_segments(
    session: Session, closed: Sequence[tuple[SessionEnclosure, AgentEventMessage, datetime]]
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
                Alert.kind.in_(_RECOVERED_BY_FRAMES),
                Alert.recovered_at.is_(None),
            )
        )
        for eid, kind in rows:
            if eid is not None:
                found.setdefault(eid, set()).add(kind)
    return found


def _segment(se: SessionEnclosure, event: AgentEventMessage, facts: _BatchFacts) -> None:
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


def on_event(
    session: Session,
    eid: str,
    event: AgentEventMessage,
    received_at: datetime,
    events: list[EventIntent],
) -> None:
    """Apply one newly stored agent event to its session (the writer's transaction);
    event-log entries are added to ``events`` (recorded by the writer last)."""
    on_events(session, [(eid, event, received_at)], events)


def on_events(
    session: Session,
    items: Sequence[tuple[str, AgentEventMessage, datetime]],
    events: list[EventIntent],
) -> None:
    """``on_event`` for a batch of newly stored events ``(enclosure id, event, received
    at)``, applied in order, with ONE locking read of their sessions' enclosures (a fan-out
    brings 1,000 ``recording_started`` at once; one round trip each is most of their cost)."""
    pairs = {
        (event.session_id, eid)
        for eid, event, _ in items
        if event.kind in _SESSION_KINDS and event.session_id is not None
    }
    ses = _session_enclosures(session, pairs)
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
    )
    for eid, event, received_at in items:
        if event.kind in _ENCLOSURE_KINDS:
            _enclosure_event(session, eid, event, events)
        elif event.kind in _SESSION_KINDS and event.session_id is not None:
            se = ses.get((event.session_id, eid))
            if se is not None:  # else a recording outside any session (a direct command)
                _session_event(session, se, eid, event, received_at, events, facts)


def _session_event(
    session: Session,
    se: SessionEnclosure,
    eid: str,
    event: AgentEventMessage,
    received_at: datetime,
    events: list[EventIntent],
    facts: _BatchFacts,
) -> None:
    rs = _recording_session(session, se.session_id)
    if rs is None:  # pragma: no cover - the foreign key forbids it
        return
    now = utcnow()
    # The agent's time on the service's clock (its reported skew, never after arrival + 5 s):
    # a skewed agent's early stop must not pass for the end.
    enc = session.get(Enclosure, eid)
    skew = clock_skew(current_status(enc)) if enc is not None else None
    at = bounded_at(event.at, received_at, skew)
    ended = at >= rs.end_at - timedelta(seconds=END_TOLERANCE_S)
    state = EncState(se.state)
    kind = event.kind
    payload = event_payload(event)
    if kind is EventKind.SEGMENT_CLOSED:
        _segment(se, event, facts)
        apply(se, next_state(state, Signal.FRAMES, ended=ended), now, events)
        events.append(("session.progress", _progress(se), eid, None))
        return
    if kind in (EventKind.RECORDING_STARTED, EventKind.RECORDING_RESUMED):
        if isinstance(payload, RecordingResumed):
            _add_gap(
                session,
                se,
                event.event_id,
                "agent_restart",
                payload.gap_started_at,
                payload.gap_ended_at,
                payload.gap_s,
            )
        if apply(se, next_state(state, Signal.FRAMES, ended=ended), now, events):
            # Looked up for the whole batch, unless an earlier event of this batch may have
            # raised one (then ``recover`` looks itself).
            open_kinds: Collection[str] = (
                _RECOVERED_BY_FRAMES
                if eid in facts.changed_alerts
                else facts.open_frame_alerts.get(eid, set())
            )
            for kind_ in _RECOVERED_BY_FRAMES:
                if kind_ in open_kinds:
                    alerts.recover(session, kind_, eid, events, now=now)
        return
    if isinstance(payload, RecordingStopped):
        facts.changed_alerts.add(eid)  # may raise recording_failed below
        ended = ended or payload.reason == "end reached"
        se.stopped_at = at
        se.live_s = 0.0
        apply(
            se, next_state(state, Signal.STOPPED, ended=ended, reason=payload.reason), now, events
        )
        if se.state == EncState.FAILED.value:
            alerts.raise_alert(
                session,
                "recording_failed",
                eid,
                alert_words.stopped_early(
                    _who(session, eid), *_named(session, se), payload.reason or "?"
                ),
                events,
                session_id=se.session_id,
                now=now,
            )
        return
    if isinstance(payload, RecordingFailed):
        se.live_s = 0.0
        if apply(
            se, next_state(state, Signal.FAILED, ended=ended, reason=payload.reason), now, events
        ):
            alerts.raise_alert(
                session,
                "recording_failed",
                eid,
                alert_words.failed(_who(session, eid), *_named(session, se), payload.reason),
                events,
                session_id=se.session_id,
                now=now,
            )


def _enclosure_event(
    session: Session, eid: str, event: AgentEventMessage, events: list[EventIntent]
) -> None:
    se = _active_enclosure(session, eid)
    if se is None:
        return  # alerts are for enclosures in an active session
    now = utcnow()
    payload = event_payload(event)
    if event.kind is EventKind.CAMERA_STALLED:
        alerts.raise_alert(
            session,
            "camera_stalled",
            eid,
            alert_words.camera_stalled(_who(session, eid), *_named(session, se)),
            events,
            session_id=se.session_id,
            now=now,
        )
    elif isinstance(payload, CameraRecovered):
        alerts.recover(session, "camera_stalled", eid, events, now=now)
        if payload.stalled_s:
            start = event.at - timedelta(seconds=payload.stalled_s)
            _add_gap(
                session, se, event.event_id, "camera_stalled", start, event.at, payload.stalled_s
            )
    elif event.kind is EventKind.DISK_LOW:
        data = event.data
        alerts.raise_alert(
            session,
            "disk_low",
            eid,
            alert_words.disk_low(_who(session, eid), data.get("free_bytes"), *_named(session, se)),
            events,
            session_id=se.session_id,
            now=now,
        )


# -- the timer -----------------------------------------------------------------------------------


def _when(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _observed(
    se: SessionEnclosure, enc: Enclosure, rs: RecordingSession
) -> tuple[float | None, int, datetime | None, bool] | None:
    """What the enclosure's latest status says about its recording of ``rs``: the open
    segment's seconds (None: unknown), the open segment's frames, the newer last frame (None:
    not newer), whether frames flow; None when it is not recording ``rs`` (or is away)."""
    status = enc.status or {}
    recording = status.get("recording")
    live = EnclosureState(enc.state) not in OFFLINE_STATES
    if not (live and isinstance(recording, dict) and recording.get("session_id") == rs.id):
        return None
    camera = status.get("camera") or {}
    last_frame = _when(camera.get("last_frame_at"))
    segment_start = _when(recording.get("segment_started_at"))
    live_s = None
    if last_frame is not None and segment_start is not None:
        live_s = max(0.0, (last_frame - segment_start).total_seconds())
    if last_frame is not None and se.last_frame_at is not None and last_frame <= se.last_frame_at:
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


class SessionDriver:
    """The sessions' timer thread of one bridge; ``run_once`` is callable directly (tests)."""

    def __init__(
        self,
        settings: Settings,
        database: Database,
        client: BridgeClient,
        stats: BridgeStats,
        *,
        tick_s: float = TICK_S,
        send_mail: Callable[[Any], None] | None = None,
    ) -> None:
        self._db = database
        self._client = client
        self.stats = stats
        self.topics = client.topics
        self.tick_s = tick_s
        self.start_timeout = timedelta(seconds=settings.service.session_start_timeout_s)
        self.lost_grace = timedelta(seconds=settings.service.session_lost_grace_s)
        self._outbox = MailOutbox(make_mailer(settings.mail)) if send_mail is None else None
        self._send_mail = send_mail or (self._outbox.put if self._outbox else None)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._throttle = LogThrottle(ERROR_LOG_PERIOD_S)
        self._generation = -1  # the connection whose active documents were re-published
        self._next_republish = 0.0
        self.fleet = FleetPublisher(database, client, self.topics)

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name="jaxmba-bridge-sessions", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def flush_mail(self, timeout: float = 10.0) -> bool:
        return self._outbox.flush(timeout) if self._outbox is not None else True

    def _run(self) -> None:
        while not self._stop.wait(self.tick_s):
            self.run_once()

    def run_once(self, now: datetime | None = None) -> None:
        for name, task in (
            ("desired", self.publish_desired),
            ("sessions", lambda: self.advance(now)),
            ("expected online", lambda: self.watch_expected_online(now)),
            ("alerts", lambda: self.deliver_alerts(now)),
            ("fleet", lambda: self.fleet.run_once(now)),
        ):
            try:
                task()
            except Exception as exc:
                if self._throttle.allow(name) is not None:
                    # The database going away is an outage the next tick retries, not a bug.
                    log.warning(
                        "bridge session %s failed: %s: %s",
                        name,
                        type(exc).__name__,
                        exc,
                        exc_info=None if is_down(exc) else exc,
                    )

    # -- desired ----------------------------------------------------------------------------------
    def _publish(self, messages: Sequence[desired.Outgoing]) -> int:
        if not messages:
            return 0
        published = desired.publish_all(self._client, messages)
        if published:
            with self._db.sessionmaker() as session:
                desired.mark_published(session, published)
                session.commit()
        return len(published)

    def publish_desired(self) -> None:
        """After each (re)connection every active document again (a broker that lost its
        retained messages converges); every ``REPUBLISH_EVERY_S`` the unacknowledged ones."""
        if not self._client.connected:
            return
        generation = self._client.generation
        clock = time.monotonic()
        if generation != self._generation:
            with self._db.sessionmaker() as session:
                messages = desired.active_documents(session, self.topics)
            n = self._publish(messages)
            if n == len(messages):
                self._generation = generation
            if messages:
                log.info("re-published %d active desired documents after connecting", n)
        elif clock >= self._next_republish:
            self._next_republish = clock + REPUBLISH_EVERY_S
            with self._db.sessionmaker() as session:
                messages = desired.unpublished(session, self.topics)
            n = self._publish(messages)
            if n:
                log.info("published %d desired documents the broker did not have", n)

    # -- sessions ---------------------------------------------------------------------------------
    def advance(self, now: datetime | None = None) -> int:
        """One round over the active sessions; how many were looked at.

        The writer applies agent events under the same rows' locks and must wait for them (an
        event applies exactly once), so the timer never holds many rows for long: it reads
        without locks to find the enclosures that have something to do, steps those in small
        transactions (``STEP_CHUNK`` rows, ``SKIP LOCKED``), and locks every enclosure of a
        session only when its status changes or ``desired`` documents must be cleared."""
        now = now or utcnow()
        with self._db.sessionmaker() as session:
            ids = list(
                session.scalars(
                    select(RecordingSession.id)
                    .where(RecordingSession.status.in_(ACTIVE_SESSION_VALUES))
                    .order_by(RecordingSession.id)
                )
            )
        newest: int | None = None
        for sid in ids:
            for last in self._advance(sid, now):
                newest = max(newest or 0, last)
        if newest is not None:
            self._client.notify_events(newest)
        return len(ids)

    def _advance(self, sid: str, now: datetime) -> list[int]:
        """Step the enclosures of session ``sid`` that need it, then settle; the newest
        event-log ids recorded."""
        with self._db.sessionmaker() as session:
            rs = session.get(RecordingSession, sid)
            if rs is None or rs.status not in ACTIVE_SESSION_VALUES:
                return []
            ses = list(
                session.scalars(select(SessionEnclosure).where(SessionEnclosure.session_id == sid))
            )
            encs = self._enclosures(session, ses)
            due = sorted(
                se.id
                for se in ses
                if se.enclosure_id in encs and self._due(rs, se, encs[se.enclosure_id], now)
            )
        newest = []
        for i in range(0, len(due), STEP_CHUNK):
            last = self._step_chunk(sid, due[i : i + STEP_CHUNK], now)
            if last is not None:
                newest.append(last)
        last = self._settle(sid, now)
        if last is not None:
            newest.append(last)
        return newest

    @staticmethod
    def _enclosures(session: Session, ses: Sequence[SessionEnclosure]) -> dict[str, Enclosure]:
        ids = [se.enclosure_id for se in ses]
        return {
            enc.id: enc for enc in session.scalars(select(Enclosure).where(Enclosure.id.in_(ids)))
        }

    def _due(
        self, rs: RecordingSession, se: SessionEnclosure, enc: Enclosure, now: datetime
    ) -> bool:
        """Whether ``_step`` may change ``se`` (when in doubt, yes): read without locks."""
        state = EncState(se.state)
        if state is EncState.PENDING and now >= rs.start_at:
            return True
        if EnclosureState(enc.state) in OFFLINE_STATES or se.lost_since is not None:
            return True  # lost: alerts and the grace (rare; not worth predicting)
        if state is EncState.STARTING and (
            se.starting_at is None or now - se.starting_at > self.start_timeout
        ):
            return True
        if state in ACTIVE_ENCLOSURE_STATES and now > rs.end_at + self.start_timeout:
            return True
        seen = _observed(se, enc, rs)
        if seen is None:
            return se.live_s != 0.0
        live_s, live_frames, last_frame_at, flowing = seen
        if flowing and next_state(state, Signal.FRAMES, ended=now >= rs.end_at) is not None:
            return True
        return (
            (live_s is not None and live_s != se.live_s)
            or live_frames != se.live_frames
            or (last_frame_at is not None and last_frame_at != se.last_frame_at)
        )

    def _step_chunk(self, sid: str, ids: Sequence[int], now: datetime) -> int | None:
        events: list[EventIntent] = []
        with self._db.sessionmaker() as session:
            rs = session.get(RecordingSession, sid)  # read only: _step does not change it
            if rs is None:  # pragma: no cover - sessions are never deleted
                return None
            ses = list(
                session.scalars(
                    select(SessionEnclosure)
                    .where(SessionEnclosure.id.in_(ids))
                    .order_by(SessionEnclosure.enclosure_id)
                    .with_for_update(skip_locked=True)
                    .execution_options(populate_existing=True)
                )
            )
            encs = self._enclosures(session, ses)
            for se in ses:
                enc = encs.get(se.enclosure_id)
                if enc is not None:
                    self._step(session, rs, se, enc, now, events)
            newest = record_events(session, events)
            session.commit()
        return newest

    def _settle(self, sid: str, now: datetime) -> int | None:
        """The session's status and the ``desired`` clearing (``sessions.settle``) with every
        enclosure locked, when a look without locks says there is something to settle; the
        progress totals every ``PROGRESS_EVERY_S``."""
        events: list[EventIntent] = []
        outgoing: list[desired.Outgoing] = []
        with self._db.sessionmaker() as session:
            rs = session.get(RecordingSession, sid)
            if rs is None or rs.status not in ACTIVE_SESSION_VALUES:
                return None
            if not (self._unsettled(session, rs, now) or self._progress_due(rs, now)):
                return None
            rs = session.scalars(
                select(RecordingSession)
                .where(RecordingSession.id == sid)
                .with_for_update(skip_locked=True)
                .execution_options(populate_existing=True)
            ).one_or_none()
            if rs is None or rs.status not in ACTIVE_SESSION_VALUES:
                return None  # another bridge has it, or it finished meanwhile
            if self._unsettled(session, rs, now):
                total = session.scalar(
                    select(func.count())
                    .select_from(SessionEnclosure)
                    .where(SessionEnclosure.session_id == sid)
                )
                ses = list(
                    session.scalars(
                        select(SessionEnclosure)
                        .where(SessionEnclosure.session_id == sid)
                        .order_by(SessionEnclosure.enclosure_id)
                        .with_for_update(skip_locked=True)
                        .execution_options(populate_existing=True)
                    )
                )
                if len(ses) == (total or 0):  # else the writer holds some: next round
                    outgoing = settle(session, self.topics, rs, ses, now, events)
            if rs.status in ACTIVE_SESSION_VALUES and self._progress_due(rs, now):
                rs.progress_at = now
                ses = list(
                    session.scalars(
                        select(SessionEnclosure).where(SessionEnclosure.session_id == sid)
                    )
                )
                events.append(("session.progress", self._totals(rs, ses), None, None))
            newest = record_events(session, events)
            session.commit()
        self._publish(outgoing)
        return newest

    @staticmethod
    def _progress_due(rs: RecordingSession, now: datetime) -> bool:
        return now >= rs.start_at and (
            rs.progress_at is None or now - rs.progress_at >= timedelta(seconds=PROGRESS_EVERY_S)
        )

    @staticmethod
    def _unsettled(session: Session, rs: RecordingSession, now: datetime) -> bool:
        """Whether ``settle`` would change something, from the states as they are now."""
        states = [
            EncState(s)
            for s in session.scalars(
                select(SessionEnclosure.state).where(SessionEnclosure.session_id == rs.id)
            )
        ]
        status = derive_session(
            SessionStatus(rs.status),
            states,
            started=now >= rs.start_at,
            ended=now >= rs.end_at,
            canceled=rs.cancel_requested_at is not None,
        )
        if status.value != rs.status:
            return True
        if not any(s in DONE_STATES for s in states):
            return False
        # Done enclosures whose desired still names the session: settle clears it.
        named = session.scalar(
            select(func.count())
            .select_from(DesiredVersion)
            .join(
                SessionEnclosure,
                (SessionEnclosure.enclosure_id == DesiredVersion.enclosure_id)
                & (SessionEnclosure.session_id == rs.id),
            )
            .where(
                DesiredVersion.session_id == rs.id,
                SessionEnclosure.state.in_([s.value for s in DONE_STATES]),
            )
        )
        return bool(named)

    @staticmethod
    def _totals(rs: RecordingSession, ses: Sequence[SessionEnclosure]) -> dict[str, Any]:
        totals = totals_of((progress_of(se) for se in ses), sum(se.gap_s for se in ses))
        return {
            "session_id": rs.id,
            "status": rs.status,
            **totals.model_dump(),
            "enclosures": len(ses),
            "recording": sum(1 for se in ses if se.state == EncState.RECORDING.value),
        }

    def _step(
        self,
        session: Session,
        rs: RecordingSession,
        se: SessionEnclosure,
        enc: Enclosure,
        now: datetime,
        events: list[EventIntent],
    ) -> None:
        ended = now >= rs.end_at
        eid = se.enclosure_id

        def signal(sig: Signal, reason: str | None = None) -> bool:
            return apply(
                se, next_state(EncState(se.state), sig, ended=ended, reason=reason), now, events
            )

        if now >= rs.start_at:
            signal(Signal.START_TIME)
        self._status(se, enc, rs, signal)
        state = EncState(se.state)
        if state.is_terminal and not (state is EncState.TIMED_OUT and not ended):
            return
        away = EnclosureState(enc.state) in OFFLINE_STATES
        if away:
            if se.lost_since is None:
                se.lost_since = enc.state_changed_at or now
            lost_alert = alerts.open_alert(session, eid, "enclosure_lost")
            if state in ACTIVE_ENCLOSURE_STATES and now >= rs.start_at and lost_alert is None:
                alerts.raise_alert(
                    session,
                    "enclosure_lost",
                    eid,
                    f"{alerts.away_sentence(enc)} during session “{rs.name}”",
                    events,
                    session_id=rs.id,
                    now=now,
                )
            if now - se.lost_since > self.lost_grace:
                grace = self.lost_grace.total_seconds()
                if signal(Signal.LOST_TIMEOUT, f"{enc.state} for more than {grace:g} s"):
                    self._timed_out_alert(session, se, events, now)
        elif se.lost_since is not None:
            se.lost_since = None
            alerts.recover(session, "enclosure_lost", eid, events, now=now)
        state = EncState(se.state)
        if state is EncState.STARTING and se.starting_at is not None:
            waited = now - se.starting_at
            cause = status_cause(current_status(enc))
            if waited > self.start_timeout and signal(
                Signal.START_TIMEOUT,
                f"not recording {self.start_timeout.total_seconds():g} s after the start"
                + (f" ({cause})" if cause else ""),
            ):
                self._timed_out_alert(session, se, events, now)
        if state in ACTIVE_ENCLOSURE_STATES and now > rs.end_at + self.start_timeout:
            reason = f"no final report {self.start_timeout.total_seconds():g} s after the end"
            if signal(Signal.END_TIMEOUT, reason):
                self._timed_out_alert(session, se, events, now)

    @staticmethod
    def _timed_out_alert(
        session: Session, se: SessionEnclosure, events: list[EventIntent], now: datetime
    ) -> None:
        alerts.raise_alert(
            session,
            "recording_timed_out",
            se.enclosure_id,
            alert_words.timed_out(_who(session, se.enclosure_id), *_named(session, se), se.message),
            events,
            session_id=se.session_id,
            now=now,
        )

    @staticmethod
    def _status(
        se: SessionEnclosure,
        enc: Enclosure,
        rs: RecordingSession,
        signal: Callable[[Signal], bool],
    ) -> None:
        """Progress and confirmation from the enclosure's latest status. While the enclosure
        is away its open file's figures stay as last reported (the file is on its disk; the
        page says the enclosure is lost), rather than dropping to the closed segments'."""
        if EnclosureState(enc.state) in OFFLINE_STATES:
            return
        seen = _observed(se, enc, rs)
        if seen is None:
            se.live_s = 0.0
            return
        live_s, live_frames, last_frame_at, flowing = seen
        if last_frame_at is not None:
            se.last_frame_at = last_frame_at
        if live_s is not None:
            se.live_s = live_s
        se.live_frames = live_frames
        if flowing:
            signal(Signal.FRAMES)

    # -- alerts -----------------------------------------------------------------------------------
    def watch_expected_online(self, now: datetime | None = None) -> int:
        """``enclosure_lost`` alerts for enclosures expected online (after the sessions, so an
        enclosure lost in a session gets that session's alert)."""
        events: list[EventIntent] = []
        with self._db.sessionmaker() as session:
            n = alerts.watch_expected_online(session, events, now=now)
            newest = record_events(session, events)
            session.commit()
        if newest is not None:
            self._client.notify_events(newest)
        return n

    def deliver_alerts(self, now: datetime | None = None) -> int:
        if not self._client.connected or self._send_mail is None:
            return 0
        mails: list[Any] = []
        with self._db.sessionmaker() as session:
            n = alerts.deliver_pending(session, self._client, self.topics, mails.append, now=now)
            session.commit()
        for mail in mails:  # after the commit: never a mail for an alert that was rolled back
            self._send_mail(mail)
        return n
