#!/usr/bin/env python
"""Benchmark (c): a burst of 20,000 status messages, and how fast the bridge stores them.

A fresh stack (broker, PostgreSQL database, bridge as a child process) and a fleet of simulated
enclosures that are otherwise quiet (heartbeat once an hour). Once the bridge has stored their
birth statuses, every enclosure publishes its share of the burst back to back, as fast as paho
and the broker take them. Figures:

- ``publish_rate``: messages/s until the broker has acknowledged the whole burst;
- ``drain_rate``: messages/s from the first publish until the last status is in the database
  (the figure with a target);
- ``lost``: statuses the broker acknowledged (whole run) - rows in ``status_history`` - the
  statuses the bridge replaced by a newer one of the same enclosure before writing them
  (``coalesced``: it was behind, and a status is a latest value; by design, not a loss);
- bridge CPU and peak RSS over the burst.

    .venv/bin/python bench/burst.py            # 20,000 messages from 1,000 enclosures
    .venv/bin/python bench/burst.py --quick    # 20,000 messages from 200 enclosures

The floor (``floors``), in the same burst: a bare paho subscriber in its own process, subscribed
to the same statuses before the burst, drains it (``floor.subscriber.drain_s``: first publish
until it had the last message; it competes with the bridge for the same cores), and once the
bridge has drained, the rows it stored are written again by a bare ``COPY`` per 500 rows.
``ratio.drain_s`` = the bridge's drain time / the subscriber's; ``ratio.cpu_per_msg`` = the
bridge's CPU per message / (the subscriber's + the COPY's per row).

The last line is one JSON object: {"bench": "burst", "messages": 20000, "drain_rate": ...,
"lost": ..., "floor": {...}, "ratio": {...}, "cpu_ms_per_unit": {...}}. Targets: drain time <=
3 x the floor's, 0 lost.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import Stack, add_profile_option, machine, print_result, sample_process, start_fleet  # noqa: E402
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

QUIET_INTERVAL_S = 3600.0  # heartbeats out of the way: only births and the burst
PUBLISH_TIMEOUT_S = 300.0  # the broker acknowledges the whole burst within this
DRAIN_QUIET_S = 60.0  # the bridge has drained once the row count stops growing this long
DRAIN_CAP_S = 900.0
POLL_S = 0.02
TARGET_RATIO = 3.0  # drain time <= 3 x the bare subscriber's


def run(args: argparse.Namespace) -> dict[str, Any]:
    accounts = fleet_accounts(args.enclosures, "burst")
    per_enclosure = math.ceil(args.messages / args.enclosures)
    with Stack(status_interval_s=QUIET_INTERVAL_S, keep=args.keep) as stack:
        broker = stack.broker(accounts)
        engine = stack.database()
        facts = machine(engine)
        bridge = stack.bridge()
        fleet = Fleet(broker.host, broker.port, accounts, status_interval_s=QUIET_INTERVAL_S)
        start_fleet(fleet, timeout=300)
        try:
            stack.wait_db(
                "SELECT count(*) FROM status_history",
                lambda n: n >= args.enclosures,
                120,
                "the bridge storing every birth status",
            )
            acked_before = fleet.counters().statuses_acked
            burst = per_enclosure * args.enclosures
            drain = Drain(
                stack_broker(stack),
                Topics(broker.prefix).enc_filter("status"),
                count=burst,
                seconds=PUBLISH_TIMEOUT_S,
            ).start()
            with sample_process(bridge.pid) as usage:
                started, wall_started = time.monotonic(), time.time()
                fleet.publish_statuses(per_enclosure)
                fleet.wait_until(
                    lambda c: c.statuses_acked >= acked_before + burst, timeout=PUBLISH_TIMEOUT_S
                )
                published = time.monotonic()
                expected = fleet.counters().statuses_acked
                _, waited = stack.wait_rows(
                    expected,
                    quiet_s=DRAIN_QUIET_S,
                    cap_s=DRAIN_CAP_S,
                    poll_s=POLL_S,
                    count=stack.statuses_done,
                )
                drained = published + waited
            try:
                floor_drain = drain.result()
            finally:
                drain.stop()
        finally:
            fleet.stop()
        counters = fleet.counters()
        # A heartbeat may have come due meanwhile (hourly, at a random point): count it too.
        stack.wait_rows(
            counters.statuses_acked, quiet_s=DRAIN_QUIET_S, cap_s=60, count=stack.statuses_done
        )
        stored = stack.statuses_written()
        drops = broker.log_file.read_text(errors="replace").count("messages are being dropped")
        coalesced = stack.statuses_coalesced()
        insert = insert_floor(engine, "status_history", stored)
    drain_s = drained - started
    subscriber = drain_figures(floor_drain)
    if floor_drain["received"] < burst or floor_drain["last_at"] is None:
        raise RuntimeError(f"the floor subscriber had {floor_drain['received']} of {burst}")
    subscriber["drain_s"] = round(floor_drain["last_at"] - wall_started, 3)
    bridge_ms = usage.cores * usage.seconds * 1000 / burst
    floor = status_floor(subscriber, insert)
    floor_ms = floor["cpu_ms_per_msg"]
    targets = {
        f"drain <= {TARGET_RATIO:g} x floor": drain_s <= TARGET_RATIO * subscriber["drain_s"],
        "0 lost": counters.statuses_acked == stored + coalesced,
    }
    return {
        "bench": "burst",
        "messages": burst,
        "enclosures": args.enclosures,
        "publish_s": round(published - started, 3),
        "publish_rate": round(burst / (published - started), 1),
        "drain_s": round(drain_s, 3),
        "drain_rate": round(burst / drain_s, 1),
        "published": counters.statuses_acked,
        "stored": stored,
        # Replaced by a newer status of the same enclosure before it was written (the bridge
        # was behind; a status is a latest value): not lost.
        "coalesced": coalesced,
        "lost": counters.statuses_acked - stored - coalesced,
        "broker_drop_notices": drops,
        "floor": floor,
        "ratio": {
            "drain_s": ratio(drain_s, subscriber["drain_s"]),
            "cpu_per_msg": ratio(bridge_ms, floor_ms),
        },
        "targets": targets,
        "targets_met": check_targets("burst", targets),
        **usage.figures("bridge"),
        # CPU the bridge spent per message: what caps its rate on an idle machine (one core,
        # the GIL) however busy the machine was during the run.
        "bridge_cpu_ms_per_msg": round(bridge_ms, 3),
        "cpu_ms_per_unit": {
            "unit": "status",
            **cpu_ms_per_unit(burst, bridge=usage.cores * usage.seconds),
        },
        "fleet_errors": counters.errors,
        "machine": facts,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 enclosures (under a minute)")
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--enclosures", type=int, default=1000)
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    add_profile_option(parser)
    args = parser.parse_args()
    if args.quick:
        args.enclosures = min(args.enclosures, 200)
    print_result(run(args))


if __name__ == "__main__":
    main()
