"""Enclosures: the registry, state transitions, status ingest, history and its purge.

Plain typed functions over a SQLAlchemy ``Session`` (they flush, never commit) and, where a
message must go out, a ``Publisher``. No Flask, no paho. The bridge feeds ``apply_lifecycle``,
``apply_status``, ``touch`` and ``mark_silent``; the REST API uses the registry functions.
The ingest functions change an ``Enclosure`` or the writer's ``EnclosureRow`` working copy
(``controlsvc.store.enclosure_rows``) alike.
What a message means (derived state, staleness) is decided by the pure functions of
``controlsvc.domain.enclosure_state``, re-exported here.

Every write is idempotent: the bridge may see a message twice, late, or out of order.
Retained messages (replayed when the bridge subscribes) update what they carry but are not
proof of life: they never move ``last_seen_at`` past their own ``at``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Table, delete, or_, select
from sqlalchemy.orm import Session

from controlsvc.domain.enclosure_state import (
    LIVE_STATES,
    Liveness,
    Verdict,
    bounded_at,
    clip_reason,
    clock_skew,
    derive_state,
    judge_lifecycle,
    judge_status,
    status_fault,
    status_signature,
)
from controlsvc.domain.errors import Conflict, NotFound
from controlsvc.domain.publisher import Publisher
from controlsvc.store.bulk_rows import insert_returning
from controlsvc.store.db import utcnow
from controlsvc.store.fleet_summary import status_values
from controlsvc.store.models.enclosures import (
    Enclosure,
    EnclosureRow,
    EnclosureTransition,
    StatusRecord,
)
from controlsvc.store.pagination import (
    Page,
    after_key,
    cursor_datetime,
    cursor_int,
    decode_cursor,
    encode_cursor,
    next_cursor,
)
from schemas.enums import EnclosureState, Lifecycle
from schemas.ids import is_enclosure_id
from schemas.messages import EnclosureStateMessage
from schemas.rest.enclosures import EnclosureCreate, EnclosureOut, EnclosurePatch
from schemas.status import Status
from schemas.topics import Topics

log = logging.getLogger(__name__)

__all__ = [
    "LIVE_STATES",
    "Liveness",
    "Page",
    "StateChange",
    "StatusOutcome",
    "Verdict",
    "apply_lifecycle",
    "apply_status",
    "current_status",
    "derive_state",
    "enclosure_out",
    "get_enclosure",
    "insert_new",
    "judge_lifecycle",
    "judge_status",
    "list_enclosures",
    "list_transitions",
    "new_enclosure_row",
    "mark_silent",
    "purge_status_history",
    "register_enclosure",
    "retire_enclosure",
    "status_fault",
    "status_history",
    "status_signature",
    "touch",
    "update_enclosure",
]

# Purging status history deletes this many rows per statement, so no lock is held for long.
PURGE_CHUNK = 10_000


# -- ingest (the bridge) ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StateChange:
    """One transition of an enclosure's derived state (also stored as an EnclosureTransition)."""

    enclosure_id: str
    previous: EnclosureState
    state: EnclosureState
    reason: str
    at: datetime
    lifecycle: str | None = None

    def event_data(self) -> dict[str, Any]:
        return {
            "enclosure_id": self.enclosure_id,
            "state": self.state.value,
            "previous_state": self.previous.value,
            "reason": self.reason,
            "lifecycle": self.lifecycle,
            "at": self.at,
        }


@dataclass(frozen=True, slots=True)
class StatusOutcome:
    verdict: Verdict
    change: StateChange | None = None
    significant: bool = False  # the user-visible part of the status changed


def insert_new(
    session: Session, table: Table, rows: Sequence[Mapping[str, Any]], *, key: tuple[str, ...]
) -> set[tuple[Any, ...]]:
    """INSERT rows, skipping those that collide with a unique key; the ``key`` values of the
    rows actually inserted (``ON CONFLICT DO NOTHING RETURNING``), in one statement
    (``bulk_rows.insert_returning``: a fan-out's thousand events, or a cancel's two
    thousand, as one parameter)."""
    if not rows:
        return set()
    connection = session.connection()
    return set(insert_returning(connection, table, rows, key, skip_conflicts=True))


def new_enclosure_row(eid: str, now: datetime) -> dict[str, Any]:
    return {
        "id": eid,
        "name": eid,
        "registered_at": now,
        "registered": False,
        "broker_account_managed": False,
        "state": EnclosureState.OFFLINE.value,
    }


def _set_state(
    session: Session,
    enc: Enclosure | EnclosureRow,
    state: EnclosureState,
    reason: str,
    at: datetime,
) -> StateChange | None:
    previous = EnclosureState(enc.state)
    reason = clip_reason(reason)
    if previous is state:
        enc.state_reason = reason
        return None
    enc.state = state.value
    enc.state_reason = reason
    enc.state_changed_at = at
    move = {
        "enclosure_id": enc.id,
        "at": at,
        "from_state": previous.value,
        "to_state": state.value,
        "reason": reason,
    }
    if isinstance(enc, EnclosureRow):
        enc.transitions.append(move)  # stored with the copy (``enclosure_rows.write_back``)
    else:
        session.add(EnclosureTransition(**move))
    return StateChange(enc.id, previous, state, reason, at, enc.lifecycle)


def current_status(enc: Enclosure | EnclosureRow) -> Mapping[str, Any] | None:
    """The latest status if it belongs to the agent's current boot."""
    if enc.status is None or enc.status_boot_id != enc.boot_id:
        return None
    return enc.status


def _refresh(session: Session, enc: Enclosure | EnclosureRow, at: datetime) -> StateChange | None:
    state, reason = derive_state(enc.lifecycle, current_status(enc))
    return _set_state(session, enc, state, reason, at)


def touch(
    enc: Enclosure | EnclosureRow,
    received_at: datetime,
    liveness: Liveness,
    *,
    retained: bool = False,
    sent_at: datetime | None = None,
) -> None:
    """Note that a message from ``enc`` arrived, moving its silence deadline.

    A retained message is old news: it counts as seen at its own ``sent_at`` (never later than
    now), and only if that is newer than what is known.
    """
    seen = received_at if not retained else min(sent_at or received_at, received_at)
    if enc.last_seen_at is not None and seen <= enc.last_seen_at:
        return
    enc.last_seen_at = seen
    if enc.lifecycle in (Lifecycle.LOST.value, Lifecycle.DISCONNECTED.value):
        enc.silent_after = None
    else:
        enc.silent_after = seen + liveness.silence_limit(enc.status_interval_s)


def revive(session: Session, enc: Enclosure | EnclosureRow, at: datetime) -> StateChange | None:
    """Recompute the state after a live message (a silent-lost enclosure is back)."""
    return _refresh(session, enc, at)


def apply_lifecycle(
    session: Session,
    enc: Enclosure | EnclosureRow,
    message: EnclosureStateMessage,
    received_at: datetime,
    liveness: Liveness,
    *,
    retained: bool = False,
) -> tuple[Verdict, StateChange | None]:
    """Apply an agent's ``state`` message (including its Will) to ``enc``."""
    at = bounded_at(message.at, received_at, clock_skew(current_status(enc)))
    verdict = judge_lifecycle(
        enc.boot_id,
        enc.lifecycle,
        enc.lifecycle_at,
        message.boot_id,
        message.state.value,
        at,
        stored_connection=enc.lifecycle_connection,
        connection=message.connection,
    )
    if verdict is not Verdict.NEW:
        return verdict, None
    enc.lifecycle = message.state.value
    enc.lifecycle_at = at
    enc.lifecycle_connection = message.connection
    enc.boot_id = message.boot_id
    enc.agent_version = message.agent_version[:64]
    enc.status_interval_s = message.status_interval_s
    touch(enc, received_at, liveness, retained=retained, sent_at=message.at)
    if message.state in (Lifecycle.LOST, Lifecycle.DISCONNECTED):
        enc.silent_after = None
    return verdict, _refresh(session, enc, received_at)


def apply_status(
    session: Session,
    enc: Enclosure | EnclosureRow,
    message: Status,
    received_at: datetime,
    liveness: Liveness,
    *,
    retained: bool = False,
) -> StatusOutcome:
    """Make ``message`` the latest status of ``enc`` unless it is a duplicate or stale.

    History rows are the caller's (``StatusRecord`` via ``bulk_rows.insert_rows``, which also skips
    duplicates). A status of a new boot seen before that boot's ``state`` message implies the
    agent is connected (it only publishes when it is).
    """
    clock = message.clock
    at = bounded_at(message.at, received_at, clock.offset_s if clock.skewed else None)
    verdict = judge_status(
        enc.status_boot_id,
        enc.status_seq,
        enc.status_at,
        message.boot_id,
        message.seq,
        at,
    )
    if verdict is not Verdict.NEW:
        return StatusOutcome(verdict)
    before = status_signature(enc.state, current_status(enc))
    if message.boot_id != enc.boot_id and (enc.lifecycle_at is None or at > enc.lifecycle_at):
        enc.boot_id = message.boot_id
        enc.lifecycle = Lifecycle.READY.value
        enc.lifecycle_at = at
        enc.lifecycle_connection = None  # a status does not say which connection
        enc.agent_version = message.system.agent_version[:64]
    enc.status = message.model_dump(mode="json")
    for column, value in status_values(enc.status).items():  # the fleet summary's columns
        setattr(enc, column, value)
    enc.status_boot_id = message.boot_id
    enc.status_seq = message.seq
    enc.status_at = at
    enc.status_received_at = received_at
    touch(enc, received_at, liveness, retained=retained, sent_at=message.at)
    change = _refresh(session, enc, received_at)
    after = status_signature(enc.state, current_status(enc))
    return StatusOutcome(verdict, change, significant=before != after)


def status_row(
    eid: str, message: Status, received_at: datetime, document: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A ``status_history`` row for ``bulk_rows.insert_rows``; ``document`` is the message's
    JSON form when the caller has it already (``apply_status`` made it the enclosure's status)."""
    return {
        "enclosure_id": eid,
        "boot_id": message.boot_id,
        "seq": message.seq,
        "at": message.at,
        "received_at": received_at,
        "status": document if document is not None else message.model_dump(mode="json"),
    }


def mark_silent(
    session: Session, now: datetime, liveness: Liveness, *, limit: int = 500
) -> list[StateChange]:
    """Mark ``lost`` every live enclosure whose silence deadline has passed."""
    query = (
        select(Enclosure)
        .where(
            Enclosure.silent_after < now,
            Enclosure.state.in_([s.value for s in LIVE_STATES]),
            Enclosure.retired_at.is_(None),
        )
        .order_by(Enclosure.id)
        .limit(limit)
        .with_for_update(skip_locked=True, key_share=True)
    )
    changes = []
    for enc in session.scalars(query):
        silence = liveness.silence_limit(enc.status_interval_s).total_seconds()
        enc.silent_after = None
        change = _set_state(
            session,
            enc,
            EnclosureState.LOST,
            f"no message for {silence:g} s ({liveness.lost_after_intervals:g} status intervals)",
            now,
        )
        if change is not None:
            changes.append(change)
    return changes


def purge_status_history(session: Session, before: datetime, *, chunk: int = PURGE_CHUNK) -> int:
    """Delete up to ``chunk`` status history rows received before ``before``; how many went.

    Call it until it returns less than ``chunk``, committing in between.
    """
    ids = select(StatusRecord.id).where(StatusRecord.received_at < before).limit(chunk)
    result = session.execute(
        delete(StatusRecord)
        .where(StatusRecord.id.in_(ids.scalar_subquery()))
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


# -- registry (the REST API) --------------------------------------------------------------------


def enclosure_out(enc: Enclosure) -> EnclosureOut:
    """The REST form of ``enc``. A stored status that no longer fits the schema (written by an
    older version) is left out rather than failing the whole answer."""
    try:
        return EnclosureOut.model_validate(enc)
    except ValidationError as exc:
        log.warning("enclosure %s: stored status does not fit the schema: %s", enc.id, exc)
        fields = {
            name: getattr(enc, name)
            for name in EnclosureOut.model_fields
            if name not in ("status", "session")
        }
        return EnclosureOut.model_validate({**fields, "status": None})


def get_enclosure(session: Session, eid: str) -> Enclosure:
    """The enclosure ``eid`` (retired ones too); ``NotFound`` if unknown."""
    enc = session.get(Enclosure, eid) if is_enclosure_id(eid) else None
    if enc is None:
        raise NotFound(f"no enclosure {eid!r}", field="eid")
    return enc


def list_enclosures(
    session: Session,
    *,
    limit: int,
    cursor: str | None = None,
    state: EnclosureState | None = None,
    q: str | None = None,
    include_retired: bool = False,
) -> Page:
    """Enclosures ordered by id, a page at a time; filter by state, search id/name/location."""
    query = select(Enclosure).order_by(Enclosure.id).limit(limit + 1)
    if cursor:
        after = decode_cursor(cursor, "id")["id"]
        query = query.where(Enclosure.id > str(after))
    if state is not None:
        query = query.where(Enclosure.state == state.value)
    if q and q.strip():
        needle = q.strip()
        query = query.where(
            or_(
                Enclosure.id.icontains(needle, autoescape=True),
                Enclosure.name.icontains(needle, autoescape=True),
                Enclosure.location.icontains(needle, autoescape=True),
            )
        )
    if not include_retired:
        query = query.where(Enclosure.retired_at.is_(None))
    rows = list(session.scalars(query))
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, encode_cursor({"id": rows[-1].id}) if more else None)


def register_enclosure(
    session: Session, data: EnclosureCreate, *, now: datetime | None = None
) -> Enclosure:
    """Register an enclosure (409 if it exists and is not retired; a retired one comes back)."""
    now = now or utcnow()
    enc = session.get(Enclosure, data.id)
    if enc is not None and enc.retired_at is None:
        raise Conflict(f"enclosure {data.id!r} already exists (edit it with PATCH)", field="id")
    if enc is None:
        enc = Enclosure(id=data.id, registered_at=now, state=EnclosureState.OFFLINE.value)
        session.add(enc)
    enc.retired_at = None
    enc.registered = True
    enc.name = data.name or data.id
    enc.location = data.location
    enc.notes = data.notes
    enc.expected_online = data.expected_online
    enc.edited_at = now
    session.flush()
    return enc


def update_enclosure(session: Session, eid: str, patch: EnclosurePatch) -> Enclosure:
    """Change name, location, notes or expected_online (those given)."""
    enc = get_enclosure(session, eid)
    if enc.retired_at is not None:
        raise Conflict(f"enclosure {eid!r} is retired (register it again first)", field="eid")
    for field, value in patch.changes().items():
        setattr(enc, field, value)
    enc.edited_at = utcnow()
    session.flush()
    return enc


def retire_enclosure(
    session: Session,
    publisher: Publisher,
    topics: Topics,
    eid: str,
    *,
    now: datetime | None = None,
) -> Enclosure:
    """Retire ``eid``: kept for history, hidden from lists, its messages ignored from now on,
    and its retained ``state``, ``status``, ``desired`` and ``service/fleet`` messages cleared on
    the broker (empty retained payloads). Raises ``BrokerUnavailable`` if the broker cannot
    take them (nothing changes)."""
    now = now or utcnow()
    enc = get_enclosure(session, eid)
    if enc.retired_at is not None:
        raise NotFound(f"enclosure {eid!r} is already retired", field="eid")
    for topic in (topics.state(eid), topics.status(eid), topics.desired(eid), topics.fleet(eid)):
        publisher.publish(topic, b"", qos=1, retain=True)
    enc.retired_at = now
    enc.edited_at = now
    enc.silent_after = None
    _set_state(session, enc, EnclosureState.OFFLINE, "retired", now)
    session.flush()
    return enc


def status_history(
    session: Session,
    eid: str,
    *,
    limit: int,
    cursor: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Page:
    """Statuses of ``eid``, newest first (by the agent's ``at``), a page at a time."""
    get_enclosure(session, eid)
    query = (
        select(StatusRecord)
        .where(StatusRecord.enclosure_id == eid)
        .order_by(StatusRecord.at.desc(), StatusRecord.id.desc())
        .limit(limit + 1)
    )
    if since is not None:
        query = query.where(StatusRecord.at >= since)
    if until is not None:
        query = query.where(StatusRecord.at < until)
    if cursor:
        key = decode_cursor(cursor, "at", "id")
        at, last_id = cursor_datetime(key["at"]), cursor_int(key["id"])
        query = query.where(after_key(StatusRecord.at, StatusRecord.id, at, last_id))
    rows = list(session.scalars(query))
    return Page(rows[:limit], next_cursor(rows, limit, lambda s: {"at": s.at, "id": s.id}))


def list_transitions(session: Session, eid: str, *, limit: int, cursor: str | None = None) -> Page:
    """State transitions of ``eid``, newest first."""
    get_enclosure(session, eid)
    query = (
        select(EnclosureTransition)
        .where(EnclosureTransition.enclosure_id == eid)
        .order_by(EnclosureTransition.id.desc())
        .limit(limit + 1)
    )
    if cursor:
        last_id = cursor_int(decode_cursor(cursor, "id")["id"])
        query = query.where(EnclosureTransition.id < last_id)
    rows = list(session.scalars(query))
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, encode_cursor({"id": rows[-1].id}) if more else None)
