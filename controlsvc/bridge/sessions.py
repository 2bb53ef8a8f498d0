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
  has not acknowledged, all active ones again after every (re)connection, and the pending
  alerts (MQTT, mail).

Everything it decides is in the database, so a restarted bridge carries on. Several bridges may
run: the timer locks rows with SKIP LOCKED and every step is idempotent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from controlsvc import alerts, desired
from controlsvc.bridge.client import BridgeClient
from controlsvc.bridge.stats import BridgeStats, LogThrottle
from controlsvc.config import Settings
from controlsvc.db import Database, utcnow
from controlsvc.enclosures import insert_ignore
from controlsvc.mail import MailOutbox, make_mailer
from controlsvc.models.enclosures import Enclosure
from controlsvc.models.sessions import (
    RecordingSession,
    SessionEnclosure,
    SessionGap,
    SessionSegment,
)
from controlsvc.session_state import (
    ACTIVE_ENCLOSURE_STATES,
    ACTIVE_SESSION_STATUSES,
    EncState,
    Signal,
    next_state,
)
from controlsvc.sessions import OFFLINE_STATES, EventIntent, apply, record_events, settle
from schemas.enums import EnclosureState, EventKind
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

__all__ = ["END_TOLERANCE_S", "TICK_S", "SessionDriver", "on_event"]

# The timer runs this often: start times and time-outs are decided within half a second.
TICK_S = 0.5
# Desired documents the broker has not acknowledged are looked for this often.
REPUBLISH_EVERY_S = 2.0
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


# -- events (the writer's transaction) -----------------------------------------------------------


def _session_enclosure(session: Session, session_id: str, eid: str) -> SessionEnclosure | None:
    return session.scalar(
        select(SessionEnclosure)
        .where(SessionEnclosure.session_id == session_id, SessionEnclosure.enclosure_id == eid)
        .with_for_update()
    )


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
    return {
        "session_id": se.session_id,
        "enclosure_id": se.enclosure_id,
        "state": se.state,
        "recorded_s": round(se.recorded_s, 3),
        "frames": se.frames,
        "bytes": se.bytes,
        "segments": se.segments,
        "last_frame_at": se.last_frame_at,
        "gap_s": round(se.gap_s, 3),
    }


def _segment(
    session: Session, se: SessionEnclosure, event: AgentEventMessage, received_at: datetime
) -> None:
    seg = event_payload(event)
    assert isinstance(seg, SegmentClosed)
    inserted = insert_ignore(
        session,
        SessionSegment.__table__,  # type: ignore[arg-type]
        [
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
            }
        ],
    )
    if not inserted:
        return
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
    if event.kind in _ENCLOSURE_KINDS:
        _enclosure_event(session, eid, event, events)
        return
    if event.kind not in _SESSION_KINDS or event.session_id is None:
        return
    se = _session_enclosure(session, event.session_id, eid)
    if se is None:
        return  # a recording outside any session (a direct command)
    rs = session.get(RecordingSession, se.session_id)
    if rs is None:  # pragma: no cover - the foreign key forbids it
        return
    now = utcnow()
    ended = event.at >= rs.end_at - timedelta(seconds=END_TOLERANCE_S)
    state = EncState(se.state)
    kind = event.kind
    payload = event_payload(event)
    if kind is EventKind.SEGMENT_CLOSED:
        _segment(session, se, event, received_at)
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
            for kind_ in ("recording_timed_out", "recording_failed"):
                alerts.recover(session, kind_, eid, events, now=now)
        return
    if isinstance(payload, RecordingStopped):
        ended = ended or payload.reason == "end reached"
        se.stopped_at = event.at
        se.live_s = 0.0
        apply(
            se, next_state(state, Signal.STOPPED, ended=ended, reason=payload.reason), now, events
        )
        if se.state == EncState.FAILED.value:
            alerts.raise_alert(
                session,
                "recording_failed",
                eid,
                f"{eid} stopped recording session {se.session_id} early: {payload.reason}",
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
                f"{eid} failed to record session {se.session_id}: {payload.reason}",
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
            f"the camera of {eid} stopped delivering frames (session {se.session_id})",
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
            f"the recording disk of {eid} is below its reserve: {data.get('free_bytes')} bytes "
            f"free (session {se.session_id})",
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
            ("alerts", lambda: self.deliver_alerts(now)),
        ):
            try:
                task()
            except Exception as exc:
                if self._throttle.allow(name) is not None:
                    log.warning(
                        "bridge session %s failed: %s: %s",
                        name,
                        type(exc).__name__,
                        exc,
                        exc_info=exc,
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
        """One round over the active sessions; how many were looked at."""
        now = now or utcnow()
        events: list[EventIntent] = []
        with self._db.sessionmaker() as session:
            rows = list(
                session.scalars(
                    select(RecordingSession)
                    .where(RecordingSession.status.in_([s.value for s in ACTIVE_SESSION_STATUSES]))
                    .order_by(RecordingSession.id)
                    .with_for_update(skip_locked=True)
                )
            )
            outgoing: list[desired.Outgoing] = []
            for rs in rows:
                outgoing += self._advance(session, rs, now, events)
            newest = record_events(session, events)
            session.commit()
        self._publish(outgoing)
        if newest is not None:
            self._client.notify_events(newest)
        return len(rows)

    def _advance(
        self, session: Session, rs: RecordingSession, now: datetime, events: list[EventIntent]
    ) -> list[desired.Outgoing]:
        total = session.scalar(
            select(func.count())
            .select_from(SessionEnclosure)
            .where(SessionEnclosure.session_id == rs.id)
        )
        ses = list(
            session.scalars(
                select(SessionEnclosure)
                .where(SessionEnclosure.session_id == rs.id)
                .order_by(SessionEnclosure.enclosure_id)
                .with_for_update(skip_locked=True)
            )
        )
        encs = {
            enc.id: enc
            for enc in session.scalars(
                select(Enclosure).where(Enclosure.id.in_([se.enclosure_id for se in ses]))
            )
        }
        for se in ses:
            enc = encs.get(se.enclosure_id)
            if enc is not None:
                self._step(session, rs, se, enc, now, events)
        if len(ses) < (total or 0):
            return []  # the writer holds some: settle next round, with all of them
        outgoing = settle(session, self.topics, rs, ses, now, events)
        if (
            rs.status in (s.value for s in ACTIVE_SESSION_STATUSES)
            and now >= rs.start_at
            and (
                rs.progress_at is None
                or now - rs.progress_at >= timedelta(seconds=PROGRESS_EVERY_S)
            )
        ):
            rs.progress_at = now
            events.append(("session.progress", self._totals(rs, ses), None, None))
        return outgoing

    @staticmethod
    def _totals(rs: RecordingSession, ses: Sequence[SessionEnclosure]) -> dict[str, Any]:
        return {
            "session_id": rs.id,
            "status": rs.status,
            "recorded_s": round(sum(se.recorded_s for se in ses), 3),
            "frames": sum(se.frames for se in ses),
            "bytes": sum(se.bytes for se in ses),
            "segments": sum(se.segments for se in ses),
            "gap_s": round(sum(se.gap_s for se in ses), 3),
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
                    f"{eid} is {enc.state} ({enc.state_reason or 'no reason'}) during session "
                    f"{rs.id}",
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
            if waited > self.start_timeout and signal(
                Signal.START_TIMEOUT,
                f"not recording {self.start_timeout.total_seconds():g} s after the start",
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
            f"{se.enclosure_id} timed out in session {se.session_id}: {se.message}",
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
        """Progress and confirmation from the enclosure's latest status."""
        status = enc.status or {}
        recording = status.get("recording")
        live = EnclosureState(enc.state) not in OFFLINE_STATES
        if not (live and isinstance(recording, dict) and recording.get("session_id") == rs.id):
            se.live_s = 0.0
            return
        camera = status.get("camera") or {}
        last_frame = _when(camera.get("last_frame_at"))
        segment_start = _when(recording.get("segment_started_at"))
        if last_frame is not None and (se.last_frame_at is None or last_frame > se.last_frame_at):
            se.last_frame_at = last_frame
        if last_frame is not None and segment_start is not None:
            se.live_s = max(0.0, (last_frame - segment_start).total_seconds())
        frames = camera.get("frames_written") or 0
        se.live_frames = int(frames)
        if frames > 0 and camera.get("recording"):
            signal(Signal.FRAMES)

    # -- alerts -----------------------------------------------------------------------------------
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
