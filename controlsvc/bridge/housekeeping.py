"""The bridge's housekeeping: two ``Schedule``s the bridge's one ``Ticker`` runs (never in a
batch). ``schedule`` runs in the one bridge holding the timers' lease
(``controlsvc.bridge.leadership``):

- every ``TICK_S``: enclosures silent for ``lost_after_intervals`` x their status interval
  become ``lost``; unsettled commands past their deadline become ``timed_out``;
- every ``REPUBLISH_EVERY_S`` (and at start): ``pending`` commands that never reached the
  broker (the API died between its commit and its publish, or the broker was away) are
  published, while still before their deadline;
- every ``PURGE_EVERY_S``: status history older than ``[SERVICE] status_history_days`` and the
  event log older than ``eventlog.EVENT_RETENTION`` are deleted, in chunks.

``own_schedule`` runs in every bridge:

- every ``SERVICE_HEARTBEAT_S``: retained ``service/state`` online again;
- every ``bridge_health.BEAT_S`` (and at start): this bridge's heartbeat row, which
  ``/api/health`` reads (``mark_stopped`` at a clean stop).

Silence is only judged while connected, and not before a full silence period has passed since
the connection was made: the bridge cannot have heard anyone before it was listening.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from controlsvc import __version__
from controlsvc.bridge.mqtt_client import SERVICE_HEARTBEAT_S, BridgeClient
from controlsvc.bridge.stats import BridgeStats
from controlsvc.bridge.ticker import Schedule
from controlsvc.domain.publisher import BrokerUnavailable
from controlsvc.store import bridge_health, commands, enclosures, eventlog
from controlsvc.store.db import Database, utcnow
from controlsvc.store.enclosures import Liveness
from controlsvc.store.models.commands import Command

log = logging.getLogger(__name__)

__all__ = ["Housekeeping"]

# Pending commands are looked for this often (the API normally publishes within ms).
REPUBLISH_EVERY_S = 2.0
# Status history and old events are purged this often.
PURGE_EVERY_S = 600.0

EventIntent = eventlog.Intent


class Housekeeping:
    """The periodic tasks (``schedule``: the leader's; ``own_schedule``: every bridge's);
    ``run_once`` runs both (tests)."""

    def __init__(
        self,
        database: Database,
        client: BridgeClient,
        liveness: Liveness,
        stats: BridgeStats,
        *,
        status_history_days: int,
        backlog_since: Callable[[], datetime | None] = lambda: None,
        heard_for: Callable[[], float] | None = None,
    ) -> None:
        self._db = database
        self._backlog_since = backlog_since
        # Seconds the bridge has been able to hear every enclosure (all its connections up).
        self._heard_for = heard_for or client.connected_for
        self._client = client
        self._liveness = liveness
        self.stats = stats
        self.status_history_days = status_history_days
        self.bridge_id = client.bridge_id
        self.schedule = Schedule("housekeeping")
        add = self.schedule.add
        add("liveness", self.check_liveness)
        add("time-outs", self.time_out_commands)
        add("re-publishing", self.republish_pending, every_s=REPUBLISH_EVERY_S)
        add("purge", self.purge, every_s=PURGE_EVERY_S)
        self.own_schedule = Schedule("housekeeping")
        self.own_schedule.add("bridge heartbeat", self.beat, every_s=bridge_health.BEAT_S)
        self.own_schedule.add(
            "service heartbeat",
            lambda _now: client.heartbeat(),
            every_s=SERVICE_HEARTBEAT_S,
            first_in_s=SERVICE_HEARTBEAT_S,
        )

    def run_once(self, now: datetime | None = None) -> None:
        """One round of every task that is due, the leader's and this bridge's own."""
        self.own_schedule.run_due(now)
        self.schedule.run_due(now)

    def _commit_events(self, session: Any, intents: list[EventIntent]) -> int | None:
        newest = eventlog.record_intents(session, intents)
        session.commit()
        return newest

    def _notify(self, newest: int | None) -> None:
        if newest is not None:
            self._client.notify_events(newest)

    # -- tasks ------------------------------------------------------------------------------------
    def beat(self, now: datetime | None = None) -> None:
        """Refresh this bridge's heartbeat row."""
        with self._db.sessionmaker() as session:
            bridge_health.beat(
                session,
                self.bridge_id,
                version=__version__,
                started_at=self._client.started_at,
                now=now or utcnow(),
            )
            session.commit()

    def mark_stopped(self) -> None:
        """Say in the heartbeat row that this bridge stopped on purpose (a clean stop)."""

        try:
            with self._db.sessionmaker() as session:
                bridge_health.stopped(session, self.bridge_id, utcnow())
                session.commit()
        except Exception as exc:  # a database away at shutdown: the heartbeat ages out instead
            log.warning("cannot mark the bridge stopped: %s: %s", type(exc).__name__, exc)

    def check_liveness(self, now: datetime | None = None) -> int:
        """Mark silent enclosures lost; how many."""
        grace = self._liveness.silence_limit().total_seconds()
        if self._heard_for() < grace:
            return 0
        now = now or utcnow()
        # Messages the bridge received but has not written yet may be the very proof of life
        # a deadline waits for: judge only deadlines before the oldest of them. (A bridge that
        # falls behind must not call its whole fleet lost.)
        backlog = self._backlog_since()
        if backlog is not None:
            now = min(now, backlog)
        with self._db.sessionmaker() as session:
            changes = enclosures.mark_silent(session, now, self._liveness)
            if not changes:
                session.rollback()
                return 0
            intents: list[EventIntent] = [
                ("enclosure.state", c.event_data(), c.enclosure_id, None) for c in changes
            ]
            newest = self._commit_events(session, intents)
        for change in changes:
            self.stats.count("transitions", change.state.value)
            log.info(
                "enclosure %s: %s -> lost (%s)", change.enclosure_id, change.previous, change.reason
            )
        self._notify(newest)
        return len(changes)

    def time_out_commands(self, now: datetime | None = None) -> int:
        """Mark overdue commands timed_out; how many."""
        now = now or utcnow()
        with self._db.sessionmaker() as session:
            settled = commands.time_out_overdue(session, now)
            if not settled:
                session.rollback()
                return 0
            intents: list[EventIntent] = [
                ("command.updated", commands.event_data(c), c.enclosure_id, c.id) for c in settled
            ]
            newest = self._commit_events(session, intents)
        for command in settled:
            self.stats.count("commands_settled", command.state)
            log.info(
                "command %s (%s to %s) timed out", command.id, command.kind, command.enclosure_id
            )
        self._notify(newest)
        return len(settled)

    def republish_pending(self, now: datetime | None = None) -> int:
        """Publish pending commands the API did not get to the broker; how many went out."""
        if not self._client.connected:
            return 0
        now = now or utcnow()
        with self._db.sessionmaker() as session:
            pending = [c.id for c in commands.republishable(session, now)]
        sent = 0
        for command_id in pending:
            with self._db.sessionmaker() as session:
                command = session.get(Command, command_id)
                if command is None:
                    continue
                try:
                    changed = commands.publish_command(
                        session, self._client, command, self._client.topics, wait_for_lock=True
                    )
                except BrokerUnavailable as exc:
                    session.rollback()
                    log.warning("cannot re-publish command %s: %s", command_id, exc.detail)
                    break
                if not changed:  # the answer got there first; the publish still counts
                    session.commit()
                    continue
                data = commands.event_data(command)
                newest = self._commit_events(
                    session, [("command.updated", data, command.enclosure_id, command.id)]
                )
            log.info(
                "re-published pending command %s (%s to %s)",
                command_id,
                data["kind"],
                data["enclosure_id"],
            )
            sent += 1
            self._notify(newest)
        return sent

    def purge(self, now: datetime | None = None) -> int:
        """Delete old status history (and old events); how many status rows went."""
        now = now or utcnow()
        before = now - timedelta(days=self.status_history_days)
        total = 0
        while not self.schedule.stopping.is_set():
            with self._db.sessionmaker() as session:
                n = enclosures.purge_status_history(session, before)
                session.commit()
            total += n
            if n < enclosures.PURGE_CHUNK:
                break
        with self._db.sessionmaker() as session:
            events = eventlog.purge(session, now - eventlog.EVENT_RETENTION)
            bridge_health.purge(session, now - bridge_health.RETENTION)
            session.commit()
        if total or events:
            log.info("purged %d status history rows and %d events", total, events)
        return total
