"""Commands: send one to an enclosure, follow it until it settles.

``POST /api/enclosures/{eid}/commands``: the command is stored ``pending`` and COMMITTED, then
published (QoS 1, waiting for the broker's PUBACK) and marked ``sent``; the answer is ``202``
with the record. If the broker cannot be reached the answer is still ``202`` with the command
``pending``: it is stored, and the bridge publishes it as soon as it can, until its deadline.

``GET /api/commands/{id}?wait=N`` answers as soon as the command is settled, or after ``N`` s;
so does the POST with ``?wait=N``, which spares a client that wants the outcome a second request.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from flask import current_app
from flask_openapi3 import APIBlueprint, Tag
from pydantic import Field, ValidationError
from sqlalchemy.orm import Session

from controlsvc.api import event_feed, tokens
from controlsvc.api.enclosures import READERS, EnclosurePath
from controlsvc.api.errors import problem_responses
from controlsvc.api.pages import page_body
from controlsvc.api.web import db_session, settings
from controlsvc.config.settings import Settings
from controlsvc.domain.publisher import BrokerUnavailable, Publisher
from controlsvc.mqtt import publisher as mqtt_publisher
from controlsvc.mqtt.event_feed import EventFeed
from controlsvc.mqtt.event_streams import CommandWatch
from controlsvc.store import commands
from controlsvc.store.db import utcnow
from controlsvc.store.models.commands import Command
from schemas.base import StrictModel
from schemas.enums import CommandState, Role
from schemas.logs import log_ids
from schemas.rest.common import Page, PageQuery
from schemas.rest.enclosures import CommandCreate, CommandOut, CommandWaitQuery
from schemas.topics import Topics

log = logging.getLogger(__name__)

__all__ = ["CommandPath", "bp", "enclosure_bp", "register"]

BODY_PROBLEMS = (400, 413, 415, 422)
SENDERS = (Role.OPERATOR, Role.ADMIN)
# Without the live event feed, a waiting request re-reads the command this often.
POLL_S = 0.02

bp = APIBlueprint(
    "commands",
    __name__,
    url_prefix="/api/commands",
    abp_tags=[Tag(name="commands", description="Commands sent to enclosures and their outcome")],
    abp_security=tokens.JWT_SECURITY,
    abp_responses=problem_responses(401, 403),
)
enclosure_bp = APIBlueprint(
    "enclosure_commands",
    __name__,
    url_prefix="/api/enclosures",
    abp_tags=[Tag(name="commands")],
    abp_security=tokens.JWT_SECURITY,
    abp_responses=problem_responses(401, 403),
)


class CommandPath(StrictModel):
    id: uuid.UUID = Field(description="Command id.")


CommandPage = Page[CommandOut]


def _out(command: Command) -> dict[str, Any]:
    return commands.command_out(command).model_dump(mode="json")


@enclosure_bp.post(
    "/<string:eid>/commands",
    responses={202: CommandOut, **problem_responses(404, 409, *BODY_PROBLEMS)},
)
@tokens.require_role(*SENDERS)
def send_command(path: EnclosurePath, query: CommandWaitQuery, body: CommandCreate) -> Any:
    """Send a command (operators and admins): 202 with the command record.

    A lost or offline enclosure is accepted (``enclosure_state`` says so) and the command
    expires after ``timeout_s``. 404 for an unknown enclosure, 409 for a retired one. With
    ``wait`` (seconds) the answer comes as soon as the command is settled, or when the wait is
    over, whichever is first (the command is sent either way).
    """
    deadline = time.monotonic() + query.wait
    session = db_session()
    command = _create(session, path.eid, body)
    feed = _connected_feed() if query.wait > 0 else None
    # Watch before it leaves: no answer can come sooner, so none is missed, and the wait
    # starts from the record dispatch returns instead of reading the command again.
    watch = feed.watch_command(command.id) if feed is not None else None
    try:
        record = _dispatch(session, command)
        remaining = deadline - time.monotonic()
        if remaining > 0 and not CommandState(record["state"]).is_terminal:
            if watch is not None:
                record = _wait(session, command.id, deadline, watch, record)
            else:
                record = _wait_settled(session, command.id, remaining)
    finally:
        if watch is not None:
            watch.close()
    return record, 202


def _create(session: Session, eid: str, body: CommandCreate) -> Command:
    """Store the command ``pending`` and commit."""
    command = commands.create_command(
        session,
        eid,
        body.kind,
        body.params,
        body.timeout_s,
        created_by_id=tokens.current_identity().user_id,
        now=utcnow(),
    )
    # Durable before it leaves: a crash after this point loses nothing (the bridge publishes
    # pending commands), so this is the one view that commits in the middle. (No event yet:
    # "sent" follows within a millisecond, and the bridge reports a command it has to publish.)
    session.commit()
    return command


def _dispatch(session: Session, command: Command) -> dict[str, Any]:
    """Publish and mark sent (see the module docstring): the record."""
    publisher: Publisher = mqtt_publisher.publisher_of(current_app)
    try:
        record = commands.dispatch(
            session, publisher, command, Topics(settings().mqtt.topic_prefix)
        )
    except BrokerUnavailable as exc:
        log.warning(
            "command %s to %s stays pending (the bridge will publish it): %s",
            command.id,
            command.enclosure_id,
            exc.detail,
            extra=log_ids(enclosure_id=command.enclosure_id, command_id=command.id),
        )
        return _out(command)
    return record.model_dump(mode="json")


@enclosure_bp.get(
    "/<string:eid>/commands", responses={200: CommandPage, **problem_responses(404, 422)}
)
@tokens.require_role(*READERS)
def list_commands(path: EnclosurePath, query: PageQuery) -> Any:
    """Commands sent to an enclosure, newest first."""
    page = commands.list_commands(db_session(), path.eid, limit=query.limit, cursor=query.cursor)
    return page_body(page, _out)


def _connected_feed() -> EventFeed | None:
    """The process's event feed when it is connected (else the view polls)."""
    try:
        feed = event_feed.get_feed(current_app)
    except Exception as exc:  # the feed is an optimisation: fall back to polling
        log.debug("event feed unavailable: %s", exc)
        return None
    return feed if feed.broker_connected else None


def _terminal_update(data: dict[str, Any] | None) -> dict[str, Any] | None:
    """The command record of a ``command.updated`` event when it is terminal (then it is
    final, and the same record a read would give: it was committed with the change)."""
    if data is None:
        return None
    try:
        command = CommandOut.model_validate(data)
    except ValidationError:  # not a record of this version: read the command instead
        return None
    return command.model_dump(mode="json") if command.state.is_terminal else None


def _wait_settled(session: Session, command_id: uuid.UUID, wait_s: float) -> dict[str, Any]:
    """The command as soon as it is settled, or as it is after ``wait_s``."""
    deadline = time.monotonic() + wait_s
    feed = _connected_feed()
    # Watch first, then read: an update between the read and the wait is not missed.
    watch = feed.watch_command(command_id) if feed is not None else None
    try:
        return _wait(
            session, command_id, deadline, watch, _out(commands.get_command(session, command_id))
        )
    finally:
        if watch is not None:
            watch.close()


def _wait(
    session: Session,
    command_id: uuid.UUID,
    deadline: float,
    watch: CommandWatch | None,
    out: dict[str, Any],
) -> dict[str, Any]:
    """Wait until ``deadline`` for the command, last known as ``out``, to settle: on ``watch``
    (registered before ``out`` was read or committed), else by reading it every ``POLL_S``."""
    while not CommandState(out["state"]).is_terminal:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        session.rollback()  # hold no connection while waiting; read afresh after
        if watch is None:
            time.sleep(min(remaining, POLL_S))
        elif watch.wait(min(remaining, 1.0)):  # 1 s: also notices a feed that went away
            settled = _terminal_update(watch.latest)
            if settled is not None:
                return settled  # no need to read what the event says
            if deadline > time.monotonic():
                continue  # e.g. accepted: nothing to answer yet, so nothing to read
        out = _out(commands.get_command(session, command_id))
    return out


@bp.get("/<id>", responses={200: CommandOut, **problem_responses(404, 422)})
@tokens.require_role(*READERS)
def get_command(path: CommandPath, query: CommandWaitQuery) -> Any:
    """A command; with ``wait`` (seconds), answers as soon as it is settled or when the wait
    is over, whichever comes first."""
    session = db_session()
    if query.wait > 0:
        return _wait_settled(session, path.id, query.wait)
    return _out(commands.get_command(session, path.id))


def register(app: Any, app_settings: Settings) -> None:
    tokens.init_app(app, app_settings)
    mqtt_publisher.init_app(app, app_settings)
    app.register_api(enclosure_bp)
    app.register_api(bp)
