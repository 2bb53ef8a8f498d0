"""The session timer's look at a session's enclosures (``SessionDriver._advance``): it reads
columns and two parts of each status, steps the enclosures whose status moved, and steps
nothing when nothing moved; on both databases. On PostgreSQL a tick reads only the rows that
changed since the previous tick's snapshot (and those whose state a clock moves): nothing when
nothing moved, and a change committed by a transaction that was still open during the
previous look is seen at the next."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import event, select, text

from controlsvc.bridge.inbound import Inbound
from controlsvc.bridge.session_driver import SessionDriver
from controlsvc.bridge.stats import BridgeStats
from controlsvc.bridge.writer import Writer
from controlsvc.domain.enclosure_state import Liveness
from controlsvc.store import sessions
from controlsvc.store.db import utcnow
from controlsvc.store.models.sessions import SessionEnclosure
from fleet_simulator.agent import AgentOptions, SimulatedAgent
from schemas import Desired, DesiredRecording, Status, dump_message
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


@dataclass
class _Recording:
    """A session on three enclosures, enc-a and enc-b recording, enc-c still starting."""

    sid: str
    t0: datetime
    agents: dict[str, SimulatedAgent]
    writer: Writer
    driver: SessionDriver


def _recording(database, settings) -> _Recording:
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
    return _Recording(sid, t0, agents, writer, driver)


class _Looked:
    """The enclosure rows each look of the timer returned (PostgreSQL's look carries the
    snapshot it was taken in, on one extra row when no enclosure changed)."""

    def __init__(self, database) -> None:
        self.rows: list[int] = []
        self._engine = database.engine

    def _seen(self, _conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if "pg_current_snapshot" in statement:
            self.rows.append(sum(1 for row in cursor.fetchall() if row[1] is not None))
            cursor.scroll(0, mode="absolute")  # the driver reads them again

    def __enter__(self) -> _Looked:
        event.listen(self._engine, "after_cursor_execute", self._seen)
        return self

    def __exit__(self, *_: Any) -> None:
        event.remove(self._engine, "after_cursor_execute", self._seen)


def test_the_timer_steps_the_enclosures_whose_status_moved_and_no_others(database, settings):
    run = _recording(database, settings)
    sid, t0, agents, writer, driver = run.sid, run.t0, run.agents, run.writer, run.driver
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


def _postgresql_only(database) -> None:
    if database.engine.dialect.name != "postgresql":
        pytest.skip("SQLite: every tick looks at every enclosure (a small fleet's database)")


def test_a_tick_reads_only_what_moved_since_the_last(database, settings):
    _postgresql_only(database)
    run = _recording(database, settings)
    t = run.t0
    with _Looked(database) as looked:
        run.driver.advance(t)  # the first look reads every enclosure, and steps enc-a, enc-b
        # The next reads nothing but enc-c, which a clock may move (still starting: its start
        # time-out): not the rows the first tick wrote, which are the timer's own.
        run.driver.advance(t + timedelta(milliseconds=500))
        _write(run.writer, [run.agents["enc-a"].status_message(t + timedelta(seconds=1))])
        run.driver.advance(t + timedelta(seconds=1))
        run.driver.advance(t + timedelta(milliseconds=1500))
    assert looked.rows == [3, 1, 2, 1]  # then enc-a's status and enc-c; then enc-c
    assert _progress(database, run.sid)["enc-a"] == ("recording", 1.0, FPS)


def _status_sql(agent: SimulatedAgent, at: datetime) -> dict[str, Any]:
    """What the bridge's writer stores of the agent's status at ``at``."""
    message = Status.model_validate_json(agent.status_message(at).payload)
    return {
        "doc": json.dumps(message.model_dump(mode="json")),
        "seq": message.seq,
        "at": message.at,
        "eid": agent.eid,
    }


def test_a_status_committed_after_a_look_began_is_seen_at_the_next(database, settings):
    """enc-b's status is written by a transaction that is open while the timer looks and
    commits after it: that look cannot see it, and the next must (a watermark of time, or of
    transaction ids below the look's, would pass it by)."""
    _postgresql_only(database)
    run = _recording(database, settings)
    t = run.t0
    run.driver.advance(t)
    run.driver.advance(t + timedelta(milliseconds=500))
    with database.engine.connect() as other:
        other.execute(
            text(
                "UPDATE enclosures SET status = CAST(:doc AS json), status_seq = :seq,"
                " status_at = :at WHERE id = :eid"
            ),
            _status_sql(run.agents["enc-b"], t + timedelta(seconds=3)),
        )
        with database.engine.begin() as later:  # a later transaction commits first, so the
            # look's snapshot names the open one among those in progress below its xmax
            later.execute(text("UPDATE enclosures SET notes = 'later' WHERE id = 'enc-a'"))
        run.driver.advance(t + timedelta(seconds=1))  # looks while that transaction is open
        assert _progress(database, run.sid)["enc-b"][1] == 0.0
        other.commit()
    run.driver.advance(t + timedelta(milliseconds=1500))
    assert _progress(database, run.sid)["enc-b"] == ("recording", 3.0, 3 * FPS)


def test_an_enclosure_the_writer_held_is_stepped_at_the_next_tick(database, settings):
    """The timer skips the rows the writer holds (SKIP LOCKED); one that moved is stepped at a
    later tick even when nothing moves again."""
    _postgresql_only(database)
    run = _recording(database, settings)
    t = run.t0
    run.driver.advance(t)
    run.driver.advance(t + timedelta(milliseconds=500))
    _write(run.writer, [run.agents["enc-a"].status_message(t + timedelta(seconds=2))])
    with database.engine.connect() as writer_holds:
        writer_holds.execute(
            text(
                "SELECT id FROM session_enclosures WHERE session_id = :sid"
                " AND enclosure_id = 'enc-a' FOR UPDATE"
            ),
            {"sid": run.sid},
        )
        run.driver.advance(t + timedelta(seconds=1))
        assert _progress(database, run.sid)["enc-a"][1] == 0.0
        writer_holds.rollback()
    run.driver.advance(t + timedelta(milliseconds=1500))
    assert _progress(database, run.sid)["enc-a"] == ("recording", 2.0, 2 * FPS)
