"""Validate a batch of received messages, then write it to the database in one transaction.

``parse`` refuses what is not ours (bad topic, too large, not UTF-8, not JSON, failing the
schema): counted in ``BridgeStats.invalid``, logged at most once per enclosure per minute,
never stored. ``write`` applies the rest in arrival order inside ONE transaction:

- ``state``: lifecycle and derived state (``enclosures.apply_lifecycle``), transitions;
- ``status``: latest status unless stale (``enclosures.apply_status``), a history row
  (insert-if-absent on (enclosure, boot_id, seq)): every status, or with
  ``[SERVICE] status_history_every_s`` one per enclosure per that many seconds plus every one
  whose state or user-visible part changed;
- ``ack``: command state (``commands.apply_ack``);
- ``events``: the agent's durable facts, insert-if-absent on (enclosure, event_id);

and records the event-log entries (``enclosure.state``, ``enclosure.status`` coalesced,
``command.updated``) last, just before the commit. If the transaction fails for a reason other
than an unreachable database, the batch is written again one message at a time and only the
message that fails alone is dropped (logged); an unreachable database raises ``DatabaseDown``
and the caller retries the whole batch later (nothing was acknowledged to the broker).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Table
from sqlalchemy.orm import Session

from controlsvc.bridge import session_events
from controlsvc.bridge.inbound import Inbound
from controlsvc.bridge.stats import BridgeStats, LogThrottle
from controlsvc.domain.enclosure_state import clock_skew, superseded_wills
from controlsvc.store import alerts, commands, enclosure_rows, enclosures, eventlog
from controlsvc.store.bulk_rows import insert_rows
from controlsvc.store.db import Database, is_down, utcnow
from controlsvc.store.enclosures import Liveness, StateChange, Verdict
from controlsvc.store.models.enclosures import AgentEvent, EnclosureRow, StatusRecord
from schemas.codec import parse_message
from schemas.commands import Ack
from schemas.errors import MessageError, TopicError
from schemas.events import Event
from schemas.logs import log_ids
from schemas.messages import EnclosureStateMessage
from schemas.status import Status
from schemas.topics import Channel, Topics

log = logging.getLogger(__name__)

__all__ = ["DatabaseDown", "Parsed", "Writer"]

# The channels the bridge stores; anything else under enc/ is not for it.
HANDLED: dict[Channel, type[EnclosureStateMessage | Status | Ack | Event]] = {
    Channel.STATE: EnclosureStateMessage,
    Channel.STATUS: Status,
    Channel.ACK: Ack,
    Channel.EVENTS: Event,
}
# A status event is sent at once when what a user sees changes, else at most this often (the
# default of ``[SERVICE] status_event_every_s``).
STATUS_EVENT_EVERY_S = 10.0
# Bad input is logged once per enclosure (or topic) per this many seconds.
LOG_PERIOD_S = 60.0
PAYLOAD_SHOWN = 120  # bytes of a refused payload quoted in the log
_HISTORY: Table = StatusRecord.__table__  # type: ignore[assignment]
_ACK_IGNORED = {
    "unknown": "unknown_command",
    "foreign": "foreign_ack",
    "late": "late_ack",
    "duplicate": "duplicate",
}


class DatabaseDown(Exception):  # noqa: N818 (a condition, not a bug)
    """The database cannot be reached; retry the batch later."""


@dataclass(frozen=True, slots=True)
class Parsed:
    inbound: Inbound
    eid: str
    channel: Channel
    message: EnclosureStateMessage | Status | Ack | Event


@dataclass
class _Batch:
    """What one transaction collected."""

    events: list[eventlog.Intent] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    agent_events: list[tuple[str, Event, datetime]] = field(default_factory=list)
    status_events: dict[str, float] = field(default_factory=dict)
    history_at: dict[str, float] = field(default_factory=dict)
    written: dict[str, int] = field(default_factory=dict)
    ignored: dict[str, int] = field(default_factory=dict)
    settled: dict[str, int] = field(default_factory=dict)
    transitions: dict[str, int] = field(default_factory=dict)

    def bump(self, counter: dict[str, int], key: str) -> None:
        counter[key] = counter.get(key, 0) + 1


def _shown(payload: bytes) -> str:
    text = payload[:PAYLOAD_SHOWN].decode("utf-8", "replace")
    return text + ("..." if len(payload) > PAYLOAD_SHOWN else "")


def _superseded_wills(parsed: Sequence[Parsed]) -> set[int]:
    """Positions in ``parsed`` of Wills a later state message of the batch shows are over."""
    states = [
        (position, item.eid, item.message)
        for position, item in enumerate(parsed)
        if isinstance(item.message, EnclosureStateMessage)
    ]
    found = superseded_wills([(eid, m.state, m.boot_id, m.connection) for _, eid, m in states])
    return {states[i][0] for i in found}


class _Cadence:
    """At most one per enclosure per ``every_s`` (0: every one) unless forced; only what a
    committed batch took counts (``commit``), so a failed write leaves the next one due.
    Per process: a few bridges may each take one within a period."""

    def __init__(self, every_s: float, clock: Callable[[], float]) -> None:
        self.every_s = every_s
        self._clock = clock
        self._last: dict[str, float] = {}

    def due(self, eid: str, taken: dict[str, float], *, force: bool = False) -> bool:
        """Whether ``eid`` is due one now; if so, noted in ``taken`` (the batch's)."""
        if self.every_s <= 0:
            return True
        now = self._clock()
        last = taken.get(eid, self._last.get(eid))
        if force or last is None or now - last >= self.every_s:
            taken[eid] = now
            return True
        return False

    def commit(self, taken: dict[str, float]) -> None:
        self._last.update(taken)


class Writer:
    """Parses and writes batches; used by the bridge's single worker thread."""

    def __init__(
        self,
        database: Database,
        topics: Topics,
        liveness: Liveness,
        stats: BridgeStats,
        *,
        status_event_every_s: float = STATUS_EVENT_EVERY_S,
        history_every_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = database
        self._topics = topics
        self._liveness = liveness
        self.stats = stats
        self._throttle = LogThrottle(LOG_PERIOD_S)
        self._status_events = _Cadence(status_event_every_s, clock)
        # 0: every status gets a history row; else at most one per enclosure per this long,
        # plus those that changed something.
        self._history = _Cadence(history_every_s, clock)
        # The status documents this writer last read or wrote (``enclosure_rows``).
        self.statuses = enclosure_rows.StatusCache()

    # -- validation -----------------------------------------------------------------------------
    def _refuse(self, inbound: Inbound, key: str, reason: str, detail: str) -> None:
        self.stats.count("invalid", reason)
        suppressed = self._throttle.allow(key)
        if suppressed is not None:
            more = f" ({suppressed} more since the last report)" if suppressed else ""
            log.warning(
                "refused message on %s (%s): %s; payload %r%s",
                inbound.topic[:200],
                reason,
                detail,
                _shown(inbound.payload),
                more,
            )

    def parse(self, batch: Sequence[Inbound]) -> list[Parsed]:
        """The valid messages of ``batch`` (the others are counted and logged)."""
        out = []
        for inbound in batch:
            try:
                eid, channel = self._topics.parse(inbound.topic)
            except TopicError as exc:
                self.stats.count("received", "other")
                self._refuse(inbound, f"topic:{inbound.topic[:64]}", "topic", str(exc))
                continue
            self.stats.count("received", channel.value)
            model = HANDLED.get(channel)
            if model is None:
                self._refuse(inbound, eid, "topic", f"the bridge does not read {channel.value}")
                continue
            if not inbound.payload and channel in (Channel.STATE, Channel.STATUS):
                # An emptied retained topic (a retired enclosure): nothing to store.
                self.stats.count("ignored", "cleared")
                continue
            try:
                message = parse_message(model, inbound.payload)
            except MessageError as exc:
                self._refuse(inbound, eid, exc.category, exc.reason)
                continue
            out.append(Parsed(inbound, eid, channel, message))
        return out

    # -- writing --------------------------------------------------------------------------------
    def write(self, parsed: Sequence[Parsed]) -> eventlog.Recorded | None:
        """Write ``parsed``; the events recorded (None: no event). Written one message at a
        time after a failure, the events are those of several transactions, and only the
        newest id is given.

        Raises ``DatabaseDown`` when the database cannot be reached.
        """
        if not parsed:
            return None
        try:
            return self._write(parsed)
        except Exception as exc:
            if is_down(exc):
                self.stats.add("database_errors")
                raise DatabaseDown(str(exc)) from exc
            self.stats.add("batch_retries")
            log.warning(
                "a batch of %d messages failed (%s: %s); writing them one at a time",
                len(parsed),
                type(exc).__name__,
                exc,
            )
        newest: int | None = None
        for item in parsed:
            try:
                last = self._write([item])
            except Exception as exc:
                if is_down(exc):
                    self.stats.add("database_errors")
                    raise DatabaseDown(str(exc)) from exc
                self.stats.count("ignored", "dropped")
                log.error(  # noqa: TRY400 - the reason is the message, not a traceback
                    "dropped the message on %s (eid=%s): %s: %s; payload %r",
                    item.inbound.topic,
                    item.eid,
                    type(exc).__name__,
                    exc,
                    _shown(item.inbound.payload),
                )
                continue
            if last is not None:
                newest = max(newest or 0, last.last_id)
        return None if newest is None else eventlog.Recorded(newest)

    def _write(self, parsed: Sequence[Parsed]) -> eventlog.Recorded | None:
        batch = _Batch()
        now = utcnow()
        with self._db.sessionmaker() as session:
            try:
                recorded = eventlog.Recorded.of(self._apply(session, parsed, batch, now))
                session.commit()
            except BaseException:
                session.rollback()
                raise
        # Only what was committed counts.
        self._status_events.commit(batch.status_events)
        self._history.commit(batch.history_at)
        for key, n in batch.written.items():
            self.stats.count("written", key, n)
        for key, n in batch.ignored.items():
            self.stats.count("ignored", key, n)
        for key, n in batch.settled.items():
            self.stats.count("commands_settled", key, n)
        for key, n in batch.transitions.items():
            self.stats.count("transitions", key, n)
        return recorded

    def _apply(
        self, session: Session, parsed: Sequence[Parsed], batch: _Batch, now: datetime
    ) -> list[eventlog.Logged]:
        encs = enclosure_rows.lock_rows(
            session, {p.eid for p in parsed}, now=now, statuses=self.statuses
        )
        superseded = _superseded_wills(parsed)
        for position, item in enumerate(parsed):
            enc = encs[item.eid]
            if enc.retired_at is not None:
                batch.bump(batch.ignored, "retired")
                continue
            message = item.message
            if position in superseded:
                batch.bump(batch.ignored, Verdict.STALE.value)
                continue
            if isinstance(message, EnclosureStateMessage):
                self._state(session, enc, item, message, batch)
            elif isinstance(message, Status):
                self._status(session, enc, item, message, batch)
            elif isinstance(message, Ack):
                self._ack(session, enc, item, message, batch)
            else:
                self._event(session, enc, item, message, batch)
        # Written before the agent events' reactions, which read enclosures through the ORM
        # (``write_back`` expires the ORM's copies).
        enclosure_rows.write_back(session, encs.values(), self.statuses)
        self._store_events(session, batch, encs)
        if batch.history:  # one statement (``store.bulk_rows``); a copy written before is skipped
            insert_rows(session.connection(), _HISTORY, batch.history)
        return eventlog.record_intent_rows(session, batch.events)

    def _transition(self, change: StateChange | None, batch: _Batch) -> None:
        if change is None:
            return
        batch.bump(batch.transitions, change.state.value)
        batch.events.append(("enclosure.state", change.event_data(), change.enclosure_id, None))
        log.info(
            "enclosure %s: %s -> %s (%s)",
            change.enclosure_id,
            change.previous.value,
            change.state.value,
            change.reason,
            extra=log_ids(enclosure_id=change.enclosure_id),
        )

    def _state(
        self,
        session: Session,
        enc: EnclosureRow,
        item: Parsed,
        message: EnclosureStateMessage,
        batch: _Batch,
    ) -> None:
        verdict, change = enclosures.apply_lifecycle(
            session,
            enc,
            message,
            item.inbound.received_at,
            self._liveness,
            retained=item.inbound.retain,
        )
        if verdict is not Verdict.NEW:
            batch.bump(batch.ignored, verdict.value)
            return
        batch.bump(batch.written, "state")
        self._transition(change, batch)

    def _status(
        self, session: Session, enc: EnclosureRow, item: Parsed, message: Status, batch: _Batch
    ) -> None:
        received_at = item.inbound.received_at
        skew_before = clock_skew(enc.status)
        new_boot = enc.status_boot_id != message.boot_id
        outcome = enclosures.apply_status(
            session, enc, message, received_at, self._liveness, retained=item.inbound.retain
        )
        changed = outcome.verdict is Verdict.NEW and (
            new_boot or outcome.significant or outcome.change is not None
        )
        if outcome.verdict is not Verdict.DUPLICATE and self._history.due(
            enc.id, batch.history_at, force=changed
        ):
            document = enc.status if outcome.verdict is Verdict.NEW else None
            batch.history.append(enclosures.status_row(enc.id, message, received_at, document))
        if outcome.verdict is not Verdict.NEW:
            batch.bump(batch.ignored, outcome.verdict.value)
            return
        batch.bump(batch.written, "status")
        self._transition(outcome.change, batch)
        alerts.clock_skew(
            session, enc.id, skew_before, clock_skew(enc.status), batch.events, now=received_at
        )
        force = outcome.significant or outcome.change is not None
        if self._status_events.due(enc.id, batch.status_events, force=force):
            data = {
                "enclosure_id": enc.id,
                "state": enc.state,
                "boot_id": message.boot_id,
                "seq": message.seq,
                "at": message.at,
                "status": enc.status,
            }
            batch.events.append(("enclosure.status", data, enc.id, None))

    def _alive(self, session: Session, enc: EnclosureRow, item: Parsed, batch: _Batch) -> None:
        """Any live message proves the agent is there: move its silence deadline."""
        if item.inbound.retain:
            return
        enclosures.touch(enc, item.inbound.received_at, self._liveness)
        self._transition(enclosures.revive(session, enc, item.inbound.received_at), batch)

    def _ack(
        self, session: Session, enc: EnclosureRow, item: Parsed, ack: Ack, batch: _Batch
    ) -> None:
        self._alive(session, enc, item, batch)
        outcome = commands.apply_ack(session, enc.id, ack, item.inbound.received_at)
        if outcome.record is None:
            batch.bump(batch.ignored, _ACK_IGNORED.get(outcome.ignored or "", "late_ack"))
            if outcome.ignored != "duplicate" and self._throttle.allow(f"ack:{enc.id}") is not None:
                log.info(
                    "ignored %s ack from %s for command %s (%s)",
                    ack.result.value,
                    enc.id,
                    ack.command_id,
                    outcome.ignored,
                    extra=log_ids(enclosure_id=enc.id, command_id=ack.command_id),
                )
            return
        record = outcome.record
        batch.bump(batch.written, "ack")
        if record.settled_at is not None:
            batch.bump(batch.settled, record.state.value)
        batch.events.append(("command.updated", record.model_dump(mode="json"), enc.id, record.id))

    def _event(
        self, session: Session, enc: EnclosureRow, item: Parsed, event: Event, batch: _Batch
    ) -> None:
        self._alive(session, enc, item, batch)
        batch.agent_events.append((enc.id, event, item.inbound.received_at))

    def _store_events(
        self, session: Session, batch: _Batch, encs: Mapping[str, EnclosureRow]
    ) -> None:
        """Insert the batch's agent events in one statement (a session fan-out brings a
        thousand at once), then hand the new ones, in arrival order, to the session driver."""
        if not batch.agent_events:
            return
        rows: dict[tuple[str, str], dict[str, Any]] = {}
        for eid, event, received_at in batch.agent_events:
            rows.setdefault(
                (eid, event.event_id),
                {
                    "enclosure_id": eid,
                    "event_id": event.event_id,
                    "kind": event.kind.value,
                    "session_id": event.session_id,
                    "at": event.at,
                    "received_at": received_at,
                    "data": event.data,
                },
            )
        new = enclosures.insert_new(
            session,
            AgentEvent.__table__,  # type: ignore[arg-type]
            list(rows.values()),
            key=("enclosure_id", "event_id"),
        )
        fresh = []
        for eid, event, received_at in batch.agent_events:
            key = (eid, event.event_id)
            if key in new:
                new.discard(key)  # a second copy in the same batch is a duplicate
                fresh.append((eid, event, received_at))
                batch.bump(batch.written, "events")
            else:
                batch.bump(batch.ignored, "duplicate")
        if fresh:  # recording sessions (controlsvc.bridge.session_driver)
            skews = {
                eid: clock_skew(enclosures.current_status(encs[eid]))
                for eid in {eid for eid, _, _ in fresh}
            }
            session_events.on_events(session, fresh, batch.events, skews=skews)
