#!/usr/bin/env python
"""Benchmark (a): a REST command until the agent's answer is visible through the API.

Sets up its own broker, PostgreSQL database, bridge (child process), API (gunicorn, 2 workers,
child process) and a fleet of simulated enclosures, then for each command: ``POST
/api/enclosures/{eid}/commands?wait=5`` (kind ``ping``), which answers once the command has
settled, then ``GET /api/commands/{id}?wait=5`` until it is terminal if it was not yet
(``--post-then-get``: a POST without ``wait`` first, as clients did before it existed). The
figure is the time from sending the POST to receiving the terminal state (``succeeded``), one
command at a time unless ``--concurrency`` says otherwise, spread round-robin over the
enclosures.

    .venv/bin/python bench/command_rtt.py            # 1,000 commands, 200 enclosures
    .venv/bin/python bench/command_rtt.py --quick    # 200 commands, under a minute

The last line is one JSON object: {"bench": "command_rtt", "n": 1000, "enclosures": 200,
"p50_ms": ..., "p95_ms": ..., "p99_ms": ..., "floor": {...}, "ratio": {...},
"cpu_ms_per_unit": {...}}. The floor is a bare paho QoS 1 request/response echo through the same
broker with the payload sizes of the commands and acks just measured (``floors.echo_floor``),
run while the fleet and the service are still up. Targets: p50 <= 3 x the floor's p50, p99 <=
6 x the floor's p50.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx  # noqa: E402
from _support import (  # noqa: E402
    Stack,
    add_profile_option,
    machine,
    percentile,
    print_result,
    sample_process,
    start_fleet,
)
from floors import (  # noqa: E402
    Broker,
    Sniffer,
    check_targets,
    cpu_ms_per_unit,
    disconnect,
    echo_floor,
    ratio,
    stack_broker,
    subscribe,
)

from fleet_simulator import Fleet, fleet_accounts  # noqa: E402
from schemas.topics import Topics  # noqa: E402

TERMINAL = {"rejected", "succeeded", "failed", "expired", "timed_out"}
WAIT_S = 5  # the ?wait= of each GET
WARMUP = 20  # commands sent first and not measured (connections, caches, JIT-free but cold)
STATUS_INTERVAL_S = 5.0  # the contract's default heartbeat: 40 statuses/s in the background
TARGET_P50_RATIO = 3.0  # p50 <= 3 x the floor's p50 (issue 18)
TARGET_P99_RATIO = 6.0  # p99 <= 6 x the floor's p50


def _ts(value: str | None) -> float | None:
    return datetime.fromisoformat(value).timestamp() if value else None


class Notifications:
    """When each command's terminal ``command.updated`` event was announced: the bridge's
    notification (``service/events``, its ``at`` taken after the commit) and its arrival here,
    so the time after ``settled_at`` splits into the bridge's write, the broker and the API."""

    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[float, float]] = {}  # command id -> (notification at, arrival)
        self._client: Any = None

    def _on_message(self, _c: Any, _u: Any, message: Any) -> None:
        arrived = time.time()
        try:
            body = json.loads(message.payload)
            at = _ts(body["at"])
        except (ValueError, KeyError, TypeError):
            return
        for event in body.get("events") or ():
            data = event.get("data") or {}
            if event.get("kind") == "command.updated" and data.get("state") in TERMINAL:
                with self._lock:
                    self._seen[str(event.get("command_id"))] = (at or arrived, arrived)

    def __enter__(self) -> Notifications:
        self._client = self._broker.client(f"rtt-notifications-{id(self)}")
        self._client.on_message = self._on_message
        subscribe(self._client, Topics(self._broker.prefix).service_events())
        return self

    def __exit__(self, *exc: object) -> None:
        disconnect(self._client)

    def of(self, command_id: str) -> tuple[float, float] | None:
        with self._lock:
            return self._seen.get(command_id)


def one_command(
    client: httpx.Client, eid: str, post_wait: bool, notifications: Notifications | None = None
) -> tuple[float, float, str, dict[str, float]]:
    """(ms until terminal, ms of the POST alone, final state, phase durations in ms).

    The phases come from the command record's own times (same machine, same clock): the API
    accepting it until the broker had it (``created_at`` -> ``sent_at``), the agent and the
    bridge settling it (``sent_at`` -> ``settled_at``), and the answer reaching us; with
    ``notifications``, that last part split at the bridge's commit (its notification's ``at``)
    and at the notification's arrival (what an API process's event feed waits for).
    """
    wall0 = time.time()
    started = time.perf_counter()
    response = client.post(
        f"/api/enclosures/{eid}/commands",
        params={"wait": WAIT_S} if post_wait else None,
        json={"kind": "ping", "timeout_s": 10},
    )
    posted = time.perf_counter()
    response.raise_for_status()
    command = response.json()
    while command["state"] not in TERMINAL:
        response = client.get(f"/api/commands/{command['id']}", params={"wait": WAIT_S})
        response.raise_for_status()
        command = response.json()
    done = time.perf_counter()
    wall1 = time.time()
    created, sent, settled = (_ts(command.get(k)) for k in ("created_at", "sent_at", "settled_at"))
    phases: dict[str, float] = {}
    if created is not None and sent is not None and settled is not None:
        phases = {
            "request_to_created": (created - wall0) * 1000,
            "created_to_sent": (sent - created) * 1000,
            "sent_to_settled": (settled - sent) * 1000,
            "settled_to_answer": (wall1 - settled) * 1000,
        }
        notified = notifications.of(command["id"]) if notifications is not None else None
        if notified is not None:
            committed, arrived = notified
            phases["settled_to_committed"] = (committed - settled) * 1000
            phases["committed_to_notified"] = (arrived - committed) * 1000
            phases["notified_to_answer"] = (wall1 - arrived) * 1000
    return (done - started) * 1000, (posted - started) * 1000, command["state"], phases


def run(args: argparse.Namespace) -> dict[str, Any]:
    accounts = fleet_accounts(args.enclosures, "rtt")
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
        start_fleet(fleet, timeout=120)
        try:
            stack.wait_db(
                "SELECT count(*) FROM enclosures WHERE state = 'idle'",
                lambda n: n == args.enclosures,
                60,
                "the bridge registering every enclosure",
            )
            url = stack.api()
            headers = {"Authorization": f"Bearer {stack.token}"}
            ids = fleet.ids
            lock = threading.Lock()
            counter = iter(range(10**9))
            rtts: list[float] = []
            posts: list[float] = []
            states: Counter[str] = Counter()
            phases: dict[str, list[float]] = {}
            floor_broker = stack_broker(stack)
            topics = Topics(floor_broker.prefix)

            def worker(count: int, measured: bool, notifications: Notifications | None) -> None:
                with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
                    for _ in range(count):
                        with lock:
                            i = next(counter)
                        rtt, post, state, phase = one_command(
                            client, ids[i % len(ids)], not args.post_then_get, notifications
                        )
                        if measured:
                            with lock:
                                rtts.append(rtt)
                                posts.append(post)
                                states[state] += 1
                                for name, ms in phase.items():
                                    phases.setdefault(name, []).append(ms)

            # The warm-up's commands and acks give the floor its payload sizes.
            with (
                Sniffer(floor_broker, topics.enc_filter("cmd")) as commands,
                Sniffer(floor_broker, topics.enc_filter("ack")) as acks,
            ):
                worker(WARMUP, measured=False, notifications=None)
                request_bytes, response_bytes = commands.typical_size(), acks.typical_size()
            per_thread = [args.commands // args.concurrency] * args.concurrency
            per_thread[0] += args.commands - sum(per_thread)
            assert stack.bridge_ is not None
            assert stack.api_ is not None
            started = time.monotonic()
            with (
                Notifications(floor_broker) as notifications,
                sample_process(stack.bridge_.pid) as bridge_usage,
                sample_process(stack.api_.pid) as api_usage,
                ThreadPoolExecutor(args.concurrency) as pool,
            ):
                for future in [pool.submit(worker, n, True, notifications) for n in per_thread]:
                    future.result()
            elapsed = time.monotonic() - started
            # Same broker, same background load, same number of round trips.
            floor = echo_floor(floor_broker, len(rtts), request_bytes, response_bytes)
            counters = fleet.counters()
        finally:
            fleet.stop()
    p50, p99 = percentile(rtts, 0.50), percentile(rtts, 0.99)
    ratios = {"p50": ratio(p50, floor["p50_ms"]), "p99": ratio(p99, floor["p50_ms"])}
    targets = {
        f"p50 <= {TARGET_P50_RATIO:g} x floor": p50 <= TARGET_P50_RATIO * floor["p50_ms"],
        f"p99 <= {TARGET_P99_RATIO:g} x floor": p99 <= TARGET_P99_RATIO * floor["p50_ms"],
    }
    return {
        "bench": "command_rtt",
        "n": len(rtts),
        "enclosures": args.enclosures,
        "concurrency": args.concurrency,
        "requests": "POST then GET ?wait" if args.post_then_get else "POST ?wait",
        "p50_ms": round(percentile(rtts, 0.50), 2),
        "p95_ms": round(percentile(rtts, 0.95), 2),
        "p99_ms": round(percentile(rtts, 0.99), 2),
        "max_ms": round(max(rtts), 2),
        "mean_ms": round(statistics.fmean(rtts), 2),
        "post_p50_ms": round(percentile(posts, 0.50), 2),
        "commands_per_s": round(len(rtts) / elapsed, 1),
        "states": dict(states),
        # Where the time goes (p50 of each phase, from the command's own timestamps).
        "phases_p50_ms": {k: round(percentile(v, 0.5), 2) for k, v in phases.items()},
        # The floor's p50 is the unit of both ratios.
        "floor": floor,
        "ratio": ratios,
        "targets": targets,
        "targets_met": check_targets("command_rtt", targets),
        **bridge_usage.figures("bridge"),
        **api_usage.figures("api"),
        # CPU per command (background work included): steadier than latency on a shared machine.
        "bridge_cpu_ms_per_command": round(bridge_usage.cores * elapsed / len(rtts) * 1000, 2),
        "api_cpu_ms_per_command": round(api_usage.cores * elapsed / len(rtts) * 1000, 2),
        "cpu_ms_per_unit": {
            "unit": "command",
            **cpu_ms_per_unit(
                len(rtts),
                api=api_usage.cores * api_usage.seconds,
                bridge=bridge_usage.cores * bridge_usage.seconds,
            ),
        },
        "fleet_errors": counters.errors,
        "machine": facts,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 commands (under a minute)")
    parser.add_argument("--commands", type=int, default=1000)
    parser.add_argument("--enclosures", type=int, default=200)
    parser.add_argument(
        "--post-then-get", action="store_true", help="POST without wait, then GET ?wait"
    )
    parser.add_argument("--concurrency", type=int, default=1, help="clients sending at once")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    add_profile_option(parser)
    args = parser.parse_args()
    if args.quick:
        args.commands = min(args.commands, 200)
    print_result(run(args))


if __name__ == "__main__":
    main()
