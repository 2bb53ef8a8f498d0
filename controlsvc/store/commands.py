"""Commands: create, publish, settle from acks, time out. No Flask, no paho.

A command's life (``CommandState``) is the state table of ``controlsvc.domain.command_state``::

    pending --publish + PUBACK--> sent --ack accepted--> accepted --ack--> succeeded | failed
       |                            |--ack rejected | succeeded | failed | expired (terminal)
       +------ no terminal answer by deadline_at (+ grace) --> timed_out (the bridge's timer)

Durability: ``create_command`` only writes; the caller COMMITS before ``publish_command`` so
a crash after the API answered 202 loses nothing: the bridge re-publishes ``pending`` commands
still before their deadline (``republishable``). Agents treat a command id seen twice as one
command (QoS 1 is at least once anyway).

Every state change is a conditional UPDATE whose ``WHERE state IN (...)`` lists the states the
table lets that signal change, so the API marking a command ``sent`` and the bridge settling it
from an ack can race in any order without a terminal state ever being overwritten; a late ack
for a settled command is ignored.
"""

from __future__ import annotations

import functools
import logging
import math
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    Row,
    Table,
    bindparam,
    func,
    insert,
    or_,
    select,
    type_coerce,
    update,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from controlsvc.domain import command_state
from controlsvc.domain.command_state import Signal
from controlsvc.domain.errors import Conflict, InvalidInput, NotFound
from controlsvc.domain.publisher import MessageProperties, Publisher
from controlsvc.store import eventlog
from controlsvc.store.db import utcnow
from controlsvc.store.enclosures import get_enclosure
from controlsvc.store.models.commands import Command
from controlsvc.store.models.enclosures import Enclosure
from controlsvc.store.pagination import (
    Page,
    after_key,
    cursor_datetime,
    cursor_uuid,
    decode_cursor,
    next_cursor,
)
from schemas.codec import dump_message
from schemas.commands import Ack, parse_params
from schemas.commands import Command as CommandMessage
from schemas.enums import CommandKind, CommandState
from schemas.errors import MessageError
from schemas.ids import is_enclosure_id
from schemas.rest.enclosures import CommandOut
from schemas.topics import Topics

log = logging.getLogger(__name__)

__all__ = [
    "ACK_GRACE_S",
    "REPUBLISH_AFTER_S",
    "UNSETTLED",
    "AckOutcome",
    "Outgoing",
    "apply_ack",
    "command_out",
    "create_command",
    "dispatch",
    "event_data",
    "get_command",
    "list_commands",
    "mark_sent",
    "outgoing",
    "publish",
    "publish_command",
    "republishable",
    "sent_record",
    "time_out_overdue",
]

# An answer sent just before the deadline is still in flight for a moment: the timer waits this
# much longer before calling a command timed_out.
ACK_GRACE_S = 1.0
# The API publishes within milliseconds of its commit; a command still pending after this long
# was not (the API process died or the broker was down), so the bridge publishes it.
REPUBLISH_AFTER_S = 2.0
UNSETTLED = command_state.UNSETTLED_STATES
CONTENT_TYPE = "application/json"


def _sources(signal: Signal) -> list[str]:
    """The ``state`` values ``signal`` changes: its ``WHERE state IN (...)`` list."""
    return [s.value for s in command_state.sources(signal)]


def _uuid(value: uuid.UUID | str) -> uuid.UUID | None:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def get_command(session: Session, command_id: uuid.UUID | str) -> Command:
    """The command ``command_id``; ``NotFound`` if unknown."""
    key = _uuid(command_id)
    command = session.get(Command, key) if key is not None else None
    if command is None:
        raise NotFound(f"no command {command_id!s}", field="id")
    return command


def command_out(command: Command) -> CommandOut:
    return CommandOut.model_validate(command)


def event_data(command: Command) -> dict[str, Any]:
    """The data of a ``command.updated`` event: the command record."""
    return command_out(command).model_dump(mode="json")


def _enclosure_state(session: Session, eid: str) -> Row[str, datetime | None]:
    """``state`` and ``retired_at`` of ``eid``; ``NotFound`` if unknown. Only these columns: the
    whole row would also parse the enclosure's JSON status document."""
    row = None
    if is_enclosure_id(eid):
        query = select(Enclosure.state, Enclosure.retired_at).where(Enclosure.id == eid)
        row = session.execute(query).one_or_none()
    if row is None:
        raise NotFound(f"no enclosure {eid!r}", field="eid")  # as `get_enclosure` says it
    return row


def create_command(
    session: Session,
    eid: str,
    kind: CommandKind,
    params: Mapping[str, Any],
    timeout_s: float,
    *,
    created_by_id: int | None = None,
    now: datetime | None = None,
) -> Command:
    """A new ``pending`` command for ``eid`` (written; the caller commits before publishing).

    ``NotFound`` for an unknown enclosure, ``Conflict`` for a retired one, ``InvalidInput``
    naming ``params.<field>`` when the params do not fit the kind. A ``lost`` or ``offline``
    enclosure is accepted: its state is kept on the command and the command expires in time.

    One statement: the row is inserted from the enclosure's, when it exists and is not retired,
    copying its state (this is on every command's path: a read of the enclosure and the ORM's
    unit of work took two round trips and most of the time). The ``Command`` returned is not
    attached to the session: it holds what was written.
    """
    now = now or utcnow()
    try:
        typed = parse_params(kind, dict(params))
    except MessageError as exc:
        _check_enclosure(session, eid)  # an unknown or retired enclosure is said first
        field = exc.errors[0][0] if exc.errors else "params"
        raise InvalidInput(exc.reason, field=field) from None
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "kind": kind.value,
        "params": typed.model_dump(mode="json", exclude_unset=True),
        "state": CommandState.PENDING.value,
        "created_at": now,
        "created_by_id": created_by_id,
        "deadline_at": now + timedelta(seconds=timeout_s),
        "publish_count": 0,
    }
    written = None
    if is_enclosure_id(eid):
        dialect = session.get_bind().dialect.name
        written = session.execute(_insert_for(dialect), {**values, "eid": eid}).one_or_none()
    if written is None:
        _check_enclosure(session, eid)
        raise Conflict(f"enclosure {eid!r} is retired", field="eid")  # retired meanwhile
    return Command(**values, enclosure_id=eid, enclosure_state=written.enclosure_state)


def _check_enclosure(session: Session, eid: str) -> None:
    """``NotFound`` for an unknown enclosure, ``Conflict`` for a retired one."""
    enc = _enclosure_state(session, eid)
    if enc.retired_at is not None:
        raise Conflict(f"enclosure {eid!r} is retired", field="eid")


_CREATED = (
    "id",
    "kind",
    "params",
    "state",
    "created_at",
    "created_by_id",
    "deadline_at",
    "publish_count",
)


@functools.lru_cache(maxsize=4)
def _insert_for(dialect: str) -> Any:
    """``INSERT INTO commands (...) SELECT <values>, id, state FROM enclosures WHERE id = :eid
    AND retired_at IS NULL RETURNING enclosure_state``. On PostgreSQL the values are cast to
    their columns' types (a parameter in a SELECT list is text, which PostgreSQL will not
    store in a uuid or json column); SQLite must not see the casts (CAST to JSON or DATETIME
    there is a cast to a number)."""
    table = _TABLE
    enclosures = cast(Table, Enclosure.__table__)

    def value(name: str) -> Any:
        column = table.c[name]
        param = bindparam(name, type_=column.type)
        return (
            sql_cast(param, column.type)
            if dialect == "postgresql"
            else type_coerce(param, column.type)
        )

    source = select(
        *(value(name) for name in _CREATED),
        enclosures.c.id,
        enclosures.c.state,
    ).where(enclosures.c.id == bindparam("eid"), enclosures.c.retired_at.is_(None))
    return (
        insert(table)
        .from_select([*_CREATED, "enclosure_id", "enclosure_state"], source)
        .returning(table.c.enclosure_state)
    )


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message ready for ``Publisher.publish``."""

    topic: str
    payload: bytes
    properties: MessageProperties


def outgoing(command: Command, topics: Topics, *, now: datetime | None = None) -> Outgoing:
    """The ``cmd`` message of ``command``, with MQTT 5 Response Topic, Correlation Data and
    Message Expiry Interval, and the same fields in the JSON (for MQTT 3 tools)."""
    now = now or utcnow()
    ack_topic = topics.ack(command.enclosure_id)
    message = CommandMessage(
        at=now,
        id=command.id,
        kind=CommandKind(command.kind),
        params=command.params,
        expires_at=command.deadline_at,
        response_topic=ack_topic,
        correlation_data=str(command.id),
    )
    remaining = (command.deadline_at - now).total_seconds()
    return Outgoing(
        topic=topics.cmd(command.enclosure_id),
        payload=dump_message(message),
        properties=MessageProperties(
            response_topic=ack_topic,
            correlation_data=str(command.id).encode("ascii"),
            message_expiry_interval=max(1, math.ceil(remaining)),
            content_type=CONTENT_TYPE,
        ),
    )


def mark_sent(
    session: Session, command: Command, now: datetime, *, wait_for_lock: bool = False
) -> bool:
    """Count a publish and move ``pending`` -> ``sent`` (the broker has it); True when this call
    changed the state.

    False when an ack or the timer got there first (the publish still counts), or (PostgreSQL,
    unless ``wait_for_lock``) when the bridge is writing an ack for it right now: the row is
    locked, and rather than wait for the bridge's batch to commit, the ack's state wins (the
    answer still shows ``sent``: the broker has it) and this publish goes uncounted.
    """
    skip_locked = session.get_bind().dialect.name == "postgresql" and not wait_for_lock
    params = {"command_id": command.id, "now": now}
    result = session.execute(_mark_sent(skip_locked, advance=True), params)
    changed = int(getattr(result, "rowcount", 0) or 0) == 1
    if not changed:  # rare: only when the answer beat this call
        session.execute(_mark_sent(skip_locked, advance=False), params)
    sent = command_state.next_state(CommandState(command.state), Signal.PUBLISHED)
    if changed or sent is not None:
        # What the row holds (or is about to hold), without reading it back.
        set_committed_value(command, "state", command_state.target(Signal.PUBLISHED).value)
        set_committed_value(command, "sent_at", command.sent_at or now)
    if changed:
        set_committed_value(command, "publish_count", (command.publish_count or 0) + 1)
    return changed


@functools.lru_cache(maxsize=4)
def _mark_sent(skip_locked: bool, *, advance: bool) -> Any:
    """``mark_sent``'s UPDATE, built once (it is on every command's path, and building it cost
    more CPU than running it): with ``advance``, ``pending`` -> ``sent`` and the count; else
    the count alone. ``skip_locked``: a row the bridge has locked is left alone."""
    table = _TABLE
    target = select(table.c.id).where(table.c.id == bindparam("command_id", type_=table.c.id.type))
    if skip_locked:
        target = target.with_for_update(skip_locked=True)
    values: dict[str, Any] = {"publish_count": table.c.publish_count + 1}
    conditions = [table.c.id.in_(target.scalar_subquery())]
    if advance:
        values["state"] = command_state.target(Signal.PUBLISHED).value
        values["sent_at"] = bindparam("now", type_=table.c.sent_at.type)
        conditions.append(_state_is(_sources(Signal.PUBLISHED)))
    return update(table).where(*conditions).values(values)


def _state_is(states: Collection[str]) -> Any:
    """``state = a OR state = b``: unlike ``IN (...)``, not expanded into the SQL anew at each
    execution, so a statement built once stays as it was compiled."""
    return or_(*(_TABLE.c.state == state for state in states))


def publish(
    publisher: Publisher, command: Command, topics: Topics, *, now: datetime | None = None
) -> bool:
    """Publish ``command`` (QoS 1, waiting for PUBACK); False, and not published, when it is past
    its deadline. Raises ``BrokerUnavailable`` when the broker cannot take it."""
    now = now or utcnow()
    if command.deadline_at <= now:
        return False
    message = outgoing(command, topics, now=now)
    publisher.publish(message.topic, message.payload, qos=1, properties=message.properties)
    return True


def publish_command(
    session: Session,
    publisher: Publisher,
    command: Command,
    topics: Topics,
    *,
    now: datetime | None = None,
    wait_for_lock: bool = False,
) -> bool:
    """Publish ``command`` (QoS 1, waiting for PUBACK) and mark it ``sent`` (``mark_sent``).

    Returns True when it became ``sent``; False when it is past its deadline (not published)
    or already settled. Raises ``BrokerUnavailable`` when the broker cannot take it (the
    command stays ``pending``, and the bridge retries until the deadline).
    """
    if not publish(publisher, command, topics, now=now):
        return False
    return mark_sent(session, command, utcnow(), wait_for_lock=wait_for_lock)


def dispatch(
    session: Session, publisher: Publisher, command: Command, topics: Topics
) -> CommandOut:
    """Publish a committed ``pending`` command, mark it ``sent`` with its ``command.updated``
    event and notify the API processes; the record to answer with (as the POST does).

    The agent's answer may already be on its way to the bridge, whose update of the same row
    waits for this transaction. So the row is touched last, just before the commit: the event
    goes first (as the record will read), then the UPDATE. If the UPDATE changes nothing (the
    ack or the timer got there first), the event is rolled back (and with it the count of this
    publish, which is only informational), and the answer is the command as it now stands.

    On PostgreSQL the commit does not wait for the WAL flush: the command is durable
    ``pending`` already, and if a crash loses ``sent`` the bridge publishes the command again,
    which the agent answers from its journal.

    Past its deadline the command is not published (the bridge times it out). Raises
    ``BrokerUnavailable`` when the broker cannot take it: it stays ``pending``, and the bridge
    publishes it until its deadline.
    """
    if not publish(publisher, command, topics):
        return command_out(command)
    now = utcnow()
    record = sent_record(command, now)
    row = eventlog.record(
        session,
        "command.updated",
        record.model_dump(mode="json"),
        enclosure_id=command.enclosure_id,
        command_id=command.id,
        synchronous_commit=False,
    )
    body = eventlog.event_body(row)
    if not mark_sent(session, command, now):
        session.rollback()
        # The answer is usually known by now: say so. Still pending means the bridge is
        # writing it at this moment; then "sent" is what is known (the broker has it).
        current = command_out(get_command(session, command.id))
        return record if current.state is CommandState.PENDING else current
    session.commit()
    eventlog.notify(publisher, topics.prefix, body["id"], events=[body])
    return record


def sent_record(command: Command, now: datetime) -> CommandOut:
    """The record of ``command`` as it reads once ``mark_sent(session, command, now)`` has
    changed it (so it can be recorded before the row is touched)."""
    return command_out(command).model_copy(
        update={"state": command_state.target(Signal.PUBLISHED), "sent_at": command.sent_at or now}
    )


@dataclass(frozen=True, slots=True)
class AckOutcome:
    """What an ack did: ``record`` (the command as committed) is set when it changed the
    command's state."""

    record: CommandOut | None
    ignored: str | None = None  # unknown | foreign | late | duplicate


# The columns of a command record, read back by the ack's UPDATE.
_TABLE = cast(Table, Command.__table__)
_RECORD_COLUMNS = tuple(_TABLE.c[name] for name in CommandOut.model_fields)


@functools.lru_cache(maxsize=32)
def _ack_update(signal: Signal, with_data: bool) -> Any:
    """The ack's conditional ``UPDATE … RETURNING`` for ``signal``, built once per kind of ack:
    on every command's path, building it (its columns, its ``WHERE``, its cache key) cost as
    much CPU as running it. The source states are plain equalities, not ``IN``: an ``IN`` list
    is expanded into the SQL anew at each execution."""
    table = _TABLE
    new = command_state.target(signal)
    received_at = bindparam("received_at", type_=table.c.sent_at.type)
    values: dict[str, Any] = {
        "state": new.value,
        "detail": bindparam("detail", type_=table.c.detail.type),
        "sent_at": func.coalesce(table.c.sent_at, received_at),
    }
    if with_data:
        values["result"] = bindparam("result", type_=table.c.result.type)
    if new.is_terminal:
        values["settled_at"] = received_at
    return (
        update(table)
        .where(
            table.c.id == bindparam("command_id", type_=table.c.id.type),
            table.c.enclosure_id == bindparam("eid", type_=table.c.enclosure_id.type),
            _state_is(_sources(signal)),
        )
        .values(**values)
        .returning(*_RECORD_COLUMNS)
    )


def apply_ack(session: Session, eid: str, ack: Ack, received_at: datetime) -> AckOutcome:
    """Settle (or advance) a command from the agent's ack.

    Ignored, with the reason: an unknown command id, a command of another enclosure (an
    enclosure can only answer its own), a command already settled (a late ack), and
    ``accepted`` twice.
    """
    # One round trip in the common case: a conditional UPDATE ... RETURNING of the record's
    # columns (Core, not the ORM: this is on every command's path, and nothing here needs the
    # object); only an ack that changes nothing is looked at again, to say why.
    signal = command_state.ack_signal(ack.result)
    params: dict[str, Any] = {
        "command_id": ack.command_id,
        "eid": eid,
        "detail": ack.detail,
        "received_at": received_at,
    }
    if ack.data is not None:
        params["result"] = ack.data
    statement = _ack_update(signal, ack.data is not None)
    row = session.execute(statement, params).one_or_none()
    if row is not None:
        return AckOutcome(CommandOut.model_validate(row))
    current = session.execute(
        select(Command.enclosure_id, Command.state).where(Command.id == ack.command_id)
    ).one_or_none()
    if current is None:
        return AckOutcome(None, "unknown")
    if current.enclosure_id != eid:
        return AckOutcome(None, "foreign")
    # The UPDATE matched nothing, so the state refuses the signal (no transition leads back
    # into a state the signal changes); "late" covers the impossible rest.
    why = command_state.ignored_reason(CommandState(current.state), signal)
    return AckOutcome(None, why or "late")


def _timeout_detail(command: Command) -> str:
    timeout = (command.deadline_at - command.created_at).total_seconds()
    return command_state.timeout_detail(CommandState(command.state), timeout)


def time_out_overdue(
    session: Session, now: datetime, *, grace_s: float = ACK_GRACE_S, limit: int = 500
) -> list[Command]:
    """Mark ``timed_out`` the unsettled commands past their deadline (+ ``grace_s``)."""
    cutoff = now - timedelta(seconds=grace_s)
    overdue = session.scalars(
        select(Command)
        .where(Command.state.in_(_sources(Signal.DEADLINE)), Command.deadline_at < cutoff)
        .order_by(Command.deadline_at)
        .limit(limit)
    ).all()
    settled = []
    for command in overdue:
        result = session.execute(
            update(Command)
            .where(Command.id == command.id, Command.state == command.state)
            .values(
                state=command_state.target(Signal.DEADLINE).value,
                settled_at=now,
                detail=_timeout_detail(command),
            )
            .execution_options(synchronize_session=False)
        )
        if int(getattr(result, "rowcount", 0) or 0) == 1:
            session.refresh(command)
            settled.append(command)
    return settled


def republishable(
    session: Session,
    now: datetime,
    *,
    older_than_s: float = REPUBLISH_AFTER_S,
    limit: int = 500,
) -> list[Command]:
    """``pending`` commands before their deadline that the API did not get to the broker."""
    return list(
        session.scalars(
            select(Command)
            .where(
                Command.state.in_(_sources(Signal.PUBLISHED)),
                Command.deadline_at > now,
                Command.created_at < now - timedelta(seconds=older_than_s),
            )
            .order_by(Command.created_at)
            .limit(limit)
        )
    )


def list_commands(
    session: Session,
    eid: str,
    *,
    limit: int,
    cursor: str | None = None,
    states: Collection[CommandState] | None = None,
) -> Page:
    """Commands of ``eid``, newest first, a page at a time."""
    get_enclosure(session, eid)
    query = (
        select(Command)
        .where(Command.enclosure_id == eid)
        .order_by(Command.created_at.desc(), Command.id.desc())
        .limit(limit + 1)
    )
    if states:
        query = query.where(Command.state.in_([s.value for s in states]))
    if cursor:
        key = decode_cursor(cursor, "at", "id")
        at, last_id = cursor_datetime(key["at"]), cursor_uuid(key["id"])
        query = query.where(after_key(Command.created_at, Command.id, at, last_id))
    rows = list(session.scalars(query))
    return Page(rows[:limit], next_cursor(rows, limit, lambda c: {"at": c.created_at, "id": c.id}))
