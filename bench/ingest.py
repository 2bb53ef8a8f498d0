#!/usr/bin/env python
"""Benchmark (b): status ingest, K simulated enclosures at 1 status/s each.

For each K, a fresh stack (broker, PostgreSQL database, bridge as a child process) and a fleet
of K simulated enclosures, each with its own MQTT connection, publishing a status every second.
Once the bridge has registered every enclosure and a short warm-up has passed, a window of
``--duration`` seconds is measured:

- bridge CPU (cores: CPU seconds / wall seconds) and peak RSS, sampled with psutil;
- staleness at the end of the window: now - the ``at`` of each enclosure's latest stored
  status (p50 and max over the enclosures; a 1 s heartbeat alone makes it up to ~1 s);
- receive lag of the window's statuses: ``received_at - at`` in ``status_history`` (when the
  bridge's MQTT thread got them; staleness also counts the queue and the database write).

Then the fleet stops cleanly, the bridge drains (``drain_after_stop_s``: how long it still
wrote after the fleet stopped; about 0 when it keeps up), and ``lost`` = statuses the broker
acknowledged to the enclosures (whole run) - rows in ``status_history`` - ``coalesced`` (the
statuses the bridge replaced by a newer one of the same enclosure before writing them, as it
does by design when it falls behind: a status is a latest value).

    .venv/bin/python bench/ingest.py                     # K = 500, 2000, 5000; 60 s each
    .venv/bin/python bench/ingest.py --enclosures 2000   # one K
    .venv/bin/python bench/ingest.py --quick             # K = 500 for 15 s (under a minute)

After the window, while the fleet still publishes, the floor (``floors``): a bare paho
subscriber drains the same statuses for ``FLOOR_WINDOW_S`` (its process CPU per message), and
once the bridge has drained, the rows it stored are written again by a bare ``COPY`` per 500
rows (client CPU per row). ``ratio.cpu_per_msg`` = the bridge's CPU per status / (the
subscriber's per message + the COPY's per row).

The last line is one JSON object: {"bench": "ingest", "results": [{"enclosures": K, "lost": ...,
"staleness_max_s": ..., "bridge_cpu_cores": ..., "bridge_rss_mb": ..., "floor": {...},
"ratio": {...}, "cpu_ms_per_unit": {...}}, ...]}. Targets (issue 18, at K = 5,000; each K says
how it fares): 0 lost, staleness p99 <= 2 s, bridge CPU per status <= 3 x the floor's.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psutil  # noqa: E402
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
    Drain,
    check_targets,
    cpu_ms_per_unit,
    drain_figures,
    insert_floor,
    ratio,
    stack_broker,
    status_floor,
)

from fleet_simulator import Fleet, fleet_accounts  # noqa: E402
from schemas.topics import Topics  # noqa: E402

DEFAULT_ENCLOSURES = (500, 2000, 5000)
STATUS_INTERVAL_S = 1.0
WARMUP_S = 5.0  # after every enclosure is registered: first heartbeats spread over the second
REGISTER_TIMEOUT_S = 60.0  # a bridge that has not stored every enclosure by then is behind:
# the window is measured anyway (``registered`` says how far it got)
DRAIN_QUIET_S = 60.0  # after the fleet stops: the bridge has drained once rows stop growing
DRAIN_CAP_S = 300.0  # ...and a bridge far behind is given at most this long (``drained``)
TARGET_ENCLOSURES = 5000
TARGET_STALENESS_P99_S = 2.0
TARGET_CPU_RATIO = 3.0  # bridge CPU per status <= 3 x (bare subscriber + bare COPY)
FLOOR_WINDOW_S = 10.0  # the bare subscriber drains the fleet's statuses this long (at most)
FLOOR_ROWS = 20_000  # rows written again by the bare COPY (at most)


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def _broker_drop_notices(log_file: Path) -> int:
    try:
        text = log_file.read_text(errors="replace")
    except OSError:
        return -1
    return text.count("messages are being dropped")


def _wait_registered(stack: Stack, enclosures: int) -> int:
    """How many enclosures the bridge shows ``idle`` (all, or as many as within the timeout)."""
    sql = "SELECT count(*) FROM enclosures WHERE state = 'idle'"
    try:
        return int(
            stack.wait_db(sql, lambda n: n == enclosures, REGISTER_TIMEOUT_S, "registration")
        )
    except TimeoutError:
        return int(stack.scalar(sql))


def measure(
    enclosures: int, duration: float, keep: bool, history_every_s: float = 0.0
) -> tuple[dict[str, Any], dict[str, Any]]:
    accounts = fleet_accounts(enclosures, "ing")
    env = {"JAXMBA_SERVICE_STATUS_HISTORY_EVERY_S": str(history_every_s)}
    with Stack(status_interval_s=STATUS_INTERVAL_S, keep=keep, env=env) as stack:
        history_rows = not history_every_s  # else the history keeps only some statuses

        def written() -> int:
            return stack.statuses_written(history_rows=history_rows)

        broker = stack.broker(accounts)
        engine = stack.database()
        facts = machine(engine)
        bridge = stack.bridge()
        fleet = Fleet(broker.host, broker.port, accounts, status_interval_s=STATUS_INTERVAL_S)
        ready_s = start_fleet(fleet, timeout=600)
        try:
            registered = _wait_registered(stack, enclosures)
            time.sleep(WARMUP_S)
            me, mosquitto = psutil.Process(), psutil.Process(broker.pid)
            fleet_cpu0, broker_cpu0 = _cpu(me), _cpu(mosquitto)
            acked0 = fleet.counters().statuses_acked
            rows0 = written()
            window_start = datetime.now(UTC)
            with sample_process(bridge.pid) as usage:
                time.sleep(duration)
            at_end = datetime.now(UTC)
            published_in_window = fleet.counters().statuses_acked - acked0
            stored_in_window = written() - rows0
            fleet_cores = (_cpu(me) - fleet_cpu0) / usage.seconds
            broker_cores = (_cpu(mosquitto) - broker_cpu0) / usage.seconds
            rows = stack.rows("SELECT status_at FROM enclosures WHERE status_at IS NOT NULL")
            latest = [(at_end - row[0]).total_seconds() for row in rows]
            missing = enclosures - len(latest)
            # The floor's first half: the same statuses, drained by a bare subscriber.
            drain = Drain(
                stack_broker(stack),
                Topics(broker.prefix).enc_filter("status"),
                seconds=min(duration, FLOOR_WINDOW_S),
            )
            try:
                subscriber = drain_figures(drain.start().result())
            finally:
                drain.stop()
        finally:
            fleet.stop()
        counters = fleet.counters()
        # Done with: written, or coalesced into a newer status (not written, by design).
        _, drain_s = stack.wait_rows(
            counters.statuses_acked,
            quiet_s=DRAIN_QUIET_S,
            cap_s=DRAIN_CAP_S,
            count=lambda: stack.statuses_done(history_rows=history_rows),
        )
        broker_drops = _broker_drop_notices(broker.log_file)
        coalesced = stack.statuses_coalesced()
        stored = written()
        lag = [
            float(row[0]) * 1000
            for row in stack.rows(
                "SELECT extract(epoch FROM received_at - at) FROM status_history"
                " WHERE at >= :since AND at < :until",
                since=window_start,
                until=at_end,
            )
        ]
        # The floor's second half: the rows the bridge stored, written by a bare COPY.
        history_rows = int(stack.scalar("SELECT count(*) FROM status_history"))
        insert = insert_floor(engine, "status_history", min(history_rows, FLOOR_ROWS))
    bridge_ms = usage.cores * usage.seconds * 1000 / max(1, stored_in_window)
    floor = status_floor(subscriber, insert)
    floor_ms = floor["cpu_ms_per_msg"]
    staleness_p99 = percentile(latest, 0.99)
    targets = {
        "0 lost": counters.statuses_acked == stored + coalesced,
        f"staleness p99 <= {TARGET_STALENESS_P99_S:g} s": staleness_p99 <= TARGET_STALENESS_P99_S,
        f"bridge CPU per status <= {TARGET_CPU_RATIO:g} x floor": bridge_ms
        <= TARGET_CPU_RATIO * floor_ms,
    }
    result = {
        "enclosures": enclosures,
        "history_every_s": history_every_s,
        "duration_s": round(usage.seconds, 1),
        "connect_s": round(ready_s, 1),
        "statuses_per_s": round(published_in_window / usage.seconds, 1),
        # What the bridge wrote per second during the window: below statuses_per_s means it
        # fell behind (and staleness grows).
        "stored_per_s": round(stored_in_window / usage.seconds, 1),
        "published": counters.statuses_acked,
        "stored": stored,
        "drained": stored + coalesced == counters.statuses_acked,
        # Replaced by a newer status of the same enclosure before it was written (the bridge
        # was behind; a status is a latest value): not lost.
        "coalesced": coalesced,
        # Only final once drained; else what the bridge had not stored when we stopped waiting.
        "lost": counters.statuses_acked - stored - coalesced,
        "registered_before_window": registered,
        # mosquitto's "Outgoing messages are being dropped" notices: its queue for the bridge
        # (max_queued_messages) overflowed and it discarded messages.
        "broker_drop_notices": broker_drops,
        "not_acked_by_broker": counters.statuses_sent - counters.statuses_acked,
        "staleness_p50_s": round(percentile(latest, 0.5), 3),
        "staleness_p99_s": round(staleness_p99, 3),
        "staleness_max_s": round(max(latest), 3) if latest else None,
        "enclosures_without_status": missing,
        "receive_lag_p50_ms": round(percentile(lag, 0.5), 1),
        "receive_lag_p99_ms": round(percentile(lag, 0.99), 1),
        "drain_after_stop_s": round(drain_s, 1),
        **usage.figures("bridge"),
        "bridge_cpu_ms_per_msg": round(bridge_ms, 3),
        "floor": floor,
        "ratio": {"cpu_per_msg": ratio(bridge_ms, floor_ms)},
        "cpu_ms_per_unit": {
            "unit": "status",
            **cpu_ms_per_unit(stored_in_window, bridge=usage.cores * usage.seconds),
        },
        "targets": targets,
        "targets_met": check_targets(f"ingest K={enclosures}", targets),
        "broker_cpu_cores": round(broker_cores, 3),
        "fleet_cpu_cores": round(fleet_cores, 3),
        "fleet_errors": counters.errors,
        "fleet_disconnects": counters.disconnects_unexpected,
    }
    return result, facts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="K = 500 for 15 s")
    parser.add_argument(
        "--enclosures", type=int, action="append", help="K (repeatable; default 500 2000 5000)"
    )
    parser.add_argument("--duration", type=float, default=60.0, help="measured seconds per K")
    parser.add_argument("--keep", action="store_true", help="keep the work directories (logs)")
    parser.add_argument(
        "--history-every",
        type=float,
        default=0.0,
        metavar="S",
        help="[SERVICE] status_history_every_s of the bridge (0: every status in the history); "
        "above 0 the bridge's own counter says what it applied",
    )
    add_profile_option(parser)
    args = parser.parse_args()
    sizes = args.enclosures or list(DEFAULT_ENCLOSURES)
    if args.quick:
        sizes, args.duration = [500], min(args.duration, 15.0)
    results: list[dict[str, Any]] = []
    facts: dict[str, Any] = {}
    for size in sizes:
        result, facts = measure(size, args.duration, args.keep, args.history_every)
        print(f"K={size}: {result}", file=sys.stderr, flush=True)
        results.append(result)
    target = next((r for r in results if r["enclosures"] == TARGET_ENCLOSURES), None)
    print_result(
        {
            "bench": "ingest",
            "status_interval_s": STATUS_INTERVAL_S,
            "results": results,
            # The targets hold at K = 5,000; each result says how its K fares.
            "targets_met": None if target is None else target["targets_met"],
            "machine": facts,
        }
    )


if __name__ == "__main__":
    main()
