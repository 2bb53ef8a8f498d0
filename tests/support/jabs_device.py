"""A legacy device simulator: behaves as the original JABS device client (jabs-compat.md §3).

It posts a heartbeat, obeys the answer, and says how long it waits before the next one:
``interval`` normally, 1 s after a command. START's ``parameters`` is parsed from its JSON
string; it records for ``duration`` seconds, then stops by itself (keeping ``session_id``);
STOP stops it (keeping ``session_id``); COMPLETE is the only way it drops the session; STREAM
turns streaming on, any reply without it turns it off. A 200 without a string ``command_name``
or with a non-string ``parameters`` would kill the real client: here it raises
``ClientKilled``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

Post = Callable[[str, dict[str, Any]], tuple[int, Any]]
COMMAND_REPOLL_S = 1.0


class ClientKilled(AssertionError):
    """What would have crashed the original client."""


def cpprest_now() -> str:
    """UTC with 'Z' and 7 fractional digits, as cpprest writes it."""
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond:06d}0Z"


@dataclass
class LegacyDevice:
    name: str
    post: Post
    path: str = "/jabs/device/heartbeat"
    interval: float = 10.0
    location: str | None = "room 1"
    clock: Callable[[], float] = time.monotonic
    session_id: int | None = None
    recording: bool = False
    streaming: bool = False
    err_msg: str | None = None
    parameters: dict[str, Any] | None = None
    started: float | None = None
    elapsed: int = 0
    fail_with: str | None = None  # the next START fails with this error
    log: list[tuple[int, str | None]] = field(default_factory=list)

    def _tick(self) -> None:
        """Stop by itself once the duration is recorded."""
        if self.recording and self.started is not None and self.parameters is not None:
            self.elapsed = int(self.clock() - self.started)
            if self.elapsed >= int(self.parameters["duration"]):
                self.recording = False

    def heartbeat(self) -> dict[str, Any]:
        self._tick()
        camera: dict[str, Any] = {"recording": self.recording}
        if self.recording:
            camera.update(duration=self.elapsed, fps=29.97)
        elif self.elapsed:
            camera["duration"] = self.elapsed
        body: dict[str, Any] = {
            "name": self.name,
            "timestamp": cpprest_now(),
            "state": "BUSY" if self.session_id is not None else "IDLE",  # obsolete, still sent
            "sensor_status": {"camera": camera},
            "system_info": {
                "release": "Ubuntu 16.04",
                "uptime": 12345,
                "load": 0.5,
                "free_ram": 4_000_000,
                "total_ram": 8_000_000,
                "free_disk": 500_000,
                "total_disk": 900_000,
            },
        }
        if self.location is not None:
            body["location"] = self.location
        if self.session_id is not None:
            body["session_id"] = self.session_id
        if self.err_msg is not None:
            body["err_msg"] = self.err_msg
        return body

    def beat(self) -> tuple[str | None, float]:
        """One heartbeat: the command obeyed (None: none) and the wait before the next."""
        status, reply = self.post(self.path, self.heartbeat())
        command = None
        if status == 200:
            if not isinstance(reply, dict) or not isinstance(reply.get("command_name"), str):
                raise ClientKilled(f"200 without a string command_name: {reply!r}")
            command = reply["command_name"]
            parameters = reply.get("parameters")
            if parameters is not None and not isinstance(parameters, str):
                raise ClientKilled(f"parameters is not a string: {parameters!r}")
            self._obey(command, parameters)
        elif status != 204 and status < 400:
            pass  # other 2xx: no command
        if command != "STREAM":
            self.streaming = False
        self.log.append((status, command))
        return command, (
            COMMAND_REPOLL_S if command in ("START", "STOP", "COMPLETE") else self.interval
        )

    def _obey(self, command: str, parameters: str | None) -> None:
        if command == "START":
            assert parameters is not None, "START without parameters"
            params = json.loads(parameters)
            for key, kind in (
                ("session_id", int),
                ("duration", int),
                ("fragment_hourly", bool),
                ("apply_filter", bool),
                ("target_fps", int),
            ):
                if not isinstance(params.get(key), kind):
                    raise ClientKilled(f"START parameter {key} is not {kind.__name__}: {params}")
            self.parameters = params
            self.session_id = params["session_id"]
            self.elapsed = 0
            if self.fail_with is not None:
                self.err_msg, self.fail_with = self.fail_with, None
                self.recording = False
                return
            self.recording = True
            self.started = self.clock()
        elif command == "STOP":
            self._tick()
            self.recording = False
        elif command == "COMPLETE":
            self.session_id = None
            self.elapsed = 0
            self.err_msg = None
            self.parameters = None
            self.started = None
        elif command == "STREAM":
            self.streaming = True


def flask_post(client: Any) -> Post:
    """``LegacyDevice.post`` over a Flask test client (a 200 must be application/json)."""

    def send(path: str, body: dict[str, Any]) -> tuple[int, Any]:
        response = client.post(path, json=body)
        if response.status_code == 200:
            assert response.mimetype == "application/json"
        return response.status_code, response.get_json(silent=True)

    return send
