"""The fleet on the wire: each enclosure's derived state as a retained ``FleetState`` on
``{prefix}/service/fleet/{eid}``, so a fresh ``mosquitto_sub -t 'jaxmba/v1/#'`` shows what the
web UI shows (registered enclosures that never connected too). No paho, no Flask.

``FleetPublisher`` (the bridge's timer) reads every enclosure's state and active session, and
publishes those whose state, session or name changed since it last published them; after each
(re)connection of the bridge it publishes all of them again (a broker that lost its retained
messages converges). Several bridges may publish the same message: it is retained and carries
the same state, so the last one standing is right. Retiring an enclosure clears its message
(``enclosures.retire_enclosure``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from controlsvc.domain.enclosure_state import derive_state, recording_session
from controlsvc.domain.publisher import BatchPublisher
from controlsvc.domain.session_state import ACTIVE_ENCLOSURE_STATES, ACTIVE_SESSION_STATUSES
from controlsvc.store.db import Database, utcnow
from controlsvc.store.models.enclosures import Enclosure
from controlsvc.store.models.sessions import RecordingSession, SessionEnclosure
from schemas.codec import dump_message
from schemas.messages import FleetState
from schemas.topics import SERVICE_QOS, Topics

log = logging.getLogger(__name__)

__all__ = ["FleetClient", "FleetPublisher", "fleet_states"]

NEVER_SEEN = derive_state(None, None)[1]
_ACTIVE_SE = [s.value for s in ACTIVE_ENCLOSURE_STATES]
_ACTIVE_RS = [s.value for s in ACTIVE_SESSION_STATUSES]


def _sessions(session: Session) -> dict[str, str]:
    """Enclosure -> the active session it takes part in."""
    rows = session.execute(
        select(SessionEnclosure.enclosure_id, SessionEnclosure.session_id)
        .join(RecordingSession, RecordingSession.id == SessionEnclosure.session_id)
        .where(
            SessionEnclosure.state.in_(_ACTIVE_SE),
            RecordingSession.status.in_(_ACTIVE_RS),
        )
        .order_by(RecordingSession.start_at)
    ).all()
    return {eid: sid for eid, sid in rows}


def fleet_states(session: Session, now: datetime | None = None) -> list[FleetState]:
    """Every enclosure that is not retired, as its ``FleetState`` (by id)."""
    now = now or utcnow()
    active = _sessions(session)
    states = []
    for enc in session.scalars(
        select(Enclosure).where(Enclosure.retired_at.is_(None)).order_by(Enclosure.id)
    ):
        recorded = recording_session(enc.status if enc.status_boot_id == enc.boot_id else None)
        states.append(
            FleetState(
                at=now,
                enclosure_id=enc.id,
                name=enc.name,
                state=enc.state,
                reason=enc.state_reason or (NEVER_SEEN if enc.lifecycle is None else None),
                since=enc.state_changed_at or enc.registered_at,
                session_id=active.get(enc.id) or recorded or None,
                last_seen_at=enc.last_seen_at,
                expected_online=enc.expected_online,
            )
        )
    return states


def _signature(state: FleetState) -> tuple[Any, ...]:
    """What a subscriber sees change (not ``at`` nor ``last_seen_at``, which move always)."""
    return (
        state.name,
        state.state,
        state.reason,
        state.since,
        state.session_id,
        state.expected_online,
    )


class FleetClient(BatchPublisher, Protocol):
    """What the publisher needs of the bridge's MQTT client."""

    @property
    def connected(self) -> bool: ...

    @property
    def generation(self) -> int: ...


class FleetPublisher:
    """Publishes what changed; everything again after each (re)connection of ``client``."""

    def __init__(self, database: Database, client: FleetClient, topics: Topics) -> None:
        self._db = database
        self._client = client
        self._topics = topics
        self._published: dict[str, tuple[Any, ...]] = {}
        self._generation = -1

    def run_once(self, now: datetime | None = None) -> int:
        """Publish the changed states; how many went out."""
        if not self._client.connected:
            return 0
        generation = self._client.generation
        with self._db.sessionmaker() as session:
            states = fleet_states(session, now)
        if generation != self._generation:
            self._published.clear()
        due = [s for s in states if self._published.get(s.enclosure_id) != _signature(s)]
        gone = set(self._published) - {s.enclosure_id for s in states}
        for eid in gone:  # retired (the API cleared the topic): forget it
            del self._published[eid]
        sent = self._publish(due)
        if len(sent) == len(due):
            self._generation = generation
        return len(sent)

    def _publish(self, states: Sequence[FleetState]) -> list[FleetState]:
        if not states:
            return []
        messages = [(self._topics.fleet(s.enclosure_id), dump_message(s)) for s in states]
        errors = self._client.publish_many(messages, qos=SERVICE_QOS, retain=True)
        sent = [s for s, error in zip(states, errors, strict=True) if error is None]
        for state in sent:
            self._published[state.enclosure_id] = _signature(state)
        if len(sent) < len(states):
            log.warning("%d fleet states not published yet", len(states) - len(sent))
        return sent
