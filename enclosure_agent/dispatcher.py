"""Turns a received ``cmd`` message into exactly one final answer on ``ack``.

In order: parse (malformed: ``rejected`` with the reason if an id can be read, else logged);
a command already executed (a QoS 1 redelivery, also after a restart) gets its earlier answer
again and is not executed; past ``expires_at`` or its MQTT message expiry: ``expired``, never
executed; params checked for the kind (``rejected`` naming the field); then the handler from
``HANDLERS``. ``CommandRejected`` becomes ``rejected``; any other exception ``failed``.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from typing import Any

from enclosure_agent.errors import CommandRejected
from enclosure_agent.handlers import HANDLERS, AgentControl, Handler, Outcome
from enclosure_agent.journal import Journal
from enclosure_agent.link import Inbound
from schemas.codec import parse_message
from schemas.commands import Ack, Command, command_id_of
from schemas.enums import AckResult, CommandKind
from schemas.errors import MessageError
from schemas.logs import bind, log_ids

__all__ = ["AckSender", "Dispatcher"]

log = logging.getLogger(__name__)

PAYLOAD_LOG_CHARS = 200  # of a malformed command shown in the log

AckSender = Callable[[Ack, Inbound], None]
Post = Callable[[Callable[[], None]], None]


class Dispatcher:
    """Runs commands on the agent's thread; answers through ``send_ack``.

    ``post`` hands a task back to the agent's thread (for outcomes computed on a worker).
    """

    def __init__(
        self,
        agent: AgentControl,
        journal: Journal,
        send_ack: AckSender,
        post: Post,
        handlers: dict[CommandKind, Handler] | None = None,
    ) -> None:
        self._agent = agent
        self._journal = journal
        self._send_ack = send_ack
        self._post = post
        self._handlers = HANDLERS if handlers is None else handlers
        self._running: set[str] = set()  # accepted, outcome pending

    def receive(self, inbound: Inbound) -> None:
        try:
            command = parse_message(Command, inbound.payload)
        except MessageError as exc:
            self._malformed(inbound, exc)
            return
        with bind(command_id=command.id):  # a field of every log line about it (JSON logs)
            self._handle(command, inbound)

    def _handle(self, command: Command, inbound: Inbound) -> None:
        key = str(command.id)
        previous = self._journal.command(key)
        if previous is not None or key in self._running:
            log.info("command %s (%s) already received; not executed again", key, command.kind)
            if previous is not None:
                self._answer(command.id, inbound, previous.result, previous.detail, remember=False)
            return
        now = self._agent.now()
        if command.is_expired(now) or inbound.expired():
            detail = (
                f"expired at {command.expires_at.isoformat()}, received {now.isoformat()}"
                f" {self._agent.clock_basis()}; not executed"
            )
            log.info("command %s (%s) %s", key, command.kind, detail)
            self._answer(command.id, inbound, AckResult.EXPIRED, detail)
            return
        self._execute(command, inbound)

    def _malformed(self, inbound: Inbound, exc: MessageError) -> None:
        command_id = command_id_of(inbound.payload)
        if command_id is None:
            log.warning(
                "malformed command without a readable id (%s): %r",
                exc,
                inbound.payload[:PAYLOAD_LOG_CHARS],
            )
            return
        log.warning("command %s rejected: %s", command_id, exc)
        self._answer(command_id, inbound, AckResult.REJECTED, str(exc))

    def _execute(self, command: Command, inbound: Inbound) -> None:
        handler = self._handlers.get(command.kind)
        if handler is None:
            self._answer(
                command.id, inbound, AckResult.REJECTED, f"{command.kind} is not supported"
            )
            return
        try:
            params = command.typed_params()
        except MessageError as exc:
            self._answer(command.id, inbound, AckResult.REJECTED, str(exc))
            return
        log.info("command %s: %s %s", command.id, command.kind, command.params or "")
        try:
            outcome = handler(self._agent, params)
        except CommandRejected as exc:
            log.info("command %s (%s) rejected: %s", command.id, command.kind, exc)
            self._answer(command.id, inbound, AckResult.REJECTED, str(exc))
            return
        except Exception as exc:
            log.exception("command %s (%s) failed", command.id, command.kind)
            self._answer(command.id, inbound, AckResult.FAILED, f"{type(exc).__name__}: {exc}")
            return
        if outcome.later is None:
            self._answer(command.id, inbound, outcome.result, outcome.detail, outcome.data)
            return
        self._answer(command.id, inbound, AckResult.ACCEPTED, outcome.detail, remember=False)
        self._running.add(str(command.id))
        self._run_later(command, inbound, outcome.later)

    def _run_later(self, command: Command, inbound: Inbound, later: Callable[[], Outcome]) -> None:
        def work() -> None:
            try:
                with bind(command_id=command.id):
                    final = later()
            except Exception as exc:
                log.exception(
                    "command %s (%s) failed",
                    command.id,
                    command.kind,
                    extra=log_ids(command_id=command.id),
                )
                final = Outcome.failed(f"{type(exc).__name__}: {exc}")
            self._post(lambda: self._finish(command, inbound, final))

        threading.Thread(target=work, name=f"cmd-{command.kind}", daemon=True).start()

    def _finish(self, command: Command, inbound: Inbound, outcome: Outcome) -> None:
        self._running.discard(str(command.id))
        self._answer(command.id, inbound, outcome.result, outcome.detail, outcome.data)

    def _answer(
        self,
        command_id: uuid.UUID,
        inbound: Inbound,
        result: AckResult,
        detail: str | None,
        data: dict[str, Any] | None = None,
        *,
        remember: bool = True,
    ) -> None:
        if remember:
            self._journal.remember_command(str(command_id), result, detail)
        self._send_ack(Ack(command_id=command_id, result=result, detail=detail, data=data), inbound)
