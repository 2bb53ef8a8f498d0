#!/usr/bin/env python
"""Benchmark (d): a session on 1,000 simulated enclosures, start and cancel fan-out.

Sets up its own broker, PostgreSQL database, bridge (child process), API (gunicorn, 2 workers,
child process) and a fleet of simulated enclosures (``controlsvc.simulator``, which acts on the
retained ``desired`` documents as the agent does). For each run:

- start: from sending ``POST /api/sessions`` (all enclosures, now) until every enclosure of the
  session is ``recording`` in the database (the agents' ``recording_started`` events, applied
  by the bridge);
- cancel: from sending ``POST /api/sessions/{id}/cancel`` until no enclosure reports recording
  any more (their statuses, applied by the bridge).

    .venv/bin/python bench/session_fanout.py            # 1,000 enclosures, 3 runs
    .venv/bin/python bench/session_fanout.py --quick    # 1,000 enclosures, 1 run

The last line is one JSON object: {"bench": "session_fanout", "enclosures": 1000,
"start_s": [...], "cancel_s": [...], ...}. Target: all recording within 2 s.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx  # noqa: E402
from _support import Stack, machine, print_result, sample_process  # noqa: E402
from sqlalchemy import text  # noqa: E402

from controlsvc.simulator import Fleet, fleet_accounts  # noqa: E402

STATUS_INTERVAL_S = 5.0  # the contract's default heartbeat
POLL_S = 0.01  # how often the database is read while waiting
TARGET_S = 2.0
SESSION_S = 3600  # long enough to never end during a run
WARMUP_ENCLOSURES = 10  # a first small session warms the API workers (MQTT connection, caches)


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


def one_run(client: httpx.Client, engine: Any, ids: list[str], n: int) -> dict[str, float]:
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
    cancel_started = time.monotonic()
    response = client.post(f"/api/sessions/{sid}/cancel")
    cancel_answered = time.monotonic()
    response.raise_for_status()
    stopped = _wait_count(
        engine,
        "SELECT count(*) FROM enclosures WHERE state = 'recording'",
        lambda v: v == 0,
        60,
    )
    return {
        "start_s": recording - started,
        "start_post_s": answered - started,
        "cancel_s": stopped - cancel_started,
        "cancel_post_s": cancel_answered - cancel_started,
    }


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
        fleet.start(timeout=120)
        try:
            stack.wait_db(
                "SELECT count(*) FROM enclosures WHERE state = 'idle'",
                lambda n: n == args.enclosures,
                120,
                "the bridge registering every enclosure",
            )
            url = stack.api()
            headers = {"Authorization": f"Bearer {stack.token}"}
            assert stack.bridge_ is not None
            with (
                httpx.Client(base_url=url, headers=headers, timeout=60) as client,
                sample_process(stack.bridge_.pid) as bridge_usage,
            ):
                # Warm-up, not measured: the API workers' first MQTT connection, caches.
                one_run(client, engine, fleet.ids[:WARMUP_ENCLOSURES], -1)
                for i in range(args.runs):
                    runs.append(one_run(client, engine, fleet.ids, i))
            counters = fleet.counters()
        finally:
            fleet.stop()
    start = [round(r["start_s"], 3) for r in runs]
    cancel = [round(r["cancel_s"], 3) for r in runs]
    return {
        "bench": "session_fanout",
        "enclosures": args.enclosures,
        "runs": len(runs),
        "start_s": start,
        "start_post_s": [round(r["start_post_s"], 3) for r in runs],
        "cancel_s": cancel,
        "cancel_post_s": [round(r["cancel_post_s"], 3) for r in runs],
        "start_max_s": max(start),
        "cancel_max_s": max(cancel),
        "target_s": TARGET_S,
        "targets_met": max(start) <= TARGET_S,
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
    args = parser.parse_args()
    if args.quick:
        args.runs = 1
    print_result(run(args))


if __name__ == "__main__":
    main()
