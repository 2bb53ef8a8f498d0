"""An ack or an agent event moves an enclosure's "last seen" to the second
(``writer.SEEN_RESOLUTION``): one a moment after the last message writes no enclosure row,
one later moves it and the silence deadline; statuses always do. Both databases."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import event

from controlsvc.bridge.inbound import Inbound
from controlsvc.bridge.stats import BridgeStats
from controlsvc.bridge.writer import SEEN_RESOLUTION, Writer
from controlsvc.domain.enclosure_state import Liveness
from controlsvc.store import commands
from controlsvc.store.db import utcnow
from controlsvc.store.models.enclosures import Enclosure
from fleet_simulator.agent import AgentOptions, SimulatedAgent
from schemas import Ack, AckResult, CommandKind, dump_message
from schemas.enums import Lifecycle
from schemas.topics import Topics

TOPICS = Topics("jaxmba/v1")


def _seen(database, eid: str) -> tuple[Any, Any]:
    with database.sessionmaker() as s:
        enc = s.get(Enclosure, eid)
        assert enc is not None
        return enc.last_seen_at, enc.silent_after


def test_an_ack_a_moment_after_the_last_message_writes_no_enclosure_row(database):
    agent = SimulatedAgent(
        "enc-a", AgentOptions(topics=TOPICS, agent_version="test", status_interval_s=5.0)
    )
    writer = Writer(database, TOPICS, Liveness(), BridgeStats())
    t0 = utcnow()

    def write(topic: str, payload: bytes, at: Any) -> None:
        writer.write(writer.parse([Inbound(topic, payload, 1, False, at)]))

    write(agent.state_topic, agent.state_message(Lifecycle.READY).payload, t0)
    write(agent.status_topic, agent.status_message().payload, t0)
    seen, silent = _seen(database, "enc-a")
    assert seen == t0

    def ack(at: Any) -> None:
        with database.sessionmaker() as s:
            command = commands.create_command(s, "enc-a", CommandKind.PING, {}, 60, now=at)
            s.commit()
        body = Ack(command_id=command.id, result=AckResult.SUCCEEDED, data={"pong": True})
        write(TOPICS.ack("enc-a"), dump_message(body), at)

    updates: list[str] = []

    def listen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE ENCLOSURES"):
            updates.append(statement)

    event.listen(database.engine, "before_cursor_execute", listen)
    try:
        ack(t0 + timedelta(milliseconds=500))
        assert updates == []
        assert _seen(database, "enc-a") == (seen, silent)

        later = t0 + SEEN_RESOLUTION + timedelta(milliseconds=1)
        ack(later)
        assert updates, "the enclosure's row was written"
        seen_now, silent_now = _seen(database, "enc-a")
        assert seen_now == later
        assert silent_now > silent
    finally:
        event.remove(database.engine, "before_cursor_execute", listen)
