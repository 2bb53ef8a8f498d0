"""One command kind to many enclosures: each command created, committed, then published.

All the commands are created and committed in one transaction first (durable: the bridge
publishes any that stay ``pending``), then each is dispatched as ``POST
/api/enclosures/{eid}/commands`` does (publish, mark ``sent``, commit, notify), so its
``command.updated`` events reach the event stream in the same way. An unknown or retired
enclosure gets a problem in its result item instead of a command; the others go ahead.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.orm import Session

from controlsvc.domain.errors import DomainError
from controlsvc.domain.publisher import BrokerUnavailable, Publisher
from controlsvc.store import commands
from controlsvc.store.models.commands import Command
from schemas.enums import CommandKind
from schemas.logs import log_ids
from schemas.rest.bulk import BulkCommandItem
from schemas.rest.common import Problem
from schemas.topics import Topics

log = logging.getLogger(__name__)

__all__ = ["send_bulk"]


def send_bulk(
    session: Session,
    publisher: Publisher,
    topics: Topics,
    kind: CommandKind,
    enclosure_ids: Sequence[str],
    timeout_s: float,
    *,
    created_by_id: int | None,
    now: datetime,
) -> list[BulkCommandItem]:
    """A result per enclosure, in the order of ``enclosure_ids``."""
    created: dict[str, Command] = {}
    problems: dict[str, Problem] = {}
    for eid in enclosure_ids:
        try:
            created[eid] = commands.create_command(
                session, eid, kind, {}, timeout_s, created_by_id=created_by_id, now=now
            )
        except DomainError as exc:
            problems[eid] = Problem(title=exc.title, status=exc.status, detail=exc.detail)
    session.commit()
    items: list[BulkCommandItem] = []
    broker_down = False
    for eid in enclosure_ids:
        command = created.get(eid)
        if command is None:
            items.append(BulkCommandItem(enclosure_id=eid, problem=problems[eid]))
            continue
        record = commands.command_out(command)
        if not broker_down:  # once the broker refused, the rest stay pending for the bridge
            try:
                record = commands.dispatch(session, publisher, command, topics)
            except BrokerUnavailable as exc:
                broker_down = True
                log.warning(
                    "bulk %s: commands from %s on stay pending (the bridge will publish them): %s",
                    kind.value,
                    eid,
                    exc.detail,
                    extra=log_ids(enclosure_id=eid, command_id=command.id),
                )
        items.append(BulkCommandItem(enclosure_id=eid, command=record))
    return items
