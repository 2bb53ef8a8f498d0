"""Several bridges (docs/bridge.md "Several bridges"): they split the enclosures' messages
through the shared subscription, every write is idempotent, and the timers run in exactly one
of them, the holder of the timers' lease (``controlsvc.bridge.leadership``).

The kill test runs two real bridge processes under load, kills the one running the timers with
SIGKILL and starts it again: nothing is lost, nothing is stored twice, and the timers move to
the other bridge and stay there.
"""

from __future__ import annotations

import itertools
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import URL

from controlsvc.broker import LocalBroker
from controlsvc.store import commands as command_store
from controlsvc.store import leases
from controlsvc.store.db import Database
from controlsvc.store.models.commands import Command
from controlsvc.store.models.enclosures import AgentEvent, Enclosure, StatusRecord
from schemas.enums import CommandKind
from tests.integration.bridge_fixtures import (  # noqa: F401 (fixtures)
    Agent,
    agents,
    bridge_settings,
    broker,
    make_bridge,
)
from tests.support.broker import default_accounts, mosquitto_factory  # noqa: F401
from tests.support.stack import ServiceProcess, service_env
from tests.support.waiting import wait_for

LEASE_S = 3.0  # short, so the takeover after a kill is quick; renewed every second


def _holder(database: Database) -> tuple[str, int] | None:
    with database.sessionmaker() as session:
        lease = leases.view(session, leases.TIMERS)
    return None if lease is None else (lease.holder, lease.term)


def test_two_bridges_split_the_messages_and_one_runs_the_timers(
    settings, database, broker, make_bridge, agents
):
    """In one process: both bridges receive statuses, each is stored once, one leads; a clean
    stop of the leader hands the timers to the other at its next try."""
    first = make_bridge(bridge_settings(settings, broker, bridge_lease_s=LEASE_S))
    wait_for(lambda: first.stats.snapshot()["leads"], message="the first bridge never led")
    second = make_bridge(bridge_settings(settings, broker, bridge_lease_s=LEASE_S))
    fleet = [agents(eid) for eid in ("enc-a", "enc-b", "enc-c", "enc-d")]
    for agent in fleet:
        agent.online()
    for _ in range(50):
        for agent in fleet:
            agent.status()

    def stored() -> int:
        with database.sessionmaker() as session:
            return int(session.scalar(select(func.count()).select_from(StatusRecord)) or 0)

    wait_for(lambda: stored() == 4 * 51, message=lambda: f"{stored()} statuses stored")
    received = [b.stats.snapshot()["received"].get("status", 0) for b in (first, second)]
    assert all(n > 0 for n in received), f"the shared subscription split nothing: {received}"
    assert not second.stats.snapshot()["leads"]
    assert _holder(database) == (first.client.bridge_id, 1)

    first.stop()
    wait_for(lambda: second.stats.snapshot()["leads"], timeout=2 * LEASE_S)
    assert _holder(database) == (second.client.bridge_id, 2)


# -- two bridge processes, one killed ------------------------------------------------------------
FLEET = tuple(f"enc-{i:02d}" for i in range(12))
MUTE = "enc-mute"  # never answers a command: its commands time out, by the timers
PACE_S = 0.02  # each enclosure publishes about 50 messages a second: 600/s in all


@dataclass
class Load:
    """Every enclosure publishing statuses, and an event every tenth message, until stopped."""

    agents: list[Agent]
    stop: threading.Event = field(default_factory=threading.Event)
    events: dict[str, set[str]] = field(default_factory=dict)
    errors: list[BaseException] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for agent in self.agents:
            self.events[agent.eid] = set()
            thread = threading.Thread(target=self._run, args=(agent,), daemon=True)
            thread.start()
            self.threads.append(thread)

    def _run(self, agent: Agent) -> None:
        try:
            for n in itertools.count():
                if self.stop.wait(PACE_S):
                    return
                if n % 10 == 9:
                    event_id = uuid.uuid4().hex
                    agent.event(event_id)
                    self.events[agent.eid].add(event_id)
                else:
                    agent.status()
        except BaseException as exc:  # reported by finish()
            self.errors.append(exc)

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)
        assert not self.errors, self.errors


@pytest.fixture
def pg_database(database: Database) -> Database:
    if database.engine.dialect.name != "postgresql":
        pytest.skip("bridge processes share a PostgreSQL database in production")
    return database


@pytest.fixture
def bridges(
    db_url: URL,
    pg_database: Database,
    mosquitto_factory: Callable[..., LocalBroker],
    tmp_path: Path,
) -> Iterator[tuple[LocalBroker, Callable[[str], ServiceProcess]]]:
    broker = mosquitto_factory(accounts=default_accounts((*FLEET, MUTE)))
    url = db_url.render_as_string(hide_password=False)
    started: list[ServiceProcess] = []

    def start(client_id: str) -> ServiceProcess:
        """A bridge process, once both its connections are subscribed (its log file is
        appended to when the same bridge starts again)."""
        log_file = tmp_path / f"{client_id}.log"
        before = _subscriptions(log_file.read_text()) if log_file.exists() else 0
        env = service_env(
            url,
            broker,
            client_id=client_id,
            profile="test",
            bridge_lease_s=LEASE_S,
            metrics_dir=tmp_path / "metrics",
        )
        process = ServiceProcess(["bridge"], env, log_file)
        started.append(process)
        wait_for(
            lambda: (
                _subscriptions(process.log()) >= before + 2 or process.process.poll() is not None
            ),
            30,
            interval=0.1,
            message=lambda: f"{client_id} never subscribed:\n{process.log()[-3000:]}",
        )
        assert process.process.poll() is None, process.log()[-3000:]
        return process

    try:
        yield broker, start
    finally:
        for process in started:
            process.close()


def _subscriptions(log: str) -> int:
    """Connections of a bridge that subscribed to the shared group (two per bridge)."""
    return log.count("subscribed to the shared group")


@pytest.mark.slow  # ~30 s: two bridge processes, a kill, a lease running out, a restart
def test_kill_9_of_the_bridge_running_the_timers_loses_nothing_and_moves_the_timers(
    pg_database, bridges
):
    database = pg_database
    broker, start = bridges
    one = start("jaxmba_service-1")
    wait_for(lambda: _holder(database) is not None, 3 * LEASE_S, interval=0.1)
    one_id = _holder(database)
    assert one_id is not None
    assert one_id[0].endswith("/jaxmba_service-1-bridge"), one_id
    two = start("jaxmba_service-2")

    fleet = [Agent(broker, eid) for eid in FLEET]
    mute = Agent(broker, MUTE, policy=None)
    try:
        for agent in (*fleet, mute):
            agent.online()
        load = Load(fleet)
        load.start()
        pings: list[str] = []

        def ping(eid: str, timeout_s: float = 60) -> str:
            with database.session() as session:
                return command_store.create_command(
                    session, eid, CommandKind.PING, {}, timeout_s
                ).id

        wait_for(lambda: _enclosures_seen(database) >= len(FLEET) + 1, 20, interval=0.1)
        pings += [ping(eid) for eid in FLEET[:6]]  # published by the timers' re-publishing

        one.kill()  # SIGKILL: no DISCONNECT, no release of the lease, its queue stays
        pings += [ping(eid) for eid in FLEET[6:]]
        wait_for(
            lambda: (_holder(database) or ("", 0))[0].endswith("/jaxmba_service-2-bridge"),
            4 * LEASE_S,
            interval=0.1,
            message=lambda: f"the lease: {_holder(database)}",
        )
        assert _holder(database) == (one_id[0].replace("-1-bridge", "-2-bridge"), 2)
        silent = ping(MUTE, timeout_s=1)
        wait_for(
            lambda: _command_state(database, silent) == "timed_out",
            15,
            interval=0.1,
            message=lambda: f"{silent}: {_command_state(database, silent)}",
        )

        offset = len(one.log())
        one = start("jaxmba_service-1")  # the same client id: it resumes its broker sessions
        load.finish()
        for agent in fleet:  # a last status each, so the latest is known
            agent.status()
        published_events = {(eid, e) for eid, ids in load.events.items() for e in ids}
        wait_for(
            lambda: _stored_events(database) >= published_events,
            30,
            interval=0.2,
            message=lambda: f"{len(published_events - _stored_events(database))} events missing",
        )
        wait_for(
            lambda: all(_command_state(database, c) == "succeeded" for c in pings),
            30,
            interval=0.2,
            message=lambda: str({c: _command_state(database, c) for c in pings}),
        )
        wait_for(
            lambda: _latest_seqs(database) == {a.eid: a.seq - 1 for a in fleet},
            30,
            interval=0.2,
            message=lambda: f"latest: {_latest_seqs(database)}",
        )
        with database.sessionmaker() as session:
            events = session.execute(select(AgentEvent.enclosure_id, AgentEvent.event_id)).all()
            statuses = session.execute(
                select(StatusRecord.enclosure_id, StatusRecord.boot_id, StatusRecord.seq)
            ).all()
        assert len(events) == len(set(events)) == len(published_events)
        assert len(statuses) == len(set(statuses)), "a status stored twice"
        # The restarted bridge found the lease held and left the timers where they were.
        assert _holder(database) == (one_id[0].replace("-1-bridge", "-2-bridge"), 2)
        restarted = one.log()[offset:]
        assert "runs the timers now" not in restarted
        assert "session present: True" in restarted, "the restarted bridge resumed its session"
        assert "Traceback" not in one.log() + two.log()
    finally:
        for agent in (*fleet, mute):
            agent.drop()


def _enclosures_seen(database: Database) -> int:
    with database.sessionmaker() as session:
        return int(session.scalar(select(func.count()).select_from(Enclosure)) or 0)


def _command_state(database: Database, command_id: str) -> str | None:
    with database.sessionmaker() as session:
        return session.scalar(select(Command.state).where(Command.id == command_id))


def _stored_events(database: Database) -> set[tuple[str, str]]:
    with database.sessionmaker() as session:
        rows = session.execute(select(AgentEvent.enclosure_id, AgentEvent.event_id)).all()
    return {(eid, event_id) for eid, event_id in rows}


def _latest_seqs(database: Database) -> dict[str, int | None]:
    with database.sessionmaker() as session:
        rows = session.execute(
            select(Enclosure.id, Enclosure.status_seq).where(Enclosure.id.in_(FLEET))
        ).all()
    return {eid: seq for eid, seq in rows}
