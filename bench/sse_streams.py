#!/usr/bin/env python
"""Benchmark: the API under gunicorn (gthread) stays responsive with 50 event streams open.

Sets up its own Mosquitto, database (SQLite in a temporary directory unless --database-url),
and the API under `controlsvc.ops.runner.gunicorn_options` (the workers and threads of `run`), with
the hooks `run` installs (multiprocess metrics, streams ended on SIGTERM). Then:

1. `GET /api/health` latency with no stream open (baseline);
2. opens N event streams (default 50), each its own connection;
3. writes events the way the bridge does (`eventlog.record`, commit, QoS 0 notification on
   `{prefix}/service/events`) at a steady rate while timing `GET /api/health` requests;
4. event delivery latency = commit done -> the event parsed by each stream's client;
5. SIGTERM to gunicorn with the streams open: how long the API takes to stop.

The writer, the stream readers and the health client run in this process, on the same two
cores as the API: the figures include that competition.

The floor (``floors.echo_floor``), after step 4 on the same broker: a bare paho QoS 1
request/response echo with the notification's payload size, two hops as an event's delivery
has two (MQTT to the API worker, HTTP to each client); ``ratio.event_p50`` = event p50 / its
p50. ``cpu_ms_per_unit``: the API's process CPU (workers included) per health request with
no stream open; ``api_cpu_ms_per_event`` is its CPU per event written during step 3 (the health
requests of that phase included). No ratio target.

    .venv/bin/python bench/sse_streams.py --quick

The last line printed is one JSON object: {"bench": "sse_streams", "streams": 50, ...}.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from _support import machine, sample_process  # noqa: E402
from floors import (  # noqa: E402
    Broker,
    check_targets,
    cpu_ms_per_unit,
    echo_floor,
    ratio,
    service_port,
)

from controlsvc.broker import SERVICE_USER, LocalBroker, generate_password  # noqa: E402
from controlsvc.mqtt.loop_stop import stop_loop  # noqa: E402
from controlsvc.store import eventlog, migrate, users  # noqa: E402
from controlsvc.store.db import Database  # noqa: E402
from tests.support.postgres import create_database, drop_database, postgres_server  # noqa: E402

PREFIX = "jaxmba/v1"
EMAIL = "bench@example.org"
PASSWORD = "bench password long enough"
START_TIMEOUT_S = 60.0
DELIVERY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 60.0

# What `run` does: multiprocess metrics, then gunicorn with the runner's options plus the hooks.
SERVE = """
import sys
from controlsvc.api import event_feed
from controlsvc import metrics
from controlsvc.config.settings import load_settings
from controlsvc.ops.runner import _Gunicorn, gunicorn_options
settings = load_settings(profile="prod")
metrics.setup_process(settings)
options = gunicorn_options(settings, "127.0.0.1", int(sys.argv[1]), settings.service.workers)
options.update(
    post_worker_init=event_feed.gunicorn_post_worker_init,
    child_exit=metrics.gunicorn_child_exit,
    accesslog=None,
    loglevel="warning",
)
_Gunicorn(settings, options).run()
"""


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def ms(value: float) -> float:
    return round(value * 1000, 2)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Stream(threading.Thread):
    """One event stream; records when each event id arrived."""

    def __init__(self, url: str, token: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.token = token
        self.connected = threading.Event()
        self.arrivals: dict[int, float] = {}
        self.ended_at: float | None = None
        self.error: str | None = None

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        try:
            with (
                httpx.Client(timeout=httpx.Timeout(10.0, read=None)) as client,
                client.stream("GET", f"{self.url}/api/events", headers=headers) as response,
            ):
                if response.status_code != 200:
                    self.error = f"HTTP {response.status_code}: {response.read()[:200]!r}"
                    return
                for line in response.iter_lines():
                    if line == ": connected":
                        self.connected.set()
                    elif line.startswith("id: "):
                        self.arrivals[int(line[4:])] = time.perf_counter()
        except (httpx.HTTPError, OSError) as exc:
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.ended_at = time.perf_counter()
            self.connected.set()


def nodelay(_client: Any, _userdata: Any, sock: Any) -> None:
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def health_latencies(url: str, count: int, stop: threading.Event | None = None) -> list[float]:
    out = []
    with httpx.Client(timeout=10) as client:
        for _ in range(count):
            if stop is not None and stop.is_set():
                break
            started = time.perf_counter()
            response = client.get(f"{url}/api/health")
            out.append(time.perf_counter() - started)
            if response.status_code != 200:
                raise RuntimeError(f"health answered {response.status_code}: {response.text}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a reduced run (well under 1 min)")
    parser.add_argument("--streams", type=int, default=50)
    parser.add_argument("--events", type=int, help="events written (default 200, quick 60)")
    parser.add_argument("--rate", type=float, default=20.0, help="events written per second")
    parser.add_argument("--health", type=int, help="health requests per phase (2000, quick 300)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--database-url",
        default="",
        help="default: a fresh PostgreSQL database (the API runs the prod profile, which "
        "refuses SQLite)",
    )
    args = parser.parse_args()
    n_events = args.events or (60 if args.quick else 200)
    n_health = args.health or (300 if args.quick else 2000)

    facts = machine()
    with (
        tempfile.TemporaryDirectory(prefix="jaxmba-bench-sse-") as tmp_name,
        contextlib.ExitStack() as owned,
    ):
        tmp = Path(tmp_name)
        service_password = generate_password()
        broker = LocalBroker(tmp / "broker", {SERVICE_USER: service_password})
        broker.start()
        url = args.database_url
        if not url:
            server = owned.enter_context(postgres_server())
            fresh = create_database(server, prefix="jaxmba_bench_sse")
            owned.callback(drop_database, fresh)
            url = fresh.render_as_string(hide_password=False)
        migrate.upgrade(migrate.alembic_config(url))
        database = Database(url)
        with database.session() as session:
            users.create_user(session, email=EMAIL, password=PASSWORD, role="operator")

        port = free_port()
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "JAXMBA_DATABASE_URL": url,
            "JAXMBA_SECRETS_SECRET_KEY": secrets.token_hex(32),
            "JAXMBA_SECRETS_JWT_SECRET_KEY": secrets.token_hex(32),
            "JAXMBA_MQTT_HOST": broker.host,
            "JAXMBA_MQTT_PORT": str(broker.service_port),
            "JAXMBA_MQTT_USERNAME": SERVICE_USER,
            "JAXMBA_MQTT_PASSWORD": service_password,
            "JAXMBA_SERVICE_WORKERS": str(args.workers),
            "JAXMBA_SERVICE_METRICS_DIR": str(tmp / "metrics"),
            "JAXMBA_SERVICE_LOGIN_RATE_LIMIT": "1000/minute",
            "JAXMBA_MAIL_BACKEND": "console",
        }
        api = subprocess.Popen([sys.executable, "-c", SERVE, str(port)], env=env, cwd=tmp)
        base = f"http://127.0.0.1:{port}"
        notifier = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        streams: list[Stream] = []
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while True:
                if api.poll() is not None:
                    raise RuntimeError("gunicorn exited during start")
                try:
                    if httpx.get(f"{base}/api/health", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("the API did not start")
                time.sleep(0.1)
            login = httpx.post(
                f"{base}/api/auth/login", json={"email": EMAIL, "password": PASSWORD}, timeout=10
            )
            login.raise_for_status()
            token = login.json()["access_token"]

            with sample_process(api.pid) as idle_usage:
                idle = health_latencies(base, n_health)
            print(
                f"health, no stream:   p50 {ms(percentile(idle, 50))} ms, "
                f"p99 {ms(percentile(idle, 99))} ms (n={len(idle)})",
                flush=True,
            )

            streams = [Stream(base, token) for _ in range(args.streams)]
            for stream in streams:
                stream.start()
            for stream in streams:
                stream.connected.wait(20)
            failed = [s.error for s in streams if s.error]
            if failed:
                raise RuntimeError(f"{len(failed)} streams failed: {failed[:3]}")

            notifier.on_socket_open = nodelay  # as the bridge's client does
            notifier.username_pw_set(SERVICE_USER, service_password)
            notifier.connect(broker.host, broker.service_port)
            notifier.loop_start()
            committed: dict[int, float] = {}
            stop_health = threading.Event()
            busy: list[float] = []
            health_thread = threading.Thread(
                target=lambda: busy.extend(health_latencies(base, n_health, stop_health)),
                daemon=True,
            )
            with sample_process(api.pid) as busy_usage:
                health_thread.start()
                interval = 1.0 / args.rate
                next_at = time.perf_counter()
                for n in range(n_events):
                    with database.session() as session:
                        event_id = eventlog.record(
                            session, "enclosure.status", {"n": n}, enclosure_id="enc-bench"
                        ).id
                    committed[event_id] = time.perf_counter()
                    notifier.publish(
                        eventlog.notification_topic(PREFIX), eventlog.notification_payload(event_id)
                    )
                    next_at += interval
                    time.sleep(max(0.0, next_at - time.perf_counter()))
                deadline = time.monotonic() + DELIVERY_TIMEOUT_S
                while time.monotonic() < deadline and any(
                    len(s.arrivals) < len(committed) for s in streams
                ):
                    time.sleep(0.05)
                health_thread.join()  # it finishes its n requests (events keep no one waiting)
                stop_health.set()
            floor = echo_floor(
                Broker(
                    broker.host,
                    service_port(broker),
                    SERVICE_USER,
                    service_password,
                    broker.prefix,
                ),
                n_events,
                len(eventlog.notification_payload(max(committed))),
                len(eventlog.notification_payload(max(committed))),
            )
            check_targets("sse_streams", {})

            delays = [
                arrived - committed[event_id]
                for s in streams
                for event_id, arrived in s.arrivals.items()
                if event_id in committed
            ]
            lost = len(committed) * len(streams) - len(delays)
            print(
                f"health, {args.streams} streams: p50 {ms(percentile(busy, 50))} ms, "
                f"p99 {ms(percentile(busy, 99))} ms (n={len(busy)})",
                flush=True,
            )
            print(
                f"event delivery:      p50 {ms(percentile(delays, 50))} ms, "
                f"p99 {ms(percentile(delays, 99))} ms ({len(delays)} deliveries, "
                f"{lost} lost)",
                flush=True,
            )

            stopping = time.perf_counter()
            api.send_signal(signal.SIGTERM)
            api.wait(STOP_TIMEOUT_S)
            stop_s = time.perf_counter() - stopping
            ended = sum(1 for s in streams if s.ended_at is not None)
            print(
                f"SIGTERM with {args.streams} streams open: stopped in {stop_s:.2f} s, "
                f"{ended} streams ended",
                flush=True,
            )
            result: dict[str, Any] = {
                "bench": "sse_streams",
                "quick": args.quick,
                "streams": args.streams,
                "workers": args.workers,
                "database": database.engine.dialect.name,
                "health_idle_n": len(idle),
                "health_idle_p50_ms": ms(percentile(idle, 50)),
                "health_idle_p99_ms": ms(percentile(idle, 99)),
                "health_n": len(busy),
                "health_p50_ms": ms(percentile(busy, 50)),
                "health_p99_ms": ms(percentile(busy, 99)),
                "health_mean_ms": ms(statistics.fmean(busy)) if busy else None,
                "events": len(committed),
                "event_rate_per_s": args.rate,
                "deliveries": len(delays),
                "lost": lost,
                "event_p50_ms": ms(percentile(delays, 50)),
                "event_p99_ms": ms(percentile(delays, 99)),
                "event_max_ms": ms(max(delays)) if delays else None,
                "stop_s": round(stop_s, 2),
                "floor": floor,
                "ratio": {"event_p50": ratio(percentile(delays, 50) * 1000, floor["p50_ms"])},
                "cpu_ms_per_unit": {
                    "unit": "health request, no stream open",
                    **cpu_ms_per_unit(len(idle), api=idle_usage.cores * idle_usage.seconds),
                },
                "api_cpu_ms_per_event": round(
                    busy_usage.cores * busy_usage.seconds * 1000 / max(1, len(committed)), 3
                ),
                "targets_met": None,
                "machine": facts,
            }
        finally:
            notifier.disconnect()
            stop_loop(notifier)
            if api.poll() is None:
                api.kill()
                api.wait()
            database.dispose()
            broker.stop()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
