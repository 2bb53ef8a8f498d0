#!/usr/bin/env python
"""Benchmark (d): a session on 1,000 simulated enclosures, start and cancel fan-out.

Sets up its own broker, PostgreSQL database, bridge (child process), API (gunicorn, 2 workers,
child process) and a fleet of simulated enclosures (``fleet_simulator``, which acts on the
retained ``desired`` documents as the agent does). For each run:

- start: from sending ``POST /api/sessions`` (all enclosures, now) until every enclosure of the
  session is ``recording`` in the database (the agents' ``recording_started`` events, applied
  by the bridge);
- cancel: from sending ``POST /api/sessions/{id}/cancel`` until no enclosure reports recording
  any more (their statuses, applied by the bridge).

    .venv/bin/python bench/session_fanout.py            # 1,000 enclosures, 3 runs
    .venv/bin/python bench/session_fanout.py --quick    # 1,000 enclosures, 1 run

The floor (``floors.retained_floor``), after the runs on the same broker: the ``desired``
documents the first measured start published, published again retained by one bare paho client
(QoS 1, until the last PUBACK) on topics nobody reads, three times (the median; ``samples``:
each). ``ratio.start`` / ``ratio.cancel``: each
run's time over the floor's. ``cpu_ms_per_unit``: API and bridge CPU over the measured runs
(start and cancel) per enclosure and run.

The last line is one JSON object: {"bench": "session_fanout", "enclosures": 1000,
"start_s": [...], "cancel_s": [...], "floor": {...}, "ratio": {...}, "cpu_ms_per_unit": {...},
...}. Target: start and cancel each <= 7 x the floor. ``phases`` says
where each run's time went (seconds after the POST): the first and the last ``desired``
document as a subscriber of this process got them (``published_first_s``, ``_last_s``: the
API's part), then, from the rows' own timestamps, the last agent event (the simulator had
every document and reacted), its arrival at the bridge, and the last enclosure the bridge
confirmed; what remains after the arrival is the bridge's.

The fleet runs niced (``_support.start_fleet``), as in the other benchmarks. Before each run
every enclosure must be ``idle`` in the database; if that does not happen, the error says what
they are instead (``lost``: the bridge fell behind their statuses; ``offline`` or missing:
their births never arrived).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx  # noqa: E402
from _support import Stack, add_profile_option, machine, print_result, sample_process, start_fleet  # noqa: E402
from floors import (  # noqa: E402
    Sniffer,
    check_targets,
    cpu_ms_per_unit,
    ratio,
    retained_floor,
    stack_broker,
)
from sqlalchemy import text  # noqa: E402

from fleet_simulator import Fleet, fleet_accounts  # noqa: E402
from schemas.topics import Topics  # noqa: E402

STATUS_INTERVAL_S = 5.0  # the contract's default heartbeat
POLL_S = 0.01  # how often the database is read while waiting
# Start and cancel each <= 7 x publishing the same retained documents: the 1 s over a
# floor of about 0.14 s on the machine of docs/benchmarks.md (calibration 26-28 ms).
TARGET_RATIO = 7.0
SESSION_S = 3600  # long enough to never end during a run
REGISTER_TIMEOUT_S = 120.0
WARMUP_ENCLOSURES = 10  # a first small session warms the API workers (MQTT connection, caches)
# The per-run figures that say where its time went (``one_run``'s keys ending so).
_PHASES = ("published_first_s", "published_last_s", "agents_s", "received_s", "applied_s")


def _wait_count(engine: Any, sql: str, want: Any, timeout: float, **params: Any) -> float:
    """Seconds (monotonic) at which ``sql`` first returned a value satisfying ``want``."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            last = conn.execute(text(sql), params).scalar()
        if want(last):
            return time.monotonic()
        time.sleep(POLL_S)
    raise TimeoutError(f"{sql!r} still {last} after {timeout:g} s")


def _wait_registered(stack: Stack, n: int) -> None:
    """Every enclosure ``idle`` in the database: its birth went through the bridge. On a
    time-out, say what the enclosures are instead (lost: the bridge fell behind their
    statuses; offline or missing: their births never arrived)."""
    try:
        stack.wait_db(
            "SELECT count(*) FROM enclosures WHERE state = 'idle'",
            lambda v: v == n,
            REGISTER_TIMEOUT_S,
            "the bridge registering every enclosure",
        )
    except TimeoutError as exc:
        states = dict(stack.rows("SELECT state, count(*) FROM enclosures GROUP BY state"))
        raise TimeoutError(f"{exc}; enclosures by state: {states}") from None


def one_run(
    client: httpx.Client, engine: Any, ids: list[str], n: int, desired: Sniffer | None = None
) -> dict[str, float]:
    body = {
        "name": f"fan-out {n}",
        "enclosures": [{"id": eid, "file_prefix": eid} for eid in ids],
        "duration_s": SESSION_S,
        "target_fps": 30,
    }
    _wait_count(  # every enclosure connected and idle (after the previous run's cancel)
        engine,
        "SELECT count(*) FROM enclosures WHERE state = 'idle'",
        lambda v: v >= len(ids),
        120,
    )
    started = time.monotonic()
    wall = time.time()
    response = client.post("/api/sessions", json=body)
    answered = time.monotonic()
    if response.status_code != 201:
        raise RuntimeError(f"POST /api/sessions: {response.status_code} {response.text[:500]}")
    sid = response.json()["id"]
    recording = _wait_count(
        engine,
        "SELECT count(*) FROM session_enclosures WHERE session_id = :sid AND state = 'recording'",
        lambda v: v == len(ids),
        60,
        sid=sid,
    )
    start_phases = _phases(engine, sid, "recording_started", wall)
    cancel_started = time.monotonic()
    wall = time.time()
    response = client.post(f"/api/sessions/{sid}/cancel")
    cancel_answered = time.monotonic()
    response.raise_for_status()
    stopped = _wait_count(
        engine,
        "SELECT count(*) FROM enclosures WHERE state = 'recording'",
        lambda v: v == 0,
        60,
    )
    published = {}
    if desired is not None:  # the documents as a subscriber got them: first and last
        for phase, since, until in (
            ("start", started, cancel_started),
            ("cancel", cancel_started, stopped),
        ):
            times = desired.arrivals(since, until)
            if times:
                published[f"{phase}_published_first_s"] = round(times[0] - since, 3)
                published[f"{phase}_published_last_s"] = round(times[-1] - since, 3)
    return {
        **published,
        "start_s": recording - started,
        "start_post_s": answered - started,
        "cancel_s": stopped - cancel_started,
        "cancel_post_s": cancel_answered - cancel_started,
        **{f"start_{k}": v for k, v in start_phases.items()},
        **{f"cancel_{k}": v for k, v in _phases(engine, sid, "recording_stopped", wall).items()},
    }


def _phases(engine: Any, sid: str, kind: str, wall: float) -> dict[str, float]:
    """Where a fan-out's time went, from the rows' own timestamps (seconds after the POST was
    sent; the agents run on this machine, so their clock is this one): the last agent event
    of ``kind`` (``agents_s``: the simulator has every document and reacted), its arrival at
    the bridge (``received_s``) and, for a start, the last confirmation (``applied_s``); for a
    cancel, the arrival at the bridge of the last status that moved one of the session's
    enclosures off ``recording`` (``state_received_s``, the transition's time: what the
    cancel's end waits for, once written)."""
    sql = text(
        "SELECT max(at), max(received_at) FROM agent_events WHERE session_id = :sid AND kind = :k"
    )
    with engine.connect() as conn:
        at, received = conn.execute(sql, {"sid": sid, "k": kind}).one()
        confirmed = conn.execute(
            text("SELECT max(confirmed_at) FROM session_enclosures WHERE session_id = :sid"),
            {"sid": sid},
        ).scalar()

    def after(value: Any) -> float:
        return round(value.timestamp() - wall, 3) if value is not None else float("nan")

    out = {"agents_s": after(at), "received_s": after(received)}
    if kind == "recording_started":
        out["applied_s"] = after(confirmed)
    else:  # a cancel ends when every enclosure's status says it stopped
        with engine.connect() as conn:
            moved = conn.execute(
                text(
                    "SELECT max(e.state_changed_at) FROM enclosures e JOIN session_enclosures se"
                    " ON se.enclosure_id = e.id WHERE se.session_id = :sid"
                ),
                {"sid": sid},
            ).scalar()
        out["state_received_s"] = after(moved)
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    accounts = fleet_accounts(args.enclosures, "fan")
    runs: list[dict[str, float]] = []
    with Stack(status_interval_s=STATUS_INTERVAL_S, keep=args.keep) as stack:
        stack.broker(accounts)
        engine = stack.database()
        facts = machine(engine)
        stack.bridge()
        fleet = Fleet(
            stack.broker_.host,  # type: ignore[union-attr]
            stack.broker_.port,  # type: ignore[union-attr]
            accounts,
            status_interval_s=STATUS_INTERVAL_S,
        )
        t0 = time.monotonic()
        try:
            connect_s = start_fleet(fleet, timeout=120)  # niced: the fleet stands for machines
            _wait_registered(stack, args.enclosures)
            registered_s = time.monotonic() - t0
            url = stack.api()
            headers = {"Authorization": f"Bearer {stack.token}"}
            assert stack.bridge_ is not None
            assert stack.api_ is not None
            floor_broker = stack_broker(stack)
            cpu_s = {"api": 0.0, "bridge": 0.0}
            fleet_cpu_s = 0.0  # this process: the simulated enclosures' loops (and the polls)
            with (
                httpx.Client(base_url=url, headers=headers, timeout=60) as client,
                sample_process(stack.bridge_.pid) as bridge_usage,
            ):
                # Warm-up, not measured: the API workers' first MQTT connection, caches.
                one_run(client, engine, fleet.ids[:WARMUP_ENCLOSURES], -1)
                # The first measured start's documents are the floor's messages.
                with Sniffer(
                    floor_broker, Topics(floor_broker.prefix).enc_filter("desired"), first=True
                ) as desired:
                    for i in range(args.runs):
                        own = time.process_time()
                        with (
                            sample_process(stack.bridge_.pid) as bridge_run,
                            sample_process(stack.api_.pid) as api_run,
                        ):
                            runs.append(one_run(client, engine, fleet.ids, i, desired))
                        fleet_cpu_s += time.process_time() - own
                        cpu_s["api"] += api_run.cores * api_run.seconds
                        cpu_s["bridge"] += bridge_run.cores * bridge_run.seconds
                    desired.wait(args.enclosures)
                    documents = list(desired.payloads.values())
            floor = retained_floor(floor_broker, documents)
            counters = fleet.counters()
        finally:
            fleet.stop()
    start = [round(r["start_s"], 3) for r in runs]
    cancel = [round(r["cancel_s"], 3) for r in runs]
    targets = {
        f"start <= {TARGET_RATIO:g} x floor": max(start) <= TARGET_RATIO * floor["seconds"],
        f"cancel <= {TARGET_RATIO:g} x floor": max(cancel) <= TARGET_RATIO * floor["seconds"],
    }
    return {
        "bench": "session_fanout",
        "enclosures": args.enclosures,
        "runs": len(runs),
        "start_s": start,
        "start_post_s": [round(r["start_post_s"], 3) for r in runs],
        "cancel_s": cancel,
        "cancel_post_s": [round(r["cancel_post_s"], 3) for r in runs],
        # seconds after each POST: the documents reaching a subscriber, the last agent event,
        # its arrival at the bridge, the last applied
        "phases": [{k: v for k, v in r.items() if k.endswith(_PHASES)} for r in runs],
        "connect_s": round(connect_s, 2),
        "registered_s": round(registered_s, 2),
        "start_max_s": max(start),
        "cancel_max_s": max(cancel),
        "floor": floor,
        "ratio": {
            "start": [ratio(v, floor["seconds"]) for v in start],
            "cancel": [ratio(v, floor["seconds"]) for v in cancel],
        },
        "cpu_ms_per_unit": {
            "unit": "enclosure per run (start and cancel)",
            **cpu_ms_per_unit(args.enclosures * len(runs), **cpu_s),
        },
        # The simulated enclosures share these cores (and one GIL): what they cost, per
        # enclosure and run, is time the service's processes could not have.
        "fleet_cpu_ms_per_enclosure": round(fleet_cpu_s * 1000 / (args.enclosures * len(runs)), 3),
        "targets": targets,
        "targets_met": check_targets("session_fanout", targets),
        **bridge_usage.figures("bridge"),
        "fleet_errors": counters.errors,
        "machine": facts,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one run")
    parser.add_argument("--enclosures", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    add_profile_option(parser)
    args = parser.parse_args()
    if args.quick:
        args.runs = 1
    print_result(run(args))


if __name__ == "__main__":
    main()
