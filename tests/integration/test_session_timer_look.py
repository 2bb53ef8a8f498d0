"""The session timer's look at a session's enclosures (``SessionDriver._advance``): it reads
columns and two parts of each status, steps the enclosures whose status moved, and steps
nothing when nothing moved; on both databases."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace
from typing import Any

from sqlalchemy import event, select

from controlsvc.bridge.inbound import Inbound
from controlsvc.bridge.session_driver import SessionDriver
from controlsvc.bridge.stats import BridgeStats
from controlsvc.bridge.writer import Writer
from controlsvc.domain.enclosure_state import Liveness
from controlsvc.store import sessions
from controlsvc.store.db import utcnow
from controlsvc.store.models.sessions import SessionEnclosure
from fleet_simulator.agent import AgentOptions, SimulatedAgent
from schemas import Desired, DesiredRecording, dump_message
from schemas.enums import Lifecycle
from schemas.rest.sessions import SessionCreate, SessionEnclosureIn
from schemas.topics import Topics

TOPICS = Topics("jaxmba/v1")
FPS = 30


def _write(writer: Writer, messages: list[Any]) -> None:
    writer.write(writer.parse([Inbound(m.topic, m.payload, 1, False, utcnow()) for m in messages]))


def _progress(database, sid: str) -> dict[str, tuple[str, float, int]]:
    with database.sessionmaker() as s:
        rows = s.execute(
            select(
                SessionEnclosure.enclosure_id,
                SessionEnclosure.state,
                SessionEnclosure.live_s,
                SessionEnclosure.live_frames,
            ).where(SessionEnclosure.session_id == sid)
        )
        return {eid: (state, live_s, frames) for eid, state, live_s, frames in rows}


def test_the_timer_steps_the_enclosures_whose_status_moved_and_no_others(database, settings):
    options = AgentOptions(topics=TOPICS, agent_version="test", status_interval_s=5.0)
    agents = {eid: SimulatedAgent(eid, options) for eid in ("enc-a", "enc-b", "enc-c")}
    writer = Writer(database, TOPICS, Liveness(), BridgeStats())
    _write(writer, [a.state_message(Lifecycle.READY) for a in agents.values()])
    _write(writer, [a.status_message() for a in agents.values()])
    t0 = utcnow()
    body = SessionCreate(
        name="look",
        duration_s=3600,
        target_fps=FPS,
        enclosures=[SessionEnclosureIn(id=eid, file_prefix="look") for eid in agents],
    )
    with database.sessionmaker() as s:
        rs, _ = sessions.create_session(s, TOPICS, body, now=t0)
        sid = rs.id
        wanted = DesiredRecording(
            session_id=sid, file_prefix="look", start_at=rs.start_at, end_at=rs.end_at
        )
        s.commit()
    document = dump_message(Desired(version=1, recording=wanted))
    for eid in ("enc-a", "enc-b"):  # enc-c never starts: still starting, within its time-out
        _write(writer, agents[eid].on_desired(document, t0).messages)
    client: Any = SimpleNamespace(topics=TOPICS, notify_events=lambda _id: None, connected=True)
    driver = SessionDriver(settings, database, client, BridgeStats(), send_mail=lambda _m: None)
    driver.advance(t0)
    before = _progress(database, sid)
    assert before["enc-c"] == ("starting", 0.0, 0)

    # Two seconds later enc-a reports its frames; enc-b says nothing new.
    _write(writer, [agents["enc-a"].status_message(t0 + timedelta(seconds=2))])
    updates: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE SESSION_ENCLOSURES"):
            updates.append(statement)

    event.listen(database.engine, "before_cursor_execute", seen)
    try:
        driver.advance(t0 + timedelta(seconds=2, milliseconds=100))
        after = _progress(database, sid)
        assert after["enc-a"] == ("recording", 2.0, 2 * FPS)
        assert after["enc-b"] == before["enc-b"]
        assert after["enc-c"] == before["enc-c"]
        assert updates, "enc-a's progress was written"

        updates.clear()  # nothing moved since: nothing to step
        driver.advance(t0 + timedelta(seconds=2, milliseconds=600))
        assert updates == []
        assert _progress(database, sid) == after
    finally:
        event.remove(database.engine, "before_cursor_execute", seen)
