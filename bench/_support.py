"""What the benchmarks share: the machine's facts, and a stack they set up themselves.

``Stack`` starts, in a temporary directory, everything a benchmark needs and stops it all at
the end, in reverse order:

- ``broker(accounts)``: a ``LocalBroker`` on a free port with the generated config
  (``set_tcp_nodelay true``, ``max_queued_messages`` 1,000,000, ``max_inflight_messages`` 1,000),
  the service and operator accounts, and the simulated enclosures' accounts;
- ``database()``: a fresh PostgreSQL database (the server of ``JAXMBA_TEST_DATABASE_URL``, else
  127.0.0.1:5432, else a throwaway ``initdb`` cluster), migrated to head, dropped at the end;
- ``bridge()``: ``python -m controlsvc bridge`` in a child process (its own CPU and RSS);
- ``api()``: the API under gunicorn (``controlsvc.ops.runner.gunicorn_options``, no access log) in a
  child process, and an admin's access token.

Children run with ``FLASK_CONFIG=prod`` and ``JAXMBA_*`` variables only (no config file), and
write their output to ``<workdir>/<name>.log`` (its tail is printed if a benchmark fails).

For experiments (a patched bridge), ``JAXMBA_BENCH_BRIDGE`` replaces the bridge's command line;
it is split like a shell would, and the figures are then those of that process.

Profiling: with ``JAXMBA_BENCH_PROFILE=DIR`` (the benches' ``--profile DIR``) the bridge and the
API (gunicorn's workers included) run under py-spy, which samples their threads while they run
on a CPU and writes ``DIR/bridge.txt`` and ``DIR/api.txt`` (collapsed stacks) when they stop;
``bench/profile_report.py`` turns them into tables. py-spy's own CPU then counts in the
processes' figures: a profiled run measures where the time goes, not how much there is.
py-spy runs with ``--nonblocking``: pausing the process for each sample slowed a session's
start fivefold, enough to change how the bridge batches (a sample may now and then catch a
stack half-updated, which the tables' thousands of samples absorb). ``--profile-gil`` samples
only the thread holding the GIL (py-spy's ``--gil``): Python's own CPU, without the threads that
wait for a core or in a driver's call that released the GIL.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import paho.mqtt.client as mqtt  # noqa: E402
import psutil  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import URL, Engine  # noqa: E402

from controlsvc.broker import (  # noqa: E402
    OPERATOR_USER,
    SERVICE_USER,
    LocalBroker,
    find_free_port,
    generate_password,
)
from tests.support.postgres import (  # noqa: E402
    create_database,
    drop_database,
    postgres_server,
)

__all__ = [
    "REPO",
    "Stack",
    "add_profile_option",
    "machine",
    "percentile",
    "print_result",
    "sample_process",
    "start_fleet",
]

PYTHON = sys.executable
BRIDGE_OVERRIDE_ENV = "JAXMBA_BENCH_BRIDGE"  # experiments: another command line for the bridge
PROFILE_ENV = "JAXMBA_BENCH_PROFILE"  # a directory: run the bridge and the API under py-spy
PROFILE_GIL_ENV = "JAXMBA_BENCH_PROFILE_GIL"  # "1": sample only the thread holding the GIL
PROFILE_RATE_HZ = 250  # py-spy samples per second of a running thread
CHILD_READY_TIMEOUT_S = 60.0  # the bridge and the API import, connect and answer in a few s
CHILD_STOP_TIMEOUT_S = 15.0
ADMIN_EMAIL = "bench@example.com"
ADMIN_PASSWORD = "bench-lantern-42-quick"  # passes the password policy
API_WORKERS = 2  # one per core of the reference machine
LOG_TAIL_LINES = 40


def percentile(values: list[float], fraction: float) -> float:
    """The ``fraction`` quantile (nearest rank) of ``values``."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[rank]


def print_result(result: Mapping[str, Any]) -> None:
    """The benchmark's last line: one JSON object."""
    print(json.dumps(result, separators=(", ", ": ")), flush=True)


def _first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    lines = (out.stdout or out.stderr).strip().splitlines()
    return lines[0] if lines else "unknown"


def calibration_ms(rounds: int = 5) -> float:
    """Milliseconds for a fixed pure-Python workload (best of ``rounds``): JSON encoding and
    decoding of a status-like document, the kind of work the service does. Figures from
    machines whose calibration differs are not comparable (the same size of VM has differed
    by 3x here from one day to the next)."""
    document = {
        "v": 1,
        "seq": 12345,
        "at": "2026-11-26T12:00:00.000000+00:00",
        "camera": {"connected": True, "fps": 30.0, "frames": 123456, "dropped": 0},
        "disk": {"free_bytes": 123456789012, "total_bytes": 987654321098},
        "recording": {"session_id": "s-0001", "segment": 12, "file": "/data/m/seg-0012.mp4"},
        "errors": [],
    }
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(5000):
            json.loads(json.dumps(document))
        best = min(best, time.perf_counter() - started)
    return round(best * 1000, 1)


def machine(engine: Engine | None = None) -> dict[str, Any]:
    """The facts docs/benchmarks.md records next to every figure."""
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    info: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "cpu": model,
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "mosquitto": _first_line(["mosquitto", "-h"]).replace("mosquitto version ", ""),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "calibration_ms": calibration_ms(),
    }
    if engine is not None:
        with engine.connect() as conn:
            info["postgresql"] = conn.execute(text("SHOW server_version")).scalar()
    return info


class ProcessSampler:
    """CPU (cores) and RSS of a process (with its children, e.g. gunicorn's workers) over a
    window; RSS is sampled in a thread and summed over the processes."""

    def __init__(self, pid: int, interval_s: float = 0.5) -> None:
        self.process = psutil.Process(pid)
        self.interval_s = interval_s
        self.rss_max = 0
        self.rss_samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._cpu0 = 0.0
        self._t0 = 0.0
        self.cores = 0.0
        self.seconds = 0.0

    def _tree(self) -> list[psutil.Process]:
        try:
            return [self.process, *self.process.children(recursive=True)]
        except psutil.Error:
            return [self.process]

    def _cpu(self) -> float:
        total = 0.0
        for process in self._tree():
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                total += times.user + times.system
        return total

    def _rss(self) -> int:
        total = 0
        for process in self._tree():
            with contextlib.suppress(psutil.Error):
                total += process.memory_info().rss
        return total

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            rss = self._rss()
            self.rss_samples.append(rss)
            self.rss_max = max(self.rss_max, rss)

    def __enter__(self) -> ProcessSampler:
        self._cpu0 = self._cpu()
        self._t0 = time.monotonic()
        self.rss_max = self._rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.seconds = time.monotonic() - self._t0
        self.cores = (self._cpu() - self._cpu0) / self.seconds if self.seconds else 0.0

    def figures(self, prefix: str) -> dict[str, Any]:
        return {
            f"{prefix}_cpu_cores": round(self.cores, 3),
            f"{prefix}_rss_mb": round(self.rss_max / 2**20, 1),
            f"{prefix}_rss_slope_mb_per_min": self.rss_slope_mb_per_min(),
        }

    def rss_slope_mb_per_min(self) -> float | None:
        """Least-squares slope of the RSS samples over the window: ~0 when memory is flat,
        a steady climb when something accumulates (None: fewer than 10 samples)."""
        samples = self.rss_samples
        n = len(samples)
        if n < 10:
            return None
        xs = [i * self.interval_s / 60 for i in range(n)]
        mean_x, mean_y = sum(xs) / n, sum(samples) / n
        spread = sum((x - mean_x) ** 2 for x in xs)
        slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, samples, strict=True)) / spread
        return round(slope / 2**20, 3)


def sample_process(pid: int) -> ProcessSampler:
    return ProcessSampler(pid)


def _wait(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:g} s")
        time.sleep(interval)


def add_profile_option(parser: argparse.ArgumentParser) -> None:
    """``--profile DIR``: the run's bridge and API under py-spy (see the module docstring)."""

    def directory(value: str) -> Path:
        path = Path(value).resolve()
        os.environ[PROFILE_ENV] = str(path)
        return path

    parser.add_argument(
        "--profile",
        metavar="DIR",
        type=directory,
        help="run the bridge and the API under py-spy; collapsed stacks in DIR "
        "(read them with bench/profile_report.py)",
    )

    class GilOnly(argparse.Action):
        def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
            os.environ[PROFILE_GIL_ENV] = "1"
            setattr(namespace, self.dest, True)

    parser.add_argument(
        "--profile-gil",
        action=GilOnly,
        nargs=0,
        default=False,
        help="with --profile: sample only the thread holding the GIL (Python's own CPU)",
    )


def profiled(name: str, argv: list[str]) -> list[str]:
    """``argv`` under py-spy when ``JAXMBA_BENCH_PROFILE`` names a directory, else as it is."""
    directory = os.environ.get(PROFILE_ENV)
    if not directory:
        return argv
    spy = shutil.which("py-spy", path=str(Path(PYTHON).parent)) or shutil.which("py-spy")
    if spy is None:
        raise RuntimeError(f"{PROFILE_ENV} is set but py-spy is not installed (scripts/setup)")
    Path(directory).mkdir(parents=True, exist_ok=True)
    output = Path(directory, f"{name}.txt").resolve()
    rate = str(PROFILE_RATE_HZ)
    gil = ["--gil"] if os.environ.get(PROFILE_GIL_ENV) == "1" else []
    record = [spy, "record", "--nonblocking", "--subprocesses", *gil, "--rate", rate]
    return [*record, "--format", "raw"] + [
        "--output",
        str(output),
        "--",
        *argv,
    ]


class Child:
    """A child process with its output in a log file."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], workdir: Path) -> None:
        self.name = name
        self.log_path = workdir / f"{name}.log"
        wrapped = profiled(name, argv)
        # py-spy writes its profile when interrupted, and ends what it runs: stop it with SIGINT.
        self._stop_signal = signal.SIGTERM if wrapped is argv else signal.SIGINT
        argv = wrapped
        self._log = self.log_path.open("wb")
        self.popen = subprocess.Popen(  # noqa: S603 - our own interpreter and modules
            argv, env=dict(env), cwd=workdir, stdout=self._log, stderr=subprocess.STDOUT
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def check_alive(self) -> None:
        if self.popen.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.popen.returncode}:\n{self.tail()}")

    def tail(self, lines: int = LOG_TAIL_LINES) -> str:
        self._log.flush()
        text_ = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text_[-lines:])

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(self._stop_signal)
            try:
                self.popen.wait(CHILD_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._log.close()


class Stack:
    """Broker, database, bridge and API for one benchmark run (see the module docstring)."""

    def __init__(
        self,
        *,
        status_interval_s: float = 5.0,
        keep: bool = False,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.status_interval_s = status_interval_s
        self.env = dict(env or {})  # more settings for the children, e.g. JAXMBA_SERVICE_...
        self.workdir = Path(tempfile.mkdtemp(prefix="jaxmba-bench-"))
        self.keep = keep
        self._exit = contextlib.ExitStack()
        self.service_password = generate_password()
        self.broker_: LocalBroker | None = None
        self.db_url: URL | None = None
        self.engine: Engine | None = None
        self.bridge_: Child | None = None
        self.api_: Child | None = None
        self.api_url = ""
        self.token = ""
        self.children: list[Child] = []
        # The service's processes write their metrics here (a counter of the bridge is how a
        # bench tells statuses replaced by a newer one, by design, from statuses lost).
        self.metrics_dir = self.workdir / "metrics"

    # -- context ----------------------------------------------------------------------------------
    def __enter__(self) -> Stack:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None:
            for child in self.children:
                print(f"--- {child.name} log (tail) ---\n{child.tail()}", file=sys.stderr)
        self._exit.close()
        if self.keep:
            print(f"kept {self.workdir}", file=sys.stderr)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- pieces -----------------------------------------------------------------------------------
    def broker(self, accounts: Mapping[str, str]) -> LocalBroker:
        users = {SERVICE_USER: self.service_password, OPERATOR_USER: generate_password()}
        users.update(accounts)
        broker = LocalBroker(self.workdir / "mosquitto", users)
        broker.start()
        self._exit.callback(broker.stop)
        self.broker_ = broker
        return broker

    def database(self) -> Engine:
        from controlsvc.store import migrate

        server = self._exit.enter_context(postgres_server())
        url = create_database(server, prefix="jaxmba_bench")
        self._exit.callback(drop_database, url)
        migrate.upgrade(migrate.alembic_config(url.render_as_string(hide_password=False)))
        engine = create_engine(url, pool_size=2)
        self._exit.callback(engine.dispose)
        self.db_url, self.engine = url, engine
        return engine

    def child_env(self) -> dict[str, str]:
        assert self.broker_ is not None
        assert self.db_url is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith("JAXMBA_")}
        env.update(
            {
                "FLASK_CONFIG": "prod",
                "PYTHONPATH": str(REPO),
                "JAXMBA_DATABASE_URL": self.db_url.render_as_string(hide_password=False),
                "JAXMBA_MQTT_HOST": self.broker_.host,
                "JAXMBA_MQTT_PORT": str(self.broker_.service_port),
                "JAXMBA_MQTT_USERNAME": SERVICE_USER,
                "JAXMBA_MQTT_PASSWORD": self.service_password,
                "JAXMBA_SECRETS_SECRET_KEY": secrets.token_hex(32),
                "JAXMBA_SECRETS_JWT_SECRET_KEY": secrets.token_hex(32),
                "JAXMBA_SERVICE_LOG_LEVEL": "WARNING",
                "JAXMBA_SERVICE_STATUS_INTERVAL_S": str(self.status_interval_s),
                "JAXMBA_MAIL_BACKEND": "console",
                "JAXMBA_SERVICE_METRICS_DIR": str(self.metrics_dir),
            }
        )
        env.update(self.env)
        return env

    def statuses_coalesced(self, settle_s: float = 2.0) -> int:
        """Statuses the bridge replaced by a newer one of their enclosure before writing them
        (by design when it falls behind: not lost)."""
        return int(self.bridge_counter("jaxmba_bridge_statuses_coalesced", settle_s))

    def statuses_written(self, *, history_rows: bool = True) -> int:
        """Statuses the bridge wrote, as of now: the history's rows while it keeps every
        status, else its own counter (the history keeps only some)."""
        if history_rows:
            return int(self.scalar("SELECT count(*) FROM status_history"))
        return int(self.bridge_counter("jaxmba_bridge_messages_written", 0, {"kind": "status"}))

    def statuses_done(self, *, history_rows: bool = True) -> int:
        """Statuses the bridge is done with, as of now: written or coalesced. A drain that
        counted the written ones alone would wait, after coalescing, for rows that never come
        (until its quiet period or cap)."""
        return self.statuses_written(history_rows=history_rows) + self.statuses_coalesced(0)

    def bridge_counter(
        self, name: str, settle_s: float = 2.0, labels: Mapping[str, str] | None = None
    ) -> float:
        """A counter of the service's processes (summed over the samples with ``labels``), once
        it held still for ``settle_s`` (the bridge exports its counters after each batch and
        when idle); ``settle_s=0``: as it is now."""
        wanted = dict(labels or {})
        from prometheus_client import CollectorRegistry
        from prometheus_client.multiprocess import MultiProcessCollector

        def read() -> float:
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=str(self.metrics_dir))  # type: ignore[no-untyped-call]
            return sum(
                sample.value
                for metric in registry.collect()
                for sample in metric.samples
                if sample.name in (name, f"{name}_total")
                and all(sample.labels.get(k) == v for k, v in wanted.items())
            )

        value = read()
        while settle_s > 0:
            time.sleep(settle_s)
            again = read()
            if again == value:
                return value
            value = again
        return value

    def bridge(self) -> Child:
        """``python -m controlsvc bridge``; returns once ``service/state`` says online."""
        assert self.broker_ is not None
        override = os.environ.get(BRIDGE_OVERRIDE_ENV)
        argv = shlex.split(override) if override else [PYTHON, "-m", "controlsvc", "bridge"]
        child = Child("bridge", argv, self.child_env(), self.workdir)
        self.children.append(child)
        self._exit.callback(child.stop)
        self.bridge_ = child
        self.wait_service_online(child)
        return child

    def wait_service_online(self, child: Child) -> None:
        """Wait for the retained ``service/state`` to say online (the bridge is subscribed)."""
        assert self.broker_ is not None
        online = threading.Event()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        client.username_pw_set(SERVICE_USER, self.service_password)

        def on_message(_c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
            with contextlib.suppress(ValueError):
                if json.loads(message.payload).get("online") is True:
                    online.set()

        client.on_message = on_message
        prefix = self.broker_.prefix
        client.on_connect = lambda c, *_: c.subscribe(f"{prefix}/service/state", qos=1)
        client.connect(self.broker_.host, self.broker_.service_port)
        client.loop_start()
        try:

            def ready() -> bool:
                child.check_alive()  # raises, with the log's tail, if it died
                return online.is_set()

            _wait(
                ready,
                CHILD_READY_TIMEOUT_S,
                "the bridge announcing service/state online",
            )
        finally:
            client.disconnect()
            client.loop_stop()

    def api(self, workers: int = API_WORKERS) -> str:
        """The API under gunicorn; returns its base URL once it answers, with ``self.token``
        an admin's access token."""
        assert self.engine is not None
        self._create_admin()
        port = find_free_port()
        argv = [
            PYTHON,
            str(REPO / "bench" / "_api_server.py"),
            "127.0.0.1",
            str(port),
            str(workers),
        ]
        child = Child("api", argv, self.child_env(), self.workdir)
        self.children.append(child)
        self._exit.callback(child.stop)
        self.api_ = child
        self.api_url = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            child.check_alive()
            try:
                return httpx.get(f"{self.api_url}/api/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        _wait(healthy, CHILD_READY_TIMEOUT_S, "the API answering /api/health", interval=0.2)
        response = httpx.post(
            f"{self.api_url}/api/auth/login",
            json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD},
            timeout=30,
        )
        response.raise_for_status()
        self.token = response.json()["access_token"]
        return self.api_url

    def _create_admin(self) -> None:
        from controlsvc.store import users
        from controlsvc.store.db import Database

        assert self.db_url is not None
        database = Database(self.db_url)
        try:
            with database.session() as session:
                users.create_user(session, email=ADMIN_EMAIL, password=ADMIN_PASSWORD, role="admin")
        finally:
            database.dispose()

    # -- reading the database ---------------------------------------------------------------------
    def scalar(self, sql: str, **params: Any) -> Any:
        assert self.engine is not None
        with self.engine.connect() as conn:
            return conn.execute(text(sql), params).scalar()

    def rows(self, sql: str, **params: Any) -> list[Any]:
        assert self.engine is not None
        with self.engine.connect() as conn:
            return list(conn.execute(text(sql), params))

    def wait_rows(
        self,
        expected: int,
        *,
        quiet_s: float,
        cap_s: float,
        poll_s: float = 0.05,
        count: Callable[[], int] | None = None,
    ) -> tuple[int, float]:
        """Wait until ``status_history`` holds ``expected`` rows (or ``count()`` says so), or
        the count has not grown for ``quiet_s`` (the bridge stopped making progress), or
        ``cap_s`` passed; returns the count and the seconds until it last changed."""
        started = time.monotonic()
        last, last_change = -1, started
        while True:
            rows = count() if count else int(self.scalar("SELECT count(*) FROM status_history"))
            now = time.monotonic()
            if rows != last:
                last, last_change = rows, now
            if rows >= expected or now - last_change > quiet_s or now - started > cap_s:
                return rows, last_change - started
            time.sleep(poll_s)

    def wait_db(
        self, sql: str, predicate: Callable[[Any], bool], timeout: float, what: str, **params: Any
    ) -> Any:
        """Poll ``sql`` (one value) until ``predicate`` holds; the children must stay alive."""
        last: list[Any] = [None]

        def check() -> bool:
            for child in self.children:
                child.check_alive()
            last[0] = self.scalar(sql, **params)
            return predicate(last[0])

        try:
            _wait(check, timeout, what, interval=0.05)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc} (last value: {last[0]})") from None
        return last[0]


FLEET_NICE = 10  # the simulated enclosures yield the CPU to the system under test


def start_fleet(fleet: Any, timeout: float, nice: int = FLEET_NICE) -> float:
    """Start ``fleet`` with its loop threads at ``nice`` and wait until every enclosure is
    ready; the seconds that took.

    The simulated enclosures stand for other machines; on this one they yield the CPU to the
    broker, the bridge, the API and PostgreSQL. Linux applies niceness per thread and new
    threads inherit their creator's, so the fleet is started from a thread of its own that
    lowers only its own priority: this thread, and the children it starts later, keep theirs.
    """
    outcome: list[BaseException | float] = []

    def starter() -> None:
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
            started = time.monotonic()
            fleet.start(timeout=timeout)
            outcome.append(time.monotonic() - started)
        except BaseException as exc:  # handed to the caller
            outcome.append(exc)

    thread = threading.Thread(target=starter, name="fleet-starter")
    thread.start()
    thread.join()
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]
