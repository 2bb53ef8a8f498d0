#!/usr/bin/env python
"""The sessions' timer alone: one tick of ``SessionDriver.advance`` over a running session.

A session on ``--enclosures`` enclosures, every one recording, on a fresh PostgreSQL database;
then ``--ticks`` ticks half a second apart (the bridge's pace), and before each the statuses of
``--moved`` enclosures are written by the bridge's ``Writer`` (round-robin: at the contract's
5 s heartbeat a tenth of a fleet reports between two ticks). The figure is the CPU of the tick
in this thread (the timer's work in the bridge), not the writing.

    .venv/bin/python bench/session_timer.py             # 1,000 enclosures, 100 moved, 20 ticks
    .venv/bin/python bench/session_timer.py --quick     # 200 enclosures, 20 moved, 10 ticks
    .venv/bin/python bench/session_timer.py --enclosures 5000 --moved 500
    .venv/bin/python bench/session_timer.py --profile out   # a cProfile of the measured ticks

The floor (``floors.read_floor``): what any timer must at least read each tick, the two parts
of the status (``recording``, ``camera``) of the enclosures that moved, by one bare statement
on a raw DBAPI connection; ``ratio`` = the tick's CPU over the floor's. An idle tick (nothing
moved) is measured too: it is the timer's cost of a fleet that records and says nothing new.

The last line is one JSON object: {"bench": "session_timer", "enclosures": ..., "moved": ...,
"tick_cpu_ms": {"p50": ..., "p95": ...}, "idle_tick_cpu_ms": ..., "floor": {...}, "ratio":
{...}, "cpu_ms_per_unit": {...}, ...}.
"""

from __future__ import annotations

import argparse
import cProfile
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import machine, percentile, print_result  # noqa: E402
from floors import check_targets, cpu_ms_per_unit, ratio, read_floor  # noqa: E402
from sqlalchemy import text  # noqa: E402
from writer import _database, _events_first, _inbound, _session_on  # noqa: E402

from controlsvc.bridge.session_driver import SessionDriver  # noqa: E402
from controlsvc.bridge.stats import BridgeStats  # noqa: E402
from controlsvc.bridge.writer import Writer  # noqa: E402
from controlsvc.config.settings import Settings  # noqa: E402
from controlsvc.domain.enclosure_state import Liveness  # noqa: E402
from controlsvc.ops.gc_policy import tune_gc  # noqa: E402
from controlsvc.store import migrate  # noqa: E402
from controlsvc.store.db import Database, utcnow  # noqa: E402
from fleet_simulator.accounts import fleet_ids  # noqa: E402
from fleet_simulator.agent import AgentOptions, SimulatedAgent  # noqa: E402
from schemas import Desired, dump_message  # noqa: E402
from schemas.enums import Lifecycle  # noqa: E402
from schemas.topics import Topics  # noqa: E402

TICK_S = 0.5  # the bridge's ticker
BATCH = 500  # the writer's batch for the set-up and the statuses
RECORDING_TIMEOUT_S = 120.0
_FLOOR_SQL = (
    "SELECT id, status -> 'recording', status -> 'camera' FROM enclosures WHERE id = ANY(%(ids)s)"
)


def _recording(database: Database, sid: str) -> int:
    with database.engine.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT count(*) FROM session_enclosures"
                    " WHERE session_id = :sid AND state = 'recording'"
                ),
                {"sid": sid},
            ).scalar_one()
        )


def _tick(driver: SessionDriver, profile: cProfile.Profile | None = None) -> float:
    cpu0 = time.thread_time()
    if profile is not None:
        profile.enable()
    driver.advance(utcnow())
    if profile is not None:
        profile.disable()
    return time.thread_time() - cpu0


def run(args: argparse.Namespace) -> dict[str, Any]:
    topics = Topics("jaxmba/v1")
    options = AgentOptions(topics=topics, agent_version="bench", status_interval_s=5.0)
    agents = [SimulatedAgent(eid, options) for eid in fleet_ids(args.enclosures, "tm")]
    with _database(sqlite=False) as url:
        migrate.upgrade(migrate.alembic_config(url.render_as_string(hide_password=False)))
        database = Database(url)
        writer = Writer(database, topics, Liveness(), BridgeStats())
        for batch in (
            [_inbound(a.state_topic, a.state_message(Lifecycle.READY).payload) for a in agents],
            [_inbound(a.status_topic, a.status_message().payload) for a in agents],
        ):
            writer.write(writer.parse(batch))
        wanted = _session_on(agents, database, topics, utcnow())
        started = [
            a.on_desired(dump_message(Desired(version=1, recording=wanted)), utcnow())
            for a in agents
        ]
        for batch in _events_first(started, BATCH):
            writer.write(writer.parse(batch))
        client: Any = SimpleNamespace(topics=topics, notify_events=lambda _id: None)
        client.connected = True
        driver = SessionDriver(
            Settings(), database, client, BridgeStats(), send_mail=lambda _mail: None
        )
        deadline = time.monotonic() + RECORDING_TIMEOUT_S
        while _recording(database, wanted.session_id) < len(agents):
            if time.monotonic() > deadline:
                raise TimeoutError("the session's enclosures never all recorded")
            driver.advance(utcnow())
        tune_gc()  # as the bridge does once it has started
        driver.advance(utcnow())  # what the set-up left
        idle = [_tick(driver) for _ in range(args.ticks)]
        profile = cProfile.Profile() if args.profile else None
        ticks, walls, moved_ids = [], [], []
        next_tick = time.monotonic()
        for k in range(args.ticks):
            moved = [agents[(k * args.moved + i) % len(agents)] for i in range(args.moved)]
            moved_ids.append([a.eid for a in moved])
            statuses = [_inbound(a.status_topic, a.status_message(utcnow()).payload) for a in moved]
            for i in range(0, len(statuses), BATCH):
                writer.write(writer.parse(statuses[i : i + BATCH]))
            next_tick += TICK_S
            time.sleep(max(0.0, next_tick - time.monotonic()))
            wall0 = time.perf_counter()
            ticks.append(_tick(driver, profile))
            walls.append(time.perf_counter() - wall0)
        if profile is not None:
            profile.dump_stats(args.profile)
        floor = read_floor(database.engine, _FLOOR_SQL, args.ticks, ids=moved_ids[-1])
        facts = machine(database.engine)
        database.dispose()
    check_targets("session_timer", {})
    tick_ms = statistics.median(ticks) * 1000
    return {
        "bench": "session_timer",
        "enclosures": args.enclosures,
        "moved": args.moved,
        "ticks": args.ticks,
        "tick_cpu_ms": {
            "p50": round(tick_ms, 2),
            "p95": round(percentile(ticks, 0.95) * 1000, 2),
        },
        "tick_wall_ms": {"p50": round(statistics.median(walls) * 1000, 2)},
        "idle_tick_cpu_ms": round(statistics.median(idle) * 1000, 2),
        "floor": {"kind": "bare SELECT of the moved enclosures' status parts", **floor},
        "ratio": {"tick_cpu": ratio(tick_ms, floor["cpu_ms"])},
        # The timer runs in this thread: its CPU is this thread's, per enclosure that moved.
        "cpu_ms_per_unit": {
            "unit": "enclosure moved",
            **cpu_ms_per_unit(args.moved * args.ticks, timer=sum(ticks)),
        },
        "targets_met": None,
        "machine": facts,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 enclosures, 10 ticks")
    parser.add_argument("--enclosures", type=int, default=1000)
    parser.add_argument("--moved", type=int, help="statuses before each tick (a tenth)")
    parser.add_argument("--ticks", type=int, default=20)
    parser.add_argument("--profile", metavar="FILE", help="a cProfile of the measured ticks")
    args = parser.parse_args()
    if args.quick:
        args.enclosures, args.ticks = 200, 10
    if args.moved is None:
        args.moved = max(1, args.enclosures // 10)
    if not 0 < args.moved <= args.enclosures:
        parser.error("--moved must be between 1 and --enclosures")
    print_result(run(args))


if __name__ == "__main__":
    main()
