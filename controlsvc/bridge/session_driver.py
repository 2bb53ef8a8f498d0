"""The bridge's side of recording sessions: it alone moves them forward.

- the agents' events move them in the writer's transaction (``controlsvc.bridge.session_events``);
- ``SessionDriver`` (a ``Schedule`` the bridge's one ``Ticker`` runs): start times, progress and
  confirmation from the latest status, lost enclosures (alert, then ``timed_out`` after
  ``[SERVICE] session_lost_grace_s``), start and end time-outs
  (``[SERVICE] session_start_timeout_s``), the session's status (``sessions.settle``), clearing
  ``desired`` of enclosures that are done; then publishing ``desired`` documents the broker
  has not acknowledged, all active ones again after every (re)connection, ``enclosure_lost``
  alerts for enclosures expected online (``alerts.watch_expected_online``), the pending
  alerts (MQTT, mail), and each enclosure's derived state on ``service/fleet/{eid}``
  (``controlsvc.bridge.fleet_publisher``). What a tick reads, and which enclosures it steps:
  ``controlsvc.bridge.session_look``.

Everything it decides is in the database, so a restarted bridge carries on. Several bridges may
run: the timer locks rows with SKIP LOCKED and every step is idempotent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, bindparam, func, select
from sqlalchemy.orm import Session

from controlsvc.bridge.fleet_publisher import FleetPublisher
from controlsvc.bridge.mqtt_client import BridgeClient
from controlsvc.bridge.session_events import alert_subject, session_named
from controlsvc.bridge.session_look import STEP_LOOK, SessionLook, observed
from controlsvc.bridge.stats import BridgeStats
from controlsvc.bridge.ticker import Schedule
from controlsvc.config.settings import Settings
from controlsvc.domain import alert_words
from controlsvc.domain.enclosure_state import status_cause
from controlsvc.domain.session_state import (
    ACTIVE_ENCLOSURE_STATES,
    EncState,
    Signal,
    derive_session,
    next_state,
)
from controlsvc.mailer.delivery import MailOutbox, make_mailer
from controlsvc.store import alerts, desired, session_enclosure_rows
from controlsvc.store.db import Database, utcnow
from controlsvc.store.enclosures import current_status
from controlsvc.store.models.enclosures import Enclosure
from controlsvc.store.models.sessions import (
    DesiredVersion,
    RecordingSession,
    SessionEnclosure,
    SessionEnclosureRow,
)
from controlsvc.store.session_progress import FIGURE_COLUMNS, progress_fields, totals_of
from controlsvc.store.sessions import (
    ACTIVE_SESSION_VALUES,
    DONE_STATES,
    OFFLINE_STATES,
    EventIntent,
    apply,
    record_events,
    settle,
)
from schemas.enums import EnclosureState, SessionStatus

log = logging.getLogger(__name__)

__all__ = ["SessionDriver"]

# Desired documents the broker has not acknowledged are looked for this often.
REPUBLISH_EVERY_S = 2.0
# The timer locks at most this many enclosures of a session per transaction (the writer may be
# waiting for one of them).
STEP_CHUNK = 100
# A running session's totals go to the event log this often.
PROGRESS_EVERY_S = 5.0

# -- the timer -----------------------------------------------------------------------------------

# The states that occur among a session's enclosures (``SessionDriver._unsettled``).
_STATES = (
    select(SessionEnclosure.state)
    .where(SessionEnclosure.session_id == bindparam("sid"))
    .group_by(SessionEnclosure.state)
)
# The columns of a session's enclosures its progress event is summed from (not ORM objects:
# every ``PROGRESS_EVERY_S`` for every enclosure of every running session).
_PROGRESS = select(SessionEnclosure.state, *FIGURE_COLUMNS).where(
    SessionEnclosure.session_id == bindparam("sid")
)


class SessionDriver:
    """The sessions' timer thread of one bridge; ``run_once`` is callable directly (tests)."""

    def __init__(
        self,
        settings: Settings,
        database: Database,
        client: BridgeClient,
        stats: BridgeStats,
        *,
        send_mail: Callable[[Any], None] | None = None,
    ) -> None:
        self._db = database
        self._client = client
        self.stats = stats
        self.topics = client.topics
        self.start_timeout = timedelta(seconds=settings.service.session_start_timeout_s)
        self.lost_grace = timedelta(seconds=settings.service.session_lost_grace_s)
        self._outbox = MailOutbox(make_mailer(settings.mail)) if send_mail is None else None
        self._send_mail = send_mail or (self._outbox.put if self._outbox else None)
        self._generation = -1  # the connection whose active documents were re-published
        self._next_republish = 0.0
        self.look = SessionLook(self.start_timeout)
        self.fleet = FleetPublisher(database, client, self.topics)
        self.schedule = Schedule("sessions")
        self.schedule.add("desired", lambda _now: self.publish_desired())
        self.schedule.add("sessions", self.advance)
        self.schedule.add("expected online", self.watch_expected_online)
        self.schedule.add("alerts", self.deliver_alerts)
        self.schedule.add("fleet", self.fleet.run_once)

    def flush_mail(self, timeout: float = 10.0) -> bool:
        return self._outbox.flush(timeout) if self._outbox is not None else True

    def run_once(self, now: datetime | None = None) -> None:
        """One round of every task (tests; the bridge's ticker runs ``schedule``)."""
        self.schedule.run_due(now)

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
        self.look.keep(ids)
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
            due = [
                row.id for row in self.look.rows(session, rs, now) if self.look.due(rs, row, now)
            ]
        newest = []
        try:
            for i in range(0, len(due), STEP_CHUNK):
                last, complete = self._step_chunk(sid, due[i : i + STEP_CHUNK], now)
                if not complete:  # the writer held some: the next look reads every row again
                    self.look.forget(sid)
                if last is not None:
                    newest.append(last)
        except BaseException:
            self.look.forget(sid)  # what was due and not stepped: looked at again
            raise
        last = self._settle(sid, now)
        if last is not None:
            newest.append(last)
        return newest

    @staticmethod
    def _enclosures(session: Session, ses: Sequence[SessionEnclosureRow]) -> dict[str, Row[Any]]:
        """What ``_step`` reads of the enclosures of ``ses`` (``STEP_LOOK``), by id."""
        ids = [se.enclosure_id for se in ses]
        return {row.id: row for row in session.execute(STEP_LOOK, {"ids": ids})}

    def _step_chunk(self, sid: str, ids: Sequence[int], now: datetime) -> tuple[int | None, bool]:
        """Step the rows of ``ids`` nobody else holds; the newest event-log id recorded, and
        whether every row was stepped."""
        events: list[EventIntent] = []
        with self._db.sessionmaker() as session:
            rs = session.get(RecordingSession, sid)  # read only: _step does not change it
            if rs is None:  # pragma: no cover - sessions are never deleted
                return None, True
            # Working copies, written back in one statement: right after a fan-out's start or
            # cancel every enclosure's first status makes it due, and a thousand ORM objects
            # loaded and flushed cost the bridge a third of a second each time.
            ses = session_enclosure_rows.lock_free(session, ids)
            encs = self._enclosures(session, ses)
            for se in ses:
                enc = encs.get(se.enclosure_id)
                if enc is not None:
                    self._step(session, rs, se, enc, now, events)
            if session_enclosure_rows.write_back(session, ses):
                self.look.wrote(session, sid)
            newest = record_events(session, events)
            session.commit()
        return newest, len(ses) == len(set(ids))

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
                figures = session.execute(_PROGRESS, {"sid": sid}).all()
                events.append(("session.progress", self._totals(rs, figures), None, None))
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
        """Whether ``settle`` would change something, from the states as they are now (which
        of them occur: ``derive_session`` asks whether any or all are so)."""
        states = [EncState(s) for s in session.scalars(_STATES, {"sid": rs.id})]
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
    def _totals(rs: RecordingSession, ses: Sequence[Row[*tuple[Any, ...]]]) -> dict[str, Any]:
        """The ``session.progress`` event's data from ``_PROGRESS``'s rows."""
        totals = totals_of((progress_fields(se) for se in ses), sum(se.gap_s for se in ses))
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
        se: SessionEnclosureRow,
        enc: Row[Any],
        now: datetime,
        events: list[EventIntent],
    ) -> None:
        """Move ``se`` as the clock and ``enc`` (``STEP_LOOK``'s row) say."""
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
            if state in ACTIVE_ENCLOSURE_STATES and now >= rs.start_at:
                away_words = alerts.away_sentence(self._whole(session, eid))
                message = f"{away_words} during session “{rs.name}”"
                if lost_alert is None:
                    alerts.raise_alert(
                        session, "enclosure_lost", eid, message, events, session_id=rs.id, now=now
                    )
                else:  # raised by the expected-online watch, which got there first
                    alerts.name_session(lost_alert, rs.id, message, events)
            if now - se.lost_since > self.lost_grace:
                grace = self.lost_grace.total_seconds()
                if signal(Signal.LOST_TIMEOUT, f"{enc.state} for more than {grace:g} s"):
                    self._timed_out_alert(session, se, events, now)
        elif se.lost_since is not None:
            se.lost_since = None
            alerts.recover(session, "enclosure_lost", eid, events, now=now)
        state = EncState(se.state)
        if (
            state is EncState.STARTING
            and se.starting_at is not None
            and now - se.starting_at > self.start_timeout
        ):
            cause = status_cause(current_status(self._whole(session, eid)))
            if signal(
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
    def _whole(session: Session, eid: str) -> Enclosure:
        """The enclosure's whole row, for an alert's words (rare: away, or late to start)."""
        enc = session.get(Enclosure, eid)
        if enc is None:  # pragma: no cover - enclosures are retired, never deleted
            raise LookupError(f"enclosure {eid!r} is gone")
        return enc

    @staticmethod
    def _timed_out_alert(
        session: Session, se: SessionEnclosureRow, events: list[EventIntent], now: datetime
    ) -> None:
        alerts.raise_alert(
            session,
            "recording_timed_out",
            se.enclosure_id,
            alert_words.timed_out(
                alert_subject(session, se.enclosure_id), *session_named(session, se), se.message
            ),
            events,
            session_id=se.session_id,
            now=now,
        )

    @staticmethod
    def _status(
        se: SessionEnclosureRow,
        enc: Row[Any],
        rs: RecordingSession,
        signal: Callable[[Signal], bool],
    ) -> None:
        """Progress and confirmation from the enclosure's latest status. While the enclosure
        is away its open file's figures stay as last reported (the file is on its disk; the
        page says the enclosure is lost), rather than dropping to the closed segments'."""
        if EnclosureState(enc.state) in OFFLINE_STATES:
            return
        seen = observed(enc.recording, enc.camera, enc.state, se.last_frame_at, rs.id)
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
