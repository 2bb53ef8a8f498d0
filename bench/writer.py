#!/usr/bin/env python
"""The bridge's ``Writer`` alone: parse and write status batches, no MQTT, no other process.

Shows the database cost of ingest per status (CPU and wall) on a fresh PostgreSQL database
(or SQLite with ``--sqlite``), isolated from the broker and the network thread. Each enclosure
first sends its ``state`` (ready), then statuses round-robin, ``--batch`` per transaction.

    .venv/bin/python bench/writer.py                 # 20,000 statuses, 500 enclosures
    .venv/bin/python bench/writer.py --quick         # 5,000 statuses, 200 enclosures
    .venv/bin/python bench/writer.py --profile out   # also write a cProfile to ``out``

The floor (``floors.insert_floor``): the rows just stored, written again by a bare batched
statement per ``--batch`` rows (``COPY`` on PostgreSQL, ``executemany`` on SQLite) into a copy
of ``status_history`` with its indexes; ``ratio`` = the writer's CPU (and wall) per status over
the floor's per row. No target: the figure shows what Core/``COPY`` writes could gain.

The last line is one JSON object: {"bench": "writer", "cpu_us_per_status": ..., "floor": {...},
"ratio": {...}, "cpu_ms_per_unit": {...}, ...}.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import sys
import tempfile
import time
from collections.abc import Iterator
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
from controlsvc.store import migrate  # noqa: E402
from controlsvc.store.db import Database, utcnow  # noqa: E402
from fleet_simulator.accounts import fleet_ids  # noqa: E402
from fleet_simulator.agent import AgentOptions, SimulatedAgent  # noqa: E402
from schemas.enums import Lifecycle  # noqa: E402
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
        statuses = [
            _inbound(a.status_topic, a.status_message().payload)
            for _ in range(-(-args.messages // len(agents)))
            for a in agents
        ][: args.messages]
        batches = [statuses[i : i + args.batch] for i in range(0, len(statuses), args.batch)]
        profile = cProfile.Profile() if args.profile else None
        cpu0, wall0 = time.process_time(), time.perf_counter()
        if profile:
            profile.enable()
        for batch in batches:
            writer.write(writer.parse(batch))
        if profile:
            profile.disable()
            profile.dump_stats(args.profile)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        with database.engine.connect() as conn:
            stored = conn.execute(text("SELECT count(*) FROM status_history")).scalar_one()
        floor = insert_floor(database.engine, "status_history", stored, batch=args.batch)
        facts = machine(None if args.sqlite else database.engine)  # SHOW is PostgreSQL's
        database.dispose()
    n = len(statuses)
    check_targets("writer", {})
    return {
        "bench": "writer",
        "backend": "sqlite" if args.sqlite else "postgresql",
        "statuses": n,
        "enclosures": args.enclosures,
        "batch": args.batch,
        "history_every_s": args.history_every,
        "stored": stored,
        "cpu_us_per_status": round(cpu / n * 1e6, 1),
        "wall_us_per_status": round(wall / n * 1e6, 1),
        "statuses_per_s": round(n / wall, 1),
        "floor": floor,
        "ratio": {
            "cpu_per_status": ratio(cpu * 1000 / n, floor["cpu_ms_per_row"]),
            "wall_per_status": ratio(wall * 1000 / n, floor["wall_ms_per_row"]),
        },
        # The writer runs in this process: its CPU is this process's.
        "cpu_ms_per_unit": {"unit": "status", **cpu_ms_per_unit(n, writer=cpu)},
        "targets_met": None,
        "machine": facts,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5,000 statuses, 200 enclosures")
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
    args = parser.parse_args()
    if args.quick:
        args.messages, args.enclosures = 5_000, 200
    print_result(run(args))


if __name__ == "__main__":
    main()
