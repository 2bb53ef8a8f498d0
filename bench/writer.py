#!/usr/bin/env python
"""The bridge's ``Writer`` alone: parse and write batches (statuses, acks or events), no MQTT.

Shows the database cost of ingest per status (CPU and wall) on a fresh PostgreSQL database
(or SQLite with ``--sqlite``), isolated from the broker and the network thread. Each enclosure
first sends its ``state`` (ready), then statuses round-robin, ``--batch`` per transaction.

    .venv/bin/python bench/writer.py                 # 20,000 statuses, 500 enclosures
    .venv/bin/python bench/writer.py --quick         # 5,000 statuses, 200 enclosures
    .venv/bin/python bench/writer.py --profile out   # also write a cProfile to ``out``
    .venv/bin/python bench/writer.py --kind transition --enclosures 1000 --batch 250
    .venv/bin/python bench/writer.py --kind ack --messages 2000 --enclosures 50
    .venv/bin/python bench/writer.py --kind event --enclosures 1000 --batch 250
    .venv/bin/python bench/writer.py --kind cancel --enclosures 1000 --batch 250

The floor (``floors.insert_floor``): the rows just stored, written again by a bare batched
statement per ``--batch`` rows (``COPY`` on PostgreSQL, ``executemany`` on SQLite) into a copy
of ``status_history`` with its indexes; ``ratio`` = the writer's CPU (and wall) per status over
the floor's per row. No target: the figure shows what Core/``COPY`` writes could gain.

``--kind transition``: statuses that each move their enclosure's derived state (an error
reported, then cleared), ``--batch`` per transaction (floor: the status rows, as for statuses);
``--kind ack``: acks, each settling a command, one per transaction as the bridge writes an ack
that comes alone (its floor: the events they recorded, written again one per transaction);
``--kind event``: every enclosure's ``recording_started`` of a session on all of them, as a
fan-out brings them (floor: those agent events written again, ``--batch`` per transaction);
``--kind cancel``: what a cancel of a session on every enclosure, all recording, brings: each
enclosure's ``segment_closed`` and ``recording_stopped``, then its status that no longer
records, in the order the bridge's batches take them (events first), ``--batch`` per
transaction; figures per enclosure (floor: the agent events written again).

The writer runs with the bridge's collector settings (``controlsvc.ops.gc_policy``) unless
``--default-gc``.

The last line is one JSON object: {"bench": "writer", "kind": "status", "cpu_us_per_status":
..., "floor": {...}, "ratio": {...}, "cpu_ms_per_unit": {...}, ...} (``cpu_us_per_ack`` and so
on for the other kinds).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import machine, print_result  # noqa: E402
from floors import check_targets, cpu_ms_per_unit, insert_floor, ratio  # noqa: E402
from sqlalchemy import text  # noqa: E402
from sqlalchemy.engine import URL  # noqa: E402

from controlsvc.bridge.inbound import Inbound  # noqa: E402
from controlsvc.bridge.stats import BridgeStats  # noqa: E402
from controlsvc.bridge.writer import Writer  # noqa: E402
from controlsvc.domain.enclosure_state import Liveness  # noqa: E402
from controlsvc.ops.gc_policy import tune_gc  # noqa: E402
from controlsvc.store import commands, migrate, sessions  # noqa: E402
from controlsvc.store.db import Database, utcnow  # noqa: E402
from fleet_simulator.accounts import fleet_ids  # noqa: E402
from fleet_simulator.agent import AgentOptions, SimulatedAgent  # noqa: E402
from schemas import (  # noqa: E402
    Ack,
    AckResult,
    CommandKind,
    Desired,
    DesiredRecording,
    Event,
    RecordingStarted,
    dump_message,
)
from schemas.enums import Lifecycle  # noqa: E402
from schemas.rest.sessions import SessionCreate, SessionEnclosureIn  # noqa: E402
from schemas.topics import Topics  # noqa: E402
from tests.support.postgres import create_database, drop_database, postgres_server  # noqa: E402


@contextlib.contextmanager
def _database(sqlite: bool) -> Iterator[URL]:
    if sqlite:
        with tempfile.TemporaryDirectory() as tmp:
            yield URL.create("sqlite", database=f"{tmp}/bench.db")
        return
    with postgres_server() as server:
        url = create_database(server, prefix="jaxmba_bench")
        try:
            yield url
        finally:
            drop_database(url)


def _inbound(topic: str, payload: bytes) -> Inbound:
    return Inbound(topic, payload, 1, False, utcnow())


@dataclass
class _Load:
    """What one kind of message gives the writer: its batches, the table that counts what was
    stored, and the floor's table and rows per transaction."""

    batches: list[list[Inbound]]
    stored_sql: str
    floor_table: str
    floor_batch: int
    floor_per_unit: int = 1  # floor rows per unit (a cancel's enclosure: its two events)


def _statuses(agents: list[SimulatedAgent], args: argparse.Namespace) -> _Load:
    statuses = [
        _inbound(a.status_topic, a.status_message().payload)
        for _ in range(-(-args.messages // len(agents)))
        for a in agents
    ][: args.messages]
    batches = _batches(statuses, args.batch)
    return _Load(batches, "SELECT count(*) FROM status_history", "status_history", args.batch)


def _transitions(agents: list[SimulatedAgent], args: argparse.Namespace) -> _Load:
    """Statuses that each change their enclosure's derived state: an error reported, then
    cleared, in turn (as a fan-out's statuses move a thousand enclosures at once)."""
    statuses = []
    for round_ in range(-(-args.messages // len(agents))):
        for a in agents:
            document = json.loads(a.status_message().payload)
            document["last_error"] = "camera stalled" if round_ % 2 == 0 else None
            statuses.append(_inbound(a.status_topic, json.dumps(document).encode()))
    batches = _batches(statuses[: args.messages], args.batch)
    moved = "SELECT count(*) FROM enclosure_transitions WHERE reason LIKE '%camera stalled%'"
    return _Load(batches, moved, "status_history", args.batch)


def _acks(agents: list[SimulatedAgent], database: Database, topics: Topics, n: int) -> _Load:
    """``succeeded`` for ``n`` commands, one per transaction, as they come: one at a time."""
    acks = []
    with database.sessionmaker() as session:
        for i in range(n):
            agent = agents[i % len(agents)]
            command = commands.create_command(
                session, agent.eid, CommandKind.PING, {}, 3600, now=utcnow()
            )
            ack = Ack(command_id=command.id, result=AckResult.SUCCEEDED, data={"pong": True})
            acks.append(_inbound(topics.ack(agent.eid), dump_message(ack)))
        session.commit()
    settled = "SELECT count(*) FROM commands WHERE state = 'succeeded'"
    return _Load([[ack] for ack in acks], settled, "events", 1)


def _recording_started(
    agents: list[SimulatedAgent], database: Database, topics: Topics, batch: int
) -> _Load:
    """Every enclosure's ``recording_started`` for a session on all of them (a fan-out)."""
    now = utcnow()
    session_id = _session_on(agents, database, topics, now).session_id
    events = [
        _inbound(
            topics.events(a.eid),
            dump_message(
                Event.of(
                    RecordingStarted(file=f"/bench/{a.eid}.mkv", end_at=None, target_fps=30.0),
                    session_id=session_id,
                    at=now,
                )
            ),
        )
        for a in agents
    ]
    batches = _batches(events, batch)
    recording = "SELECT count(*) FROM session_enclosures WHERE state = 'recording'"
    return _Load(batches, recording, "agent_events", batch)


def _canceled(
    agents: list[SimulatedAgent], writer: Writer, database: Database, topics: Topics, batch: int
) -> _Load:
    """A session on every enclosure, started and recording (written here, not measured), then
    canceled: the batches are what the agents answer to the cancel's ``desired`` documents
    (two events each, then a status), events first as the bridge's inbox gives them."""
    now = utcnow()
    wanted = _session_on(agents, database, topics, now)
    started = [
        a.on_desired(dump_message(Desired(version=1, recording=wanted)), now) for a in agents
    ]
    for messages in _events_first(started, batch):
        writer.write(writer.parse(messages))
    with database.sessionmaker() as session:
        sessions.cancel_session(session, topics, wanted.session_id, now=utcnow())
        session.commit()
    stopped = [a.on_desired(dump_message(Desired(version=2)), utcnow()) for a in agents]
    idle = "SELECT count(*) FROM enclosures WHERE state = 'idle'"
    return _Load(_events_first(stopped, batch), idle, "agent_events", batch, 2)


def _session_on(
    agents: list[SimulatedAgent], database: Database, topics: Topics, now: datetime
) -> DesiredRecording:
    """A session on every enclosure, starting ``now`` (committed): what it wants recorded."""
    body = SessionCreate(
        name="bench",
        duration_s=3600,
        enclosures=[SessionEnclosureIn(id=a.eid, file_prefix="bench") for a in agents],
    )
    with database.sessionmaker() as session:
        rs, _ = sessions.create_session(session, topics, body, now=now)
        wanted = DesiredRecording(
            session_id=rs.id, file_prefix="bench", start_at=rs.start_at, end_at=rs.end_at
        )
        session.commit()
    return wanted


def _events_first(reactions: list[Any], batch: int) -> list[list[Inbound]]:
    """The agents' messages in the bridge's order (events before statuses), ``batch`` each."""
    sent = [_inbound(m.topic, m.payload) for r in reactions for m in r.messages]
    status = [m for m in sent if m.topic.endswith("/status")]
    return _batches([m for m in sent if not m.topic.endswith("/status")] + status, batch)


def _batches(messages: list[Inbound], size: int) -> list[list[Inbound]]:
    return [messages[i : i + size] for i in range(0, len(messages), size)]


def run(args: argparse.Namespace) -> dict[str, Any]:
    topics = Topics("jaxmba/v1")
    options = AgentOptions(topics=topics, agent_version="bench", status_interval_s=5.0)
    agents = [SimulatedAgent(eid, options) for eid in fleet_ids(args.enclosures, "wr")]
    with _database(args.sqlite) as url:
        migrate.upgrade(migrate.alembic_config(url.render_as_string(hide_password=False)))
        database = Database(url)
        writer = Writer(
            database, topics, Liveness(), BridgeStats(), history_every_s=args.history_every
        )
        births = [_inbound(a.state_topic, a.state_message(Lifecycle.READY).payload) for a in agents]
        writer.write(writer.parse(births))
        if args.kind == "status":
            load = _statuses(agents, args)
        elif args.kind == "transition":
            load = _transitions(agents, args)
        else:  # the enclosures have a status first, as they would
            writer.write(
                writer.parse([_inbound(a.status_topic, a.status_message().payload) for a in agents])
            )
            if args.kind == "ack":
                load = _acks(agents, database, topics, args.messages)
            elif args.kind == "cancel":
                load = _canceled(agents, writer, database, topics, args.batch)
            else:
                load = _recording_started(agents, database, topics, args.batch)
        messages = sum(len(batch) for batch in load.batches)
        n = len(agents) if args.kind == "cancel" else messages
        if not args.default_gc:
            tune_gc()  # as the bridge does once it has started
        profile = cProfile.Profile() if args.profile else None
        cpu0, wall0 = time.process_time(), time.perf_counter()
        if profile:
            profile.enable()
        for batch in load.batches:
            writer.write(writer.parse(batch))
        if profile:
            profile.disable()
            profile.dump_stats(args.profile)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        with database.engine.connect() as conn:
            stored = conn.execute(text(load.stored_sql)).scalar_one()
        floor = insert_floor(
            database.engine,
            load.floor_table,
            min(stored, n) * load.floor_per_unit,
            batch=load.floor_batch,
        )
        per_unit = {k: v * load.floor_per_unit for k, v in floor.items() if k.endswith("_per_row")}
        facts = machine(None if args.sqlite else database.engine)  # SHOW is PostgreSQL's
        database.dispose()
    cache = getattr(writer, "statuses", None)  # the writer's status documents (absent before)
    check_targets("writer", {})
    kind = args.kind
    plural = "statuses" if kind == "status" else f"{kind}s"
    return {
        "bench": "writer",
        "backend": "sqlite" if args.sqlite else "postgresql",
        "kind": kind,
        plural: n,
        "messages": messages,
        "enclosures": args.enclosures,
        "batch": load.floor_batch,
        "status_cache": None if cache is None else {"hits": cache.hits, "misses": cache.misses},
        "history_every_s": args.history_every,
        "gc": "default" if args.default_gc else "service",
        "stored": stored,
        f"cpu_us_per_{kind}": round(cpu / n * 1e6, 1),
        f"wall_us_per_{kind}": round(wall / n * 1e6, 1),
        f"{plural}_per_s": round(n / wall, 1),
        "floor": floor,
        "ratio": {
            f"cpu_per_{kind}": ratio(cpu * 1000 / n, per_unit["cpu_ms_per_row"]),
            f"wall_per_{kind}": ratio(wall * 1000 / n, per_unit["wall_ms_per_row"]),
        },
        # The writer runs in this process: its CPU is this process's.
        "cpu_ms_per_unit": {"unit": kind, **cpu_ms_per_unit(n, writer=cpu)},
        "targets_met": None,
        "machine": facts,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5,000 statuses, 200 enclosures")
    parser.add_argument(
        "--kind",
        choices=("status", "transition", "ack", "event", "cancel"),
        default="status",
        help="statuses in batches; transitions: statuses each moving the enclosure's state; "
        "acks one per transaction (each settling a command); "
        "events: every enclosure's recording_started of a session on all of them, in batches; "
        "cancel: what a cancel of such a session brings (per enclosure: two events, a status)",
    )
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--enclosures", type=int, default=500)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    parser.add_argument(
        "--history-every",
        type=float,
        default=0.0,
        metavar="S",
        help="[SERVICE] status_history_every_s (0: every status in the history; the floor "
        "then writes only the rows that were stored)",
    )
    parser.add_argument("--profile", metavar="FILE", help="write a cProfile of the writes")
    parser.add_argument(
        "--default-gc",
        action="store_true",
        help="keep CPython's collector settings (by default the writer runs with the "
        "bridge's, controlsvc.ops.gc_policy; figures before 2026-12-05 were taken without)",
    )
    args = parser.parse_args()
    if args.quick:
        args.messages, args.enclosures = 5_000, 200
    print_result(run(args))


if __name__ == "__main__":
    main()
