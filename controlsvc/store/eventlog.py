"""The event log: what `GET /api/events` streams, and the tickets that open a stream.

Writers (the bridge, the API) call `record` inside their own transaction; after the commit the
bridge publishes `{prefix}/service/events` so every API process reads the new rows at once
(`controlsvc.mqtt.event_feed`); its topic and payload (`schemas.messages.ServiceEvents`) are
part of the wire contract in `schemas`. Readers resume with `since(after_id)`: ids only grow,
and on PostgreSQL event writers are serialised until they commit (see `_serialise_writers`), so
a reader that has seen id N has also seen every committed id below N.

A ticket is a random string that lets a browser's EventSource (which cannot send headers) open
one stream: issued to an authenticated user, valid `TICKET_TTL` once, stored as its SHA-256 so
any API worker can redeem it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import secrets
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from pydantic_core import to_json, to_jsonable_python
from sqlalchemy import Table, bindparam, cast, delete, func, insert, or_, select, text, update
from sqlalchemy.orm import Session

from controlsvc.domain.publisher import BrokerUnavailable, Publisher
from controlsvc.store.bulk_rows import insert_returning
from controlsvc.store.db import as_utc, utcnow
from controlsvc.store.models.events import EventRecord, EventTicket
from controlsvc.store.models.users import User
from schemas.base import SCHEMA_VERSION
from schemas.messages import EVENT_KIND_MAX_LENGTH, EVENT_KIND_PATTERN
from schemas.topics import SERVICE_EVENTS_QOS, Topics

# Events older than this are purged by the bridge's housekeeping; a client away longer
# resumes with what is left (its UI reloads the current state anyway).
EVENT_RETENTION = timedelta(days=7)
# One read of the log returns at most this many rows; callers page with the last id.
MAX_BATCH = 500
# A ticket only bridges "fetch a ticket" and "open the EventSource": seconds, not minutes.
TICKET_TTL = timedelta(seconds=30)
# 32 random bytes: as hard to guess as an access token's signature.
TICKET_BYTES = 32
TICKET_MAX_LENGTH = 2 * TICKET_BYTES  # anything longer is not one of ours
# Kinds are short dotted names, e.g. "enclosure.state", "command.updated".
KIND_PATTERN = re.compile(EVENT_KIND_PATTERN)
KIND_MAX_LENGTH = EVENT_KIND_MAX_LENGTH
# pg_advisory_xact_lock key that orders event writers ("jaxmba" in ASCII, then 1).
EVENTS_LOCK_KEY = 0x6A61786D626101
_LOCKED_KEY = "jaxmba.eventlog.locked"
# The notification (`schemas.messages.ServiceEvents`) says "look": QoS 0, not retained (a
# reader that missed one catches up with the next, or with its idle check). When one
# transaction's events fit in this many bytes it carries them too, and the API processes hand
# them out without reading the log.
NOTIFICATION_QOS = SERVICE_EVENTS_QOS
NOTIFICATION_VERSION = SCHEMA_VERSION
NOTIFICATION_EVENTS_MAX_BYTES = 32 * 1024


def notification_topic(prefix: str) -> str:
    """`{prefix}/service/events`: published after a commit that added events."""
    return Topics(prefix).service_events()


class LoggedEvent(Protocol):
    """An event row as ``event_body`` reads it: an ``EventRecord`` or a ``Logged``."""

    @property
    def id(self) -> int: ...
    @property
    def kind(self) -> str: ...
    @property
    def at(self) -> datetime: ...
    @property
    def enclosure_id(self) -> str | None: ...
    @property
    def session_id(self) -> str | None: ...
    @property
    def command_id(self) -> uuid.UUID | None: ...
    @property
    def data(self) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class Logged:
    """An event ``record_many`` just wrote: its id and what was written, no ORM object."""

    id: int
    kind: str
    at: datetime
    enclosure_id: str | None
    session_id: str | None
    command_id: uuid.UUID | None
    data: dict[str, Any]


def event_body(row: LoggedEvent) -> dict[str, Any]:
    """An event as `GET /api/events` streams it and a notification carries it
    (`schemas.messages.LoggedEvent`, built by hand: it is on every event's path). Call it before
    the commit, which expires the row; `at` is UTC as a read of the row would give it."""
    return {
        "id": row.id,
        "kind": row.kind,
        "at": as_utc(row.at).isoformat(),
        "enclosure_id": row.enclosure_id,
        "session_id": row.session_id,
        "command_id": str(row.command_id) if row.command_id else None,
        "data": row.data,
    }


def notification_payload(
    last_id: int, *, at: datetime | None = None, events: Sequence[dict[str, Any]] = ()
) -> bytes:
    """A `ServiceEvents` message (built by hand: it is on every commit's path):
    `{"v":1,"at":"...","last_id":N}` where N is the newest event id just committed; with
    `"events": [...]` (`event_body`s, id order) when given and they fit. Give only the events
    of ONE transaction: no other writer's ids fall between them (see `_serialise_writers`), so
    a reader that has seen every id below the first has seen everything up to the last."""
    body: dict[str, Any] = {
        "v": NOTIFICATION_VERSION,
        "at": (at or utcnow()).isoformat(),
        "last_id": last_id,
    }
    if events:
        carrying = to_json({**body, "events": list(events)})
        if len(carrying) <= NOTIFICATION_EVENTS_MAX_BYTES:
            return carrying
    return json.dumps(body, separators=(",", ":")).encode("utf-8")


def notify(
    publisher: Publisher, prefix: str, last_id: int, *, events: Sequence[dict[str, Any]] = ()
) -> None:
    """Publish the notification after a commit (`notification_payload`), best effort: the
    feeds read the log on their own when notifications stop."""
    with contextlib.suppress(BrokerUnavailable):
        publisher.publish(
            notification_topic(prefix),
            notification_payload(last_id, events=events),
            qos=NOTIFICATION_QOS,
        )


@dataclass(frozen=True, slots=True)
class Notification:
    """A parsed notification: `last_id` None means "read anyway"; `events` as carried (None
    when it carries none, or not in a shape to trust: then the log is read)."""

    last_id: int | None
    events: list[dict[str, Any]] | None = None


def _carried(value: object) -> list[dict[str, Any]] | None:
    if not isinstance(value, list) or not value:
        return None
    previous = 0
    for event in value:
        if not isinstance(event, dict):
            return None
        event_id = event.get("id")
        if not isinstance(event_id, int) or isinstance(event_id, bool) or event_id <= previous:
            return None
        previous = event_id
    return value


def read_notification(payload: bytes | bytearray) -> Notification:
    try:
        body = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return Notification(None)
    if not isinstance(body, dict):
        return Notification(None)
    value = body.get("last_id")
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        return Notification(None)
    return Notification(value, _carried(body.get("events")))


def parse_notification(payload: bytes | bytearray) -> int | None:
    """The `last_id` of a notification; None if it is not one (then read anyway)."""
    return read_notification(payload).last_id


def _serialise_writers(session: Session) -> None:
    """On PostgreSQL, hold a transaction lock from the first event written until the commit.

    Ids come from a sequence when rows are inserted, but become visible at commit; two writers
    could commit ids 11 then 10, and a reader that already passed 11 would never see 10. With
    one event-writing transaction at a time, ids become visible in order. Record events late in
    a transaction and commit promptly: other event writers wait meanwhile. SQLite serialises
    writers by itself.
    """
    if not _lock_pending(session):
        return
    session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": EVENTS_LOCK_KEY})
    session.info[_LOCKED_KEY] = session.get_transaction()


def _lock_pending(session: Session) -> bool:
    """PostgreSQL, and this transaction does not hold the event writers' lock yet."""
    if session.get_bind().dialect.name != "postgresql":
        return False
    transaction = session.get_transaction()
    return transaction is None or session.info.get(_LOCKED_KEY) is not transaction


def check_kind(kind: str) -> str:
    if len(kind) > KIND_MAX_LENGTH or not KIND_PATTERN.match(kind):
        raise ValueError(
            f"event kind {kind[:80]!r} must be dotted lower-case words of at most "
            f"{KIND_MAX_LENGTH} characters, e.g. 'enclosure.state'"
        )
    return kind


def record(
    session: Session,
    kind: str,
    data: dict[str, Any],
    *,
    enclosure_id: str | None = None,
    command_id: uuid.UUID | None = None,
    session_id: str | None = None,
    at: datetime | None = None,
    synchronous_commit: bool = True,
) -> Logged:
    """Add an event to the log (written, so it has its id); the caller commits.

    `data` may hold datetimes, UUIDs, enums and pydantic models: they are stored as JSON.
    ``synchronous_commit=False`` (PostgreSQL): the transaction's commit will not wait for its
    WAL to reach the disk, for a caller that can lose it in a crash (set in the same round trip).
    """
    entry = Entry(kind, data, enclosure_id, command_id, session_id, at)
    return record_many(session, [entry], synchronous_commit=synchronous_commit)[0]


@dataclass(frozen=True, slots=True)
class Entry:
    """One event for ``record_many``."""

    kind: str
    data: dict[str, Any]
    enclosure_id: str | None = None
    command_id: uuid.UUID | None = None
    session_id: str | None = None
    at: datetime | None = None


def record_many(
    session: Session, entries: Sequence[Entry], *, synchronous_commit: bool = True
) -> list[Logged]:
    """``record`` for several events in one statement: the bridge records dozens per batch.

    A Core ``INSERT … RETURNING id`` with the rows as one parameter
    (``bulk_rows.insert_returning``, ids in the rows' order), not ORM objects: the unit of
    work cost more than the INSERT itself, and SQLAlchemy's multi-row INSERT a quarter of a
    cancel's writing."""
    if not entries:
        return []
    for entry in entries:
        check_kind(entry.kind)
    now = utcnow()
    params = [
        {
            "kind": entry.kind,
            "at": entry.at or now,
            "enclosure_id": entry.enclosure_id,
            "session_id": entry.session_id,
            "command_id": entry.command_id,
            "data": to_jsonable_python(entry.data),
        }
        for entry in entries
    ]
    if len(params) == 1 and _lock_pending(session):
        # The lock and the row in one round trip (a command's event, an ack's).
        statement = _LOCK_AND_INSERT_ONE[synchronous_commit]
        ids = [session.execute(statement, params[0]).scalar_one()]
        session.info[_LOCKED_KEY] = session.get_transaction()
    elif _lock_pending(session):
        # The same for several rows (an ack batch's, a fan-out's): the rows are joined to the
        # lock, so their ids are drawn once it is held.
        first = _FIRST[synchronous_commit]
        rows = insert_returning(session.connection(), _TABLE, params, ("id",), first=first)
        ids = [row[0] for row in rows]
        session.info[_LOCKED_KEY] = session.get_transaction()
    else:
        if not synchronous_commit and session.get_bind().dialect.name == "postgresql":
            session.execute(text("SET LOCAL synchronous_commit = off"))
        _serialise_writers(session)
        ids = [row[0] for row in insert_returning(session.connection(), _TABLE, params, ("id",))]
    return [Logged(id=int(i), **row) for i, row in zip(ids, params, strict=True)]


_TABLE: Table = EventRecord.__table__  # type: ignore[assignment]
_COLUMNS = ("kind", "at", "enclosure_id", "session_id", "command_id", "data")


def _lock_and_insert_one(synchronous_commit: bool) -> Any:
    """PostgreSQL: ``_serialise_writers``' lock taken by the INSERT of one row itself, through
    a CTE it selects from (a volatile function: evaluated, never inlined away). The values are
    cast to their columns' types: a parameter in a SELECT list is text, which PostgreSQL will
    not store in a uuid or json column unasked."""
    locks = [func.pg_advisory_xact_lock(EVENTS_LOCK_KEY).label("held")]
    if not synchronous_commit:  # SET LOCAL, as a function a SELECT can call
        locks.append(func.set_config("synchronous_commit", "off", True).label("wal"))
    writers_lock = select(*locks).cte("event_writers_lock")
    values = (
        cast(bindparam(name, type_=_TABLE.c[name].type), _TABLE.c[name].type) for name in _COLUMNS
    )
    return (
        insert(_TABLE)
        .from_select(list(_COLUMNS), select(*values).select_from(writers_lock))
        .returning(_TABLE.c.id)
    )


# By ``synchronous_commit``.
_LOCK_AND_INSERT_ONE = {flag: _lock_and_insert_one(flag) for flag in (True, False)}
# ``bulk_rows.insert_returning``'s ``first`` for several rows, by ``synchronous_commit``.
_FIRST = {
    True: f"pg_advisory_xact_lock({EVENTS_LOCK_KEY:d}) AS held",
    False: f"pg_advisory_xact_lock({EVENTS_LOCK_KEY:d}) AS held,"
    " set_config('synchronous_commit', 'off', true) AS wal",
}


Intent = tuple[str, dict[str, Any], str | None, uuid.UUID | None]
"""An event collected during a transaction and recorded at its end (``record_intents``):
(kind, data, enclosure id, command id). Event writers are serialised until they commit (see
``_serialise_writers``), so every writer records its events last, after its row locks."""


@dataclass(frozen=True, slots=True)
class Recorded:
    """What a transaction added to the log, for the notification after its commit: the newest
    id, and the events as `event_body`s (empty when they span several transactions)."""

    last_id: int
    events: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def of(cls, rows: Sequence[LoggedEvent]) -> Recorded | None:
        """From one transaction's rows; build it before the commit (which expires them)."""
        if not rows:
            return None
        return cls(max(row.id for row in rows), [event_body(row) for row in rows])


def record_intent_rows(session: Session, intents: Sequence[Intent]) -> list[Logged]:
    """Record collected ``intents`` in one flush (``session_id`` taken from the data when it
    names one); the rows, in id order."""
    return record_many(
        session,
        [
            Entry(kind, data, eid, command_id, session_id=data.get("session_id"))
            for kind, data, eid, command_id in intents
        ],
    )


def record_intents(session: Session, intents: Sequence[Intent]) -> int | None:
    """``record_intent_rows``, giving the newest id (None when there were none)."""
    return max((row.id for row in record_intent_rows(session, intents)), default=None)


def since(
    session: Session,
    after_id: int,
    *,
    limit: int = MAX_BATCH,
    kinds: Collection[str] | None = None,
    enclosure_id: str | None = None,
) -> list[EventRecord]:
    """Events with an id above `after_id`, oldest first, at most `limit` (capped at MAX_BATCH)."""
    query = select(EventRecord).where(EventRecord.id > after_id)
    if kinds is not None:
        query = query.where(EventRecord.kind.in_(list(kinds)))
    if enclosure_id is not None:
        query = query.where(EventRecord.enclosure_id == enclosure_id)
    query = query.order_by(EventRecord.id).limit(max(1, min(limit, MAX_BATCH)))
    return list(session.scalars(query))


def last_id(session: Session) -> int:
    """The newest event id (0 when the log is empty)."""
    return int(session.scalar(select(func.max(EventRecord.id))) or 0)


def purge(session: Session, older_than: datetime) -> int:
    """Delete events from before `older_than` (and spent tickets); return how many events went."""
    result = session.execute(delete(EventRecord).where(EventRecord.at < older_than))
    session.execute(
        delete(EventTicket).where(
            or_(EventTicket.expires_at < utcnow(), EventTicket.used_at.is_not(None))
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)


def _hash(ticket: str) -> str:
    return hashlib.sha256(ticket.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class IssuedTicket:
    ticket: str  # the clear text: only the caller gets it, the database keeps its hash
    expires_at: datetime


def issue_ticket(session: Session, user_id: int, *, now: datetime | None = None) -> IssuedTicket:
    """A new single-use ticket for `user_id`, valid for TICKET_TTL."""
    now = now or utcnow()
    ticket = secrets.token_urlsafe(TICKET_BYTES)
    expires_at = now + TICKET_TTL
    session.add(
        EventTicket(
            ticket_hash=_hash(ticket), user_id=user_id, created_at=now, expires_at=expires_at
        )
    )
    session.flush()
    return IssuedTicket(ticket, expires_at)


def redeem_ticket(session: Session, ticket: str, *, now: datetime | None = None) -> User | None:
    """The user a valid ticket was issued to, marking it used; None if unknown, used, expired,
    or its user is disabled (or has no password any more). Atomic: two workers redeeming the
    same ticket cannot both win."""
    if not ticket or len(ticket) > TICKET_MAX_LENGTH:
        return None
    now = now or utcnow()
    digest = _hash(ticket)
    result = session.execute(
        update(EventTicket)
        .where(
            EventTicket.ticket_hash == digest,
            EventTicket.used_at.is_(None),
            EventTicket.expires_at > now,
        )
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if int(getattr(result, "rowcount", 0) or 0) != 1:
        return None
    user = session.scalar(
        select(User)
        .join(EventTicket, EventTicket.user_id == User.id)
        .where(EventTicket.ticket_hash == digest)
    )
    if user is None or user.disabled or not user.password_hash:
        return None
    return user
