"""The whole system as production runs it, for end-to-end and fault tests: the bridge and the API
(gunicorn) as child processes of their own, and real ``jaxmba-agent`` processes recording the
test pattern. PostgreSQL and Mosquitto come from ``tests/support/postgres.py`` and
``tests/support/broker.py``.

::

    env = service_env(db_url, broker, metrics_dir=tmp / "metrics", status_interval_s=1)
    bridge = ServiceProcess(["bridge"], env, tmp / "bridge-1.log")
    api = ServiceProcess.api(env, tmp / "api.log")      # api.base: http://127.0.0.1:<port>
    agents = Agents(tmp, broker, width=64, height=48, fps=10, segment_seconds=10)
    agents.start("enc-a")
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from controlsvc.broker import SERVICE_USER, LocalBroker, find_free_port
from tests.integration.test_agent_harness import REPO, AgentProcess, agent_data, write_toml
from tests.support.waiting import wait_for

TRACEBACK = "Traceback (most recent call last)"
STOP_TIMEOUT_S = 15.0


def service_env(
    db_url: str,
    broker: LocalBroker,
    *,
    client_id: str | None = None,
    profile: str = "prod",
    **service: Any,
) -> dict[str, str]:
    """Environment for ``python -m controlsvc ...`` on ``db_url`` and ``broker`` (the service
    account); ``service`` keywords become ``JAXMBA_SERVICE_<KEY>`` (e.g. ``status_interval_s``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAXMBA_")}
    env.update(
        {
            "FLASK_CONFIG": profile,
            "PYTHONPATH": str(REPO),
            "JAXMBA_DATABASE_URL": db_url,
            "JAXMBA_MQTT_HOST": broker.host,
            "JAXMBA_MQTT_PORT": str(broker.port_for(SERVICE_USER)),  # the service's listener
            "JAXMBA_MQTT_USERNAME": SERVICE_USER,
            "JAXMBA_MQTT_PASSWORD": broker.accounts[SERVICE_USER],
            "JAXMBA_MQTT_CLIENT_ID": client_id or f"jaxmba_test_{secrets.token_hex(3)}",
            "JAXMBA_SECRETS_SECRET_KEY": secrets.token_hex(32),
            "JAXMBA_SECRETS_JWT_SECRET_KEY": secrets.token_hex(32),
            "JAXMBA_MAIL_BACKEND": "console",
        }
    )
    env.update({f"JAXMBA_SERVICE_{key.upper()}": str(value) for key, value in service.items()})
    return env


class ServiceProcess:
    """``python -m controlsvc ARGS`` as a child process, its output in ``log_file``."""

    def __init__(self, args: Sequence[str], env: Mapping[str, str], log_file: Path) -> None:
        self.log_file = log_file
        self._log = log_file.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "controlsvc", *args],
            cwd=REPO,
            env=dict(env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @classmethod
    def api(
        cls, env: Mapping[str, str], log_file: Path, workers: int = 1, *, wait: bool = True
    ) -> ServiceProcess:
        """The API under gunicorn on a free loopback port; returns once it answers (``wait``),
        else at once (then ``wait_answering()`` before using it)."""
        port = find_free_port()
        args = ["gunicorn_run", "--host", "127.0.0.1", "--port", str(port)]
        api = cls([*args, "--workers", str(workers)], env, log_file)
        api.base = f"http://127.0.0.1:{port}"
        if wait:
            api.wait_answering()
        return api

    base = ""  # the API's URL (``api()`` only)

    def wait_answering(self) -> None:
        wait_for(
            lambda: self.answers() or self.process.poll() is not None,
            60,
            interval=0.2,
            message=lambda: f"the API never answered:\n{self.log()[-3000:]}",
        )
        assert self.process.poll() is None, f"the API exited:\n{self.log()[-3000:]}"

    def answers(self) -> bool:
        try:
            return httpx.get(f"{self.base}/api/health", timeout=2).status_code < 500
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        """kill -9."""
        self.process.kill()
        self.process.wait(10)

    def terminate(self) -> None:
        """Ask it to stop (SIGTERM) without waiting: ``close()`` waits."""
        if self.process.poll() is None:
            self.process.terminate()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")


class Agents:
    """Enclosure agents as child processes (``python -m enclosure_agent run``), one config each.

    ``overrides[eid]`` are config sections merged into that agent's config (e.g. another
    ``broker.url``); ``env[eid]`` are variables added to that agent's environment.
    """

    def __init__(
        self,
        tmp_path: Path,
        broker: LocalBroker,
        *,
        width: int = 160,
        height: int = 120,
        fps: int = 10,
        segment_seconds: int = 5,
    ) -> None:
        self.tmp_path = tmp_path
        self.broker = broker
        self.camera = {"width": width, "height": height, "fps": fps}
        self.segment_seconds = segment_seconds
        self.overrides: dict[str, dict[str, Any]] = {}
        self.env: dict[str, dict[str, str]] = {}
        self.running: dict[str, AgentProcess] = {}
        self.configs: dict[str, Path] = {}
        self.roots: dict[str, Path] = {}
        self.logs: dict[str, list[Path]] = {}
        self.runs = 0

    def start(self, eid: str) -> AgentProcess:
        if eid not in self.configs:
            root = self.tmp_path / f"rec-{eid}"
            data = agent_data(
                self.tmp_path,
                self.broker,
                eid,
                self.broker.accounts[eid],
                camera=self.camera,
                recording={"root": str(root), "segment_seconds": self.segment_seconds},
            )
            for section, values in self.overrides.get(eid, {}).items():
                data[section] = {**data[section], **values}
            self.configs[eid] = write_toml(self.tmp_path / f"{eid}.toml", data)
            self.roots[eid] = Path(data["recording"]["root"])
        self.runs += 1
        log_file = self.tmp_path / f"{eid}-{self.runs}.log"
        self.logs.setdefault(eid, []).append(log_file)
        process = AgentProcess(self.configs[eid], log_file, env=self.env.get(eid))
        self.running[eid] = process
        return process

    def kill(self, eid: str) -> None:
        self.running.pop(eid).close()  # kill -9, then close its log

    def exited(self) -> dict[str, str]:
        """Running agents that exited by themselves: {eid: the end of their log}."""
        return {
            eid: self.log(eid)[-2000:]
            for eid, agent in self.running.items()
            if agent.process.poll() is not None
        }

    def close(self) -> None:
        for process in self.running.values():
            process.close()
        self.running.clear()

    def log(self, eid: str) -> str:
        return "".join(path.read_text(errors="replace") for path in self.logs.get(eid, []))
