"""Helpers for the agent's integration tests (no tests here): configs, agents, a service client.

The broker fixtures come from ``tests.support.broker``; importing this module's names into a
test module brings them along.
"""

# ruff: noqa: F811 (pytest fixtures are imported by name, then requested as parameters)

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import av
import pytest

from controlsvc.broker import LocalBroker
from enclosure_agent.agent import ExitReason
from enclosure_agent.config import AgentConfig, validate_config
from enclosure_agent.recorder import FrameSource
from enclosure_agent.runner import AgentRunner
from schemas.codec import parse_message
from schemas.commands import Ack
from schemas.enums import AckResult
from schemas.events import Event
from schemas.messages import Desired, DesiredRecording, EnclosureStateMessage
from schemas.status import Status
from tests.support.broker import (  # noqa: F401 (fixtures)
    broker_enclosure,
    mosquitto,
    mosquitto_factory,
    mqtt_client,
)
from tests.support.mqtt import MqttTestClient
from tests.support.waiting import wait_for

SERVICE = "jaxmba_service"
PREFIX = "jaxmba/v1"
REPO = Path(__file__).resolve().parents[2]
FPS = 30
WIDTH, HEIGHT = 320, 240


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


def agent_data(
    tmp_path: Path, broker: LocalBroker, eid: str, password: str, **sections: Any
) -> dict[str, Any]:
    """A config document for ``eid`` on ``broker``, fast for tests (1 s status interval)."""
    base: dict[str, Any] = {
        "agent": {"enclosure_id": eid, "state_dir": str(tmp_path / f"state-{eid}")},
        "broker": {
            "url": f"mqtt://{eid}:{password}@{broker.host}:{broker.port}",
            "reconnect_min_s": 1,
            "reconnect_max_s": 2,
        },
        "camera": {"width": WIDTH, "height": HEIGHT, "fps": FPS, "stall_timeout_s": 1.0},
        "recording": {
            "root": str(tmp_path / "recordings"),
            "disk_reserve_bytes": 1024**2,
            "preset": "ultrafast",
            "disk_check_interval_s": 1,
        },
        "status": {"interval_s": 1},
        "preview": {"fps": 5, "width": 160},
    }
    return _merge(base, sections)


def agent_config(
    tmp_path: Path, broker: LocalBroker, eid: str, password: str, **sections: Any
) -> AgentConfig:
    return validate_config(agent_data(tmp_path, broker, eid, password, **sections))


def write_toml(path: Path, data: dict[str, Any]) -> Path:
    """``data`` (two levels of tables) as a TOML file."""
    lines = []
    for section, values in data.items():
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {json.dumps(value)}" for key, value in values.items())
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


class AgentThread(AgentRunner):
    """An in-process agent (``AgentRunner``) that also checks no agent task raised."""

    def start(self, ready_timeout_s: float | None = 15) -> AgentThread:
        super().start(ready_timeout_s)
        return self

    def wait(self, timeout_s: float | None = 60) -> ExitReason | None:
        reason = super().wait(timeout_s)
        assert not self.running, "agent did not stop"
        assert self.agent.loop.failures == 0, "an agent task raised (see the log)"
        return reason


@pytest.fixture
def run_agent() -> Iterator[Callable[..., AgentThread]]:
    """Start in-process agents; all are stopped at teardown."""
    started: list[AgentThread] = []

    def start(config: AgentConfig, source: FrameSource | None = None) -> AgentThread:
        run = AgentThread(config, source=source).start()
        started.append(run)
        return run

    try:
        yield start
    finally:
        for run in started:
            run.stop()


class AgentProcess:
    """``python -m enclosure_agent run --config FILE`` as a child process."""

    def __init__(
        self,
        config_file: Path,
        log_file: Path,
        *,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """``env``: added to the agent's environment (e.g. a shifted clock)."""
        self.log_file = log_file
        self._log = log_file.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "enclosure_agent", "run", "--config", str(config_file)],
            cwd=REPO,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)

    def terminate(self, timeout: float = 60) -> int:
        self.process.terminate()
        return self.process.wait(timeout)

    def close(self) -> None:
        if self.process.poll() is None:
            self.kill()
        self._log.close()

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")


class Service:
    """The control service's side of one enclosure's topics, for tests."""

    def __init__(self, client: MqttTestClient, eid: str) -> None:
        self.client = client
        self.eid = eid
        client.subscribe(f"{PREFIX}/enc/{eid}/#")

    def topic(self, channel: str) -> str:
        return f"{PREFIX}/enc/{self.eid}/{channel}"

    # -- sending ----------------------------------------------------------------------------------
    def command(
        self,
        kind: str,
        params: dict[str, Any] | None = None,
        *,
        expires_in_s: float = 30,
        command_id: uuid.UUID | None = None,
        raw: bytes | None = None,
        properties: Any = None,
    ) -> uuid.UUID:
        command_id = command_id or uuid.uuid4()
        payload = (
            raw
            or json.dumps(
                {
                    "v": 1,
                    "at": datetime.now(UTC).isoformat(),
                    "id": str(command_id),
                    "kind": kind,
                    "params": params or {},
                    "expires_at": (datetime.now(UTC) + timedelta(seconds=expires_in_s)).isoformat(),
                }
            ).encode()
        )
        assert self.client.publish(self.topic("cmd"), payload, properties=properties) == 0
        return command_id

    def desired(
        self,
        version: int,
        recording: DesiredRecording | None = None,
        live_view_until: datetime | None = None,
    ) -> None:
        doc = Desired(version=version, recording=recording, live_view_until=live_view_until)
        payload = doc.model_dump_json().encode()
        assert self.client.publish(self.topic("desired"), payload, retain=True) == 0

    # -- receiving --------------------------------------------------------------------------------
    def acks(self, command_id: uuid.UUID) -> list[Ack]:
        out = []
        for msg in self.client.received(self.topic("ack")):
            ack = parse_message(Ack, msg.payload)
            if ack.command_id == command_id:
                out.append(ack)
        return out

    def ack(self, command_id: uuid.UUID, timeout: float = 15) -> Ack:
        """The final answer to ``command_id``."""

        def final() -> Ack | None:
            return next(
                (a for a in self.acks(command_id) if a.result is not AckResult.ACCEPTED), None
            )

        return wait_for(final, timeout, message=f"no final ack for {command_id}")

    def events(self, kind: str | None = None) -> list[Event]:
        events = [
            parse_message(Event, m.payload) for m in self.client.received(self.topic("events"))
        ]
        return [e for e in events if kind is None or e.kind == kind]

    def event(
        self, kind: str, where: Callable[[Event], bool] = lambda e: True, timeout: float = 20
    ) -> Event:
        return wait_for(
            lambda: next((e for e in self.events(kind) if where(e)), None),
            timeout,
            message=lambda: f"no {kind} event; got {[e.kind.value for e in self.events()]}",
        )

    def states(self) -> list[EnclosureStateMessage]:
        return [
            parse_message(EnclosureStateMessage, m.payload)
            for m in self.client.received(self.topic("state"))
        ]

    def statuses(self) -> list[Status]:
        return [
            parse_message(Status, m.payload) for m in self.client.received(self.topic("status"))
        ]

    def status(self, where: Callable[[Status], bool], timeout: float = 15) -> Status:
        return wait_for(
            lambda: next((s for s in reversed(self.statuses()) if where(s)), None),
            timeout,
            message="no matching status",
        )


@pytest.fixture
def service_for(mqtt_client: Callable[..., MqttTestClient]) -> Callable[..., Service]:
    def connect(broker: LocalBroker, eid: str, **kwargs: Any) -> Service:
        return Service(mqtt_client(broker, SERVICE, **kwargs), eid)

    return connect


def plan(session_id: str, start_in_s: float, duration_s: float, **fields: Any) -> DesiredRecording:
    start = datetime.now(UTC) + timedelta(seconds=start_in_s)
    return DesiredRecording(
        session_id=session_id,
        file_prefix=fields.pop("file_prefix", "cage"),
        start_at=start,
        end_at=start + timedelta(seconds=duration_s),
        **fields,
    )


def decode_times(path: Path) -> list[float]:
    """Presentation times (s) of every frame decoded from a video file."""
    with av.open(str(path)) as container:
        return [float(frame.time or 0.0) for frame in container.decode(video=0)]


def segments(root: Path, session_id: str) -> list[Path]:
    """The session's files in recording order: by start second, then by the ``-N`` a file
    started in the same second as another gets (by name alone ``…Z-1.mkv`` sorts before
    ``…Z.mkv``)."""

    def order(path: Path) -> tuple[str, int]:
        stem, _, serial = path.stem.rpartition("-")
        if serial.isdigit() and stem.endswith("Z"):
            return stem, int(serial)
        return path.stem, 0

    return sorted((root / session_id).glob("*.mkv"), key=order)
