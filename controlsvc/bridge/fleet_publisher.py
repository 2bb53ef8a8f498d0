"""The fleet on the wire: each enclosure's derived state as a retained ``FleetState`` on
``{prefix}/service/fleet/{eid}``, so a fresh ``mosquitto_sub -t 'jaxmba/v1/#'`` shows what the
web UI shows (registered enclosures that never connected too). No paho, no Flask.

``FleetPublisher`` (the bridge's timer) reads every enclosure's state and active session (plain
columns: ``summary_recording`` stands for the status document), and
publishes those whose state, session or name changed since it last published them; after each
(re)connection of the bridge it publishes all of them again (a broker that lost its retained
messages converges). On PostgreSQL a tick reads, per enclosure, only a digest of the columns its
message is made of (``_DIGESTS``), and whole rows only for the enclosures whose digest or active
session changed: reading 2,000 rows twice a second was 5 % of the bridge's CPU, growing with the
fleet rather than with its traffic. Several bridges may publish the same message: it is
retained and carries the same state, so the last one standing is right. Retiring an enclosure
clears its message (``enclosures.retire_enclosure``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from controlsvc.domain.enclosure_state import derive_state
from controlsvc.domain.publisher import BatchPublisher
from controlsvc.domain.session_state import ACTIVE_ENCLOSURE_STATES, ACTIVE_SESSION_STATUSES
from controlsvc.store.db import Database, utcnow
from controlsvc.store.models.enclosures import Enclosure
from controlsvc.store.models.sessions import RecordingSession, SessionEnclosure
from schemas.codec import dump_message
from schemas.messages import FleetState
from schemas.topics import SERVICE_QOS, Topics

log = logging.getLogger(__name__)

__all__ = ["FleetClient", "FleetPublisher", "FleetRow", "fleet_rows"]

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


# Plain columns, no status documents: this runs for the whole fleet on every tick.
_ROWS = (
    select(
        Enclosure.id,
        Enclosure.name,
        Enclosure.state,
        Enclosure.state_reason,
        Enclosure.lifecycle,
        Enclosure.state_changed_at,
        Enclosure.registered_at,
        Enclosure.last_seen_at,
        Enclosure.expected_online,
        Enclosure.summary_recording,
        Enclosure.status_boot_id == Enclosure.boot_id,
    )
    .where(Enclosure.retired_at.is_(None))
    .order_by(Enclosure.id)
)


# PostgreSQL: what an enclosure's message is made of (but its active session, which
# ``_sessions`` reads), as one digest per enclosure. A row's text form keeps NULLs apart.
_DIGESTS = text(
    """
    SELECT id, md5(ROW(
        name, state, state_reason, lifecycle IS NULL,
        coalesce(state_changed_at, registered_at), expected_online,
        CASE WHEN status_boot_id = boot_id THEN summary_recording END
    )::text)
    FROM enclosures
    WHERE retired_at IS NULL
    """
)

# What was published for an enclosure: its digest and active session (PostgreSQL) or its
# ``FleetRow.signature()``.
_Key = tuple[Any, ...]


class FleetRow(NamedTuple):
    """What ``FleetState`` says of one enclosure, before the message is built."""

    enclosure_id: str
    name: str
    state: str
    reason: str | None
    since: datetime
    session_id: str | None
    last_seen_at: datetime | None
    expected_online: bool

    def signature(self) -> tuple[Any, ...]:
        """What a subscriber sees change (not ``last_seen_at``, which moves always)."""
        return (
            self.name,
            self.state,
            self.reason,
            self.since,
            self.session_id,
            self.expected_online,
        )

    def message(self, now: datetime) -> FleetState:
        return FleetState(
            at=now,
            enclosure_id=self.enclosure_id,
            name=self.name,
            state=self.state,
            reason=self.reason,
            since=self.since,
            session_id=self.session_id,
            last_seen_at=self.last_seen_at,
            expected_online=self.expected_online,
        )


def fleet_rows(
    session: Session,
    ids: Sequence[str] | None = None,
    *,
    active: Mapping[str, str] | None = None,
) -> list[FleetRow]:
    """Every enclosure that is not retired (by id), or those of them among ``ids``.
    ``active``: each enclosure's active session (``_sessions``), if the caller read it."""
    if active is None:
        active = _sessions(session)
    statement = _ROWS if ids is None else _ROWS.where(Enclosure.id.in_(sorted(ids)))
    rows = []
    for (
        eid,
        name,
        state,
        state_reason,
        lifecycle,
        changed_at,
        registered_at,
        last_seen_at,
        expected_online,
        recorded,
        same_boot,
    ) in session.connection().execute(statement):  # Core: plain tuples, no ORM processing
        rows.append(
            FleetRow(
                enclosure_id=eid,
                name=name,
                state=state,
                reason=state_reason or (NEVER_SEEN if lifecycle is None else None),
                since=changed_at or registered_at,
                session_id=active.get(eid) or (recorded if same_boot else None) or None,
                last_seen_at=last_seen_at,
                expected_online=bool(expected_online),
            )
        )
    return rows


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
        self._published: dict[str, _Key] = {}
        self._generation = -1

    def run_once(self, now: datetime | None = None) -> int:
        """Publish the changed states; how many went out."""
        if not self._client.connected:
            return 0
        generation = self._client.generation
        if generation != self._generation:
            self._published.clear()
        with self._db.sessionmaker() as session:
            due, keys = self._due(session)
        gone = set(self._published) - set(keys)
        for eid in gone:  # retired (the API cleared the topic): forget it
            del self._published[eid]
        sent = self._publish(due, keys, now or utcnow())
        if len(sent) == len(due):
            self._generation = generation
        return len(sent)

    def _due(self, session: Session) -> tuple[list[FleetRow], dict[str, _Key]]:
        """The rows to publish, and every enclosure's key (see ``_Key``)."""
        if session.get_bind().dialect.name != "postgresql":
            rows = fleet_rows(session)
            keys = {row.enclosure_id: row.signature() for row in rows}
            return [
                r for r in rows if self._published.get(r.enclosure_id) != keys[r.enclosure_id]
            ], keys
        active = _sessions(session)
        keys = {
            eid: (digest, active.get(eid)) for eid, digest in session.connection().execute(_DIGESTS)
        }
        changed = [eid for eid, key in keys.items() if self._published.get(eid) != key]
        if not changed:
            return [], keys
        # All of them (after a reconnection): no list of every id in the statement.
        ids = None if len(changed) == len(keys) else changed
        return fleet_rows(session, ids, active=active), keys

    def _publish(
        self, rows: Sequence[FleetRow], keys: Mapping[str, _Key], now: datetime
    ) -> list[FleetRow]:
        if not rows:
            return []
        messages = [
            (self._topics.fleet(r.enclosure_id), dump_message(r.message(now))) for r in rows
        ]
        errors = self._client.publish_many(messages, qos=SERVICE_QOS, retain=True)
        sent = [r for r, error in zip(rows, errors, strict=True) if error is None]
        for row in sent:
            # A row read after its digest may be newer: then the next tick publishes it again.
            key = keys.get(row.enclosure_id)
            if key is not None:
                self._published[row.enclosure_id] = key
        if len(sent) < len(rows):
            log.warning("%d fleet states not published yet", len(rows) - len(sent))
        return sent
