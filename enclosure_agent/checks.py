"""``jaxmba-agent check``: is this enclosure ready to record? One line per check.

Checks the camera (opens and delivers a frame), the recording disk (writable, free space
against the reserve), the state directory and outbox, the clock (NTP synchronisation) and
the broker (logs in with the configured credentials). A running agent holds the camera and
its MQTT session, so those two are skipped while it runs (its ``status`` tells instead).
"""

from __future__ import annotations

import fcntl
import os
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from enclosure_agent.config import AgentConfig
from enclosure_agent.errors import AgentError, BrokerError, BrokerRefused
from enclosure_agent.health import disk_space, existing_ancestor, ntp_synchronized
from enclosure_agent.outbox import Outbox
from enclosure_agent.recorder import RecorderError, open_source

__all__ = ["CheckResult", "run_checks"]

CAMERA_TIMEOUT_S = 10.0  # a camera that gives no frame in this long is not working
BROKER_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    ok: bool
    message: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'}  {self.name}: {self.message}"


def _gib(count: int) -> str:
    return f"{count / 1024**3:.1f} GiB"


def running_agent_pid(config: AgentConfig) -> int | None:
    """The pid of an agent holding this state directory's lock, if one runs."""
    path = config.state_dir / "agent.lock"
    try:
        handle = path.open("r", encoding="ascii")
    except OSError:
        return None
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = handle.read().strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    return None


def check_camera(config: AgentConfig, agent_pid: int | None) -> CheckResult:
    camera = config.camera
    if agent_pid is not None and not camera.source.startswith("testpattern"):
        return CheckResult("camera", True, f"skipped: the agent (pid {agent_pid}) holds it")
    try:
        source = open_source(camera.source, camera.width, camera.height, float(camera.fps))
        started = time.monotonic()
        source.open()
    except (RecorderError, ValueError) as exc:
        return CheckResult("camera", False, f"{camera.source}: cannot open: {exc}")
    try:
        deadline = started + CAMERA_TIMEOUT_S
        frame = None
        while frame is None and time.monotonic() < deadline:
            frame = source.read(min(1.0, max(0.0, deadline - time.monotonic())))
    except RecorderError as exc:
        return CheckResult("camera", False, f"{source.describe()}: read failed: {exc}")
    finally:
        source.close()
    if frame is None:
        return CheckResult(
            "camera", False, f"{source.describe()}: no frame within {CAMERA_TIMEOUT_S:g} s"
        )
    return CheckResult(
        "camera",
        True,
        f"{source.describe()}: first frame {frame.width}x{frame.height}"
        f" {frame.pixel_format.value} after {time.monotonic() - started:.2f} s",
    )


def _writable(directory: Path) -> str | None:
    try:
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".jaxmba-check-"):
            pass
    except OSError as exc:
        return str(exc)
    return None


def check_disk(config: AgentConfig) -> CheckResult:
    root = config.recording.root
    target = root if root.exists() else existing_ancestor(root)
    if root.exists() and not root.is_dir():
        return CheckResult("disk", False, f"{root} is not a directory")
    problem = _writable(target)
    if problem is not None:
        return CheckResult("disk", False, f"cannot write in {target}: {problem}")
    space = disk_space(root)
    reserve = config.recording.disk_reserve_bytes
    where = str(root) if root.exists() else f"{root} (will be created under {target})"
    figures = f"{_gib(space.free_bytes)} free of {_gib(space.total_bytes)} on {where}"
    if space.free_bytes < reserve:
        return CheckResult("disk", False, f"{figures}: below the reserve of {_gib(reserve)}")
    return CheckResult("disk", True, f"{figures} (reserve {_gib(reserve)})")


def check_state(config: AgentConfig) -> CheckResult:
    state_dir = config.state_dir
    try:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        return CheckResult("state", False, f"cannot create {state_dir}: {exc}")
    problem = _writable(state_dir)
    if problem is not None:
        return CheckResult("state", False, f"cannot write in {state_dir}: {problem}")
    try:
        outbox = Outbox(config.outbox_path)
        try:
            queued = len(outbox)
        finally:
            outbox.close()
    except AgentError as exc:
        return CheckResult("state", False, str(exc))
    return CheckResult("state", True, f"{state_dir}; {queued} event(s) waiting in the outbox")


def check_clock() -> CheckResult:
    synced = ntp_synchronized(fresh=True)
    if synced is None:
        return CheckResult("clock", True, "NTP state unknown (no timedatectl or adjtimex answer)")
    if not synced:
        return CheckResult(
            "clock", False, "not NTP-synchronised: frame times may drift (check chrony/timesyncd)"
        )
    return CheckResult("clock", True, "NTP-synchronised")


def check_broker(config: AgentConfig, agent_pid: int | None) -> CheckResult:
    url = config.broker.parsed
    where = url.redacted()
    if agent_pid is not None:
        return CheckResult(
            "broker",
            True,
            f"skipped: the agent (pid {agent_pid}) is connected as {config.enclosure_id}",
        )
    from enclosure_agent.link import Outgoing
    from enclosure_agent.mqtt import LinkSettings, probe_login

    settings = LinkSettings(
        host=url.host,
        port=url.port,
        client_id=f"{config.enclosure_id}-check-{secrets.token_hex(3)}",
        username=config.enclosure_id,
        password=url.password,
        keepalive_s=10,
        session_expiry_s=0,
        will=Outgoing("unused", b""),
        tls=url.tls,
        ca_file=config.broker.ca_file,
    )
    try:
        elapsed = probe_login(settings, BROKER_TIMEOUT_S)
    except BrokerRefused as exc:
        return CheckResult("broker", False, f"{where}: login refused: {exc.reason}")
    except BrokerError as exc:
        return CheckResult("broker", False, f"{where}: {exc}")
    return CheckResult(
        "broker", True, f"logged in to {where} as {config.enclosure_id} ({elapsed * 1000:.0f} ms)"
    )


def run_checks(config: AgentConfig) -> Iterator[CheckResult]:
    """Every check, in order (each as soon as it is done)."""
    agent_pid = running_agent_pid(config)
    steps: list[Callable[[], CheckResult]] = [
        lambda: check_camera(config, agent_pid),
        lambda: check_disk(config),
        lambda: check_state(config),
        check_clock,
        lambda: check_broker(config, agent_pid),
    ]
    for step in steps:
        yield step()


def config_private(path: Path) -> CheckResult:
    mode = os.stat(path).st_mode & 0o777
    if mode & 0o077:
        return CheckResult(
            "config", False, f"{path} is mode {mode:o}; it holds the broker password: chmod 600"
        )
    return CheckResult("config", True, f"{path} (mode {mode:o})")
