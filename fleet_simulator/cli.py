"""``python -m fleet_simulator``: run a fleet of simulated enclosures from a shell.

::

    # 2,000 enclosures against a running broker: make their accounts, add them to the broker's
    # password file, reload it, run until Ctrl-C, print a summary every 10 s and at the end
    python -m fleet_simulator --count 2000 --broker mqtt://127.0.0.1:1883 \\
        --accounts var/sim-accounts.txt \\
        --password-file var/mosquitto/passwd --reload-pid var/mosquitto/mosquitto.pid

    # self-contained: a broker of its own in a temporary directory, 60 s, JSON summary
    python -m fleet_simulator --count 500 --local-broker --duration 60 --json

``--accounts FILE`` holds ``eid:password`` lines; an existing file is used as it is (``--count``
then takes its first N accounts), a missing one is created for ``--count`` enclosures.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from fleet_simulator.accounts import (
    DEFAULT_ID_PREFIX,
    add_to_password_file,
    fleet_accounts,
    read_accounts_file,
    write_accounts_file,
)
from fleet_simulator.errors import SimulatorError
from fleet_simulator.fleet import DEFAULT_KEEPALIVE_S, START_TIMEOUT_S, Fleet, parse_broker_url
from schemas import DEFAULT_PREFIX, DEFAULT_STATUS_INTERVAL_S

__all__ = ["main"]

logger = logging.getLogger(__name__)

SUMMARY_FIELDS = (
    "ready",
    "recording",
    "statuses_acked",
    "commands_received",
    "desired_received",
    "disconnects_unexpected",
    "errors",
)


@contextlib.contextmanager
def _local_broker(accounts: dict[str, str]) -> Iterator[tuple[str, int]]:
    from controlsvc.broker import LocalBroker

    with tempfile.TemporaryDirectory(prefix="jaxmba-sim-broker-") as directory:
        broker = LocalBroker(directory, accounts)
        with broker:
            click.echo(f"local broker {broker.url} in {directory}", err=True)
            yield broker.host, broker.port


def _load_accounts(path: Path | None, count: int | None, id_prefix: str) -> dict[str, str]:
    if path is not None and path.exists():
        accounts = read_accounts_file(path)
        if count is not None:
            if count > len(accounts):
                raise SimulatorError(f"{path} holds {len(accounts)} accounts, not {count}")
            accounts = dict(list(accounts.items())[:count])
        return accounts
    if count is None:
        raise SimulatorError("give --count (and/or an existing --accounts file)")
    accounts = fleet_accounts(count, id_prefix)
    if path is not None:
        write_accounts_file(path, accounts)
        click.echo(f"wrote {len(accounts)} accounts to {path}", err=True)
    return accounts


def _reload_broker(pid_file: Path) -> None:
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError) as exc:
        raise SimulatorError(f"cannot read a pid from {pid_file}: {exc}") from exc
    os.kill(pid, signal.SIGHUP)
    time.sleep(0.5)  # mosquitto rereads its files on its next loop turn


def _summary_line(fleet: Fleet, started: float) -> str:
    c = fleet.counters().as_dict()
    parts = [f"{name}={c[name]}" for name in SUMMARY_FIELDS]
    return f"[{time.monotonic() - started:7.1f} s] {len(fleet)} enclosures: " + " ".join(parts)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--count", "-n", type=click.IntRange(1, 100_000), help="Number of enclosures.")
@click.option(
    "--broker",
    default="mqtt://127.0.0.1:1883",
    show_default=True,
    help="Broker URL (mqtt://host:port).",
)
@click.option("--local-broker", is_flag=True, help="Start a broker of its own (temporary dir).")
@click.option(
    "--accounts",
    "accounts_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="eid:password file (read if it exists, else written).",
)
@click.option("--id-prefix", default=DEFAULT_ID_PREFIX, show_default=True, help="Id prefix.")
@click.option(
    "--password-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Add the accounts to this mosquitto password file.",
)
@click.option(
    "--reload-pid",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Pid file of the broker to SIGHUP after changing --password-file.",
)
@click.option("--topic-prefix", default=DEFAULT_PREFIX, show_default=True)
@click.option(
    "--status-interval",
    type=click.FloatRange(0.05, 3600),
    default=DEFAULT_STATUS_INTERVAL_S,
    show_default=True,
    help="Seconds between status heartbeats.",
)
@click.option(
    "--keepalive", type=click.IntRange(2, 600), default=DEFAULT_KEEPALIVE_S, show_default=True
)
@click.option("--loops", type=click.IntRange(1, 64), default=1, show_default=True)
@click.option(
    "--duration",
    type=click.FloatRange(0),
    default=0,
    help="Stop after this many seconds (default: at Ctrl-C or SIGTERM).",
)
@click.option("--summary-every", type=click.FloatRange(0), default=10.0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the final counters as JSON.")
@click.option("-v", "--verbose", count=True, help="-v: info, -vv: debug.")
def main(
    count: int | None,
    broker: str,
    local_broker: bool,
    accounts_path: Path | None,
    id_prefix: str,
    password_file: Path | None,
    reload_pid: Path | None,
    topic_prefix: str,
    status_interval: float,
    keepalive: int,
    loops: int,
    duration: float,
    summary_every: float,
    as_json: bool,
    verbose: int,
) -> None:
    """Simulate many enclosures, each with its own MQTT connection, account and Will."""
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    try:
        accounts = _load_accounts(accounts_path, count, id_prefix)
        if password_file is not None:
            add_to_password_file(password_file, accounts)
            if reload_pid is not None:
                _reload_broker(reload_pid)
        with contextlib.ExitStack() as stack:
            if local_broker:
                host, port = stack.enter_context(_local_broker(accounts))
            else:
                host, port = parse_broker_url(broker)
            fleet = Fleet(
                host,
                port,
                accounts,
                prefix=topic_prefix,
                status_interval_s=status_interval,
                keepalive_s=keepalive,
                loops=loops,
            )
            summary = _run(fleet, duration, summary_every)
    except SimulatorError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps(summary))


def _run(fleet: Fleet, duration: float, summary_every: float) -> dict[str, Any]:
    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    started = time.monotonic()
    try:
        fleet.start(timeout=START_TIMEOUT_S)
        ready_s = time.monotonic() - started
        click.echo(f"{len(fleet)} enclosures ready in {ready_s:.1f} s", err=True)
        deadline = started + duration if duration else None
        while not stop.is_set():
            wait = summary_every or 3600.0
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
                if wait <= 0:
                    break
            if stop.wait(wait):
                break
            if summary_every:
                click.echo(_summary_line(fleet, started), err=True)
    finally:
        fleet.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    click.echo(_summary_line(fleet, started), err=True)
    summary = fleet.counters().as_dict()
    summary["ready_s"] = round(ready_s, 2)
    summary["ran_s"] = round(time.monotonic() - started, 1)
    return summary
