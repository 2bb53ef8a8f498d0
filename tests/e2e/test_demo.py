"""The README's first command, run for real: `jaxmba-service demo` in a fresh directory.

It must come up (embedded broker, migrated SQLite, admin, bridge, agents, API), show its
enclosures, record real video on command, and stop cleanly on Ctrl-C (SIGINT).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import av
import httpx
import psutil
import pytest

from controlsvc.broker import OPERATOR_USER, find_free_port
from tests.support.mqtt import MqttTestClient
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.mosquitto]

ENCLOSURES = 2


def _login(base: str, demo_dir: Path) -> dict[str, str]:
    admin = json.loads((demo_dir / "admin.json").read_text())
    response = httpx.post(
        f"{base}/api/auth/login",
        json={"email": admin["email"], "password": admin["password"]},
        timeout=10,
    )
    response.raise_for_status()
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def _healthy(base: str) -> bool:
    try:
        return httpx.get(f"{base}/api/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


class AgentEvents:
    """An enclosure's events as the operator account sees them on the demo's broker."""

    def __init__(self, broker_dir: Path, eid: str) -> None:
        credentials = json.loads((broker_dir / "credentials.json").read_text())
        port = int((broker_dir / "port").read_text())
        self.topic = f"jaxmba/v1/enc/{eid}/events"
        self.client = MqttTestClient("127.0.0.1", port, client_id=f"test-demo-{os.getpid()}")
        self.client.connect(OPERATOR_USER, credentials[OPERATOR_USER])
        assert self.client.subscribe(self.topic) == [1]

    def all(self, kind: str) -> list[dict[str, Any]]:
        bodies = [json.loads(m.payload) for m in self.client.received(self.topic)]
        return [b for b in bodies if b["kind"] == kind]

    def first(self, kind: str) -> dict[str, Any] | None:
        return next(iter(self.all(kind)), None)

    def kinds(self) -> list[str]:
        return [json.loads(m.payload)["kind"] for m in self.client.received(self.topic)]

    def close(self) -> None:
        self.client.disconnect()


def test_demo_runs_records_and_stops_cleanly(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAXMBA_")}
    env["FLASK_CONFIG"] = "dev"
    config = tmp_path / "jax-mba-service.config"
    cli = [sys.executable, "-m", "controlsvc", "--config", str(config)]
    subprocess.run([*cli, "init_config"], cwd=tmp_path, env=env, check=True, capture_output=True)
    assert config.stat().st_mode & 0o777 == 0o600

    port = find_free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "demo.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [*cli, "demo", "--enclosures", str(ENCLOSURES), "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    stack = ExitStack()
    try:
        wait_for(
            lambda: proc.poll() is None and _healthy(base),
            timeout=90,
            message=f"demo API never became healthy:\n{log_path.read_text()[-3000:]}",
        )
        headers = _login(base, tmp_path / "var" / "demo")
        # Quiet by default: nothing but the banner before it (no migration or request logs).
        before_banner = log_path.read_text().split("jaxmba demo is starting")[0]
        assert before_banner.strip() == "", before_banner[:2000]
        # Invite links point at the port the demo serves, not [SERVICE] public_url's 5000;
        # the mail stays visible in the quiet log (it is how the demo hands out links).
        invited = httpx.post(
            f"{base}/api/users/invites",
            headers=headers,
            json={"email": "tech@example.org", "role": "viewer"},
            timeout=10,
        )
        assert invited.status_code == 201, invited.text
        wait_for(
            lambda: f"http://localhost:{port}/invite/" in log_path.read_text(),
            timeout=20,
            message=lambda: f"no invite link to port {port}:\n{log_path.read_text()[-2000:]}",
        )
        assert "localhost:5000" not in log_path.read_text()

        def enclosures() -> list[dict]:
            body = httpx.get(f"{base}/api/enclosures", headers=headers, timeout=10).json()
            return body["items"]

        wait_for(
            lambda: sum(e["state"] == "idle" for e in enclosures()) == ENCLOSURES,
            timeout=60,
            message="the demo enclosures never all became idle",
        )

        events = AgentEvents(tmp_path / "var" / "mosquitto", "demo-01")
        stack.callback(events.close)
        command = httpx.post(
            f"{base}/api/enclosures/demo-01/commands",
            headers=headers,
            json={
                "kind": "start_recording",
                "params": {
                    "session_id": "demo-test",
                    "file_prefix": "mouse",
                    "duration_s": 4,
                    "target_fps": 10,
                },
            },
            timeout=10,
        )
        assert command.status_code == 202, command.text
        command_id = command.json()["id"]
        result = httpx.get(
            f"{base}/api/commands/{command_id}", params={"wait": 10}, headers=headers, timeout=20
        ).json()
        assert result["state"] in ("accepted", "succeeded"), result

        # The 4 s recording ends by itself. A file is complete only once the agent has closed
        # it: its segment_closed event says so (and recording_stopped comes after the last one).
        stopped = wait_for(
            lambda: events.first("recording_stopped"),
            timeout=60,
            message=lambda: f"the recording never stopped; events: {events.kinds()}",
        )
        assert stopped["session_id"] == "demo-test"
        closed = events.all("segment_closed")
        session_dir = tmp_path / "var" / "demo" / "recordings" / "demo-test"
        files = sorted(session_dir.glob("mouse_demo-01_*.mkv"))
        assert sorted(Path(e["data"]["path"]) for e in closed) == files
        frames = 0
        for event in closed:
            with av.open(event["data"]["path"]) as container:
                decoded = sum(1 for _ in container.decode(video=0))
            assert decoded == event["data"]["frames"], event
            frames += decoded
        assert frames >= 10, f"only {frames} frames decoded"
        wait_for(
            lambda: next(e for e in enclosures() if e["id"] == "demo-01")["state"] == "idle",
            timeout=30,
            message="demo-01 never went back to idle",
        )

        # An agent that dies is started again, and the demo's log says how it died.
        def agent(eid: str) -> psutil.Process | None:
            for child in psutil.Process(proc.pid).children(recursive=True):
                try:
                    if any(arg.endswith(f"{eid}.toml") for arg in child.cmdline()):
                        return child
                except psutil.NoSuchProcess:
                    continue
            return None

        victim = agent("demo-02")
        assert victim is not None
        victim.send_signal(signal.SIGKILL)
        said = f"agent demo-02 (pid {victim.pid}) died: killed by signal SIGKILL (9); restarting"
        wait_for(
            lambda: said in log_path.read_text(),
            timeout=30,
            message=lambda: f"no word of the death:\n{log_path.read_text()[-2000:]}",
        )
        wait_for(
            lambda: (a := agent("demo-02")) is not None and a.pid != victim.pid,
            timeout=60,
            message="demo-02's agent was not started again",
        )
        wait_for(
            lambda: next(e for e in enclosures() if e["id"] == "demo-02")["state"] == "idle",
            timeout=60,
            message="demo-02 never came back",
        )
    finally:
        stack.close()
        children = []
        if proc.poll() is None:
            children = psutil.Process(proc.pid).children(recursive=True)
            proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert code == 0, log_path.read_text()[-3000:]
    psutil.wait_procs(children, timeout=10)
    leftovers = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert not leftovers, f"processes left behind: {leftovers}"


def test_json_logs_from_the_api_the_bridge_and_the_agents(tmp_path: Path) -> None:
    """[SERVICE] log_format = json: every log line of every process is one JSON object, with the
    enclosure and command ids as fields (the demo passes the format to its agents)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAXMBA_")}
    env["FLASK_CONFIG"] = "dev"
    env["JAXMBA_SERVICE_LOG_FORMAT"] = "json"
    config = tmp_path / "jax-mba-service.config"
    cli = [sys.executable, "-m", "controlsvc", "--config", str(config)]
    subprocess.run([*cli, "init_config"], cwd=tmp_path, env=env, check=True, capture_output=True)
    port = find_free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "demo.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [*cli, "demo", "--enclosures", "1", "--port", str(port), "-v"],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(
            lambda: proc.poll() is None and _healthy(base),
            timeout=90,
            message=lambda: f"demo API never became healthy:\n{log_path.read_text()[-3000:]}",
        )
        headers = _login(base, tmp_path / "var" / "demo")

        def demo_01_idle() -> bool:
            answer = httpx.get(f"{base}/api/enclosures/demo-01", headers=headers, timeout=10)
            return answer.status_code == 200 and answer.json()["state"] == "idle"

        wait_for(demo_01_idle, timeout=60, message="demo-01 never became idle")
        sent = httpx.post(
            f"{base}/api/enclosures/demo-01/commands",
            headers=headers,
            json={"kind": "ping"},
            timeout=10,
        ).json()

        def lines() -> list[dict]:
            out = []
            for line in log_path.read_text().splitlines():
                if line.startswith("{"):
                    out.append(json.loads(line))
            return out

        def agent_logged_the_command() -> bool:
            return any(
                rec.get("process") == "agent" and rec.get("command_id") == sent["id"]
                for rec in lines()
            )

        wait_for(agent_logged_the_command, timeout=30, message="no JSON line for the command")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    text = log_path.read_text()
    banner = text.index("jaxmba demo is starting")
    banner_end = text.index("Ctrl-C stops everything.", banner)
    rest = text[:banner] + text[banner_end + len("Ctrl-C stops everything.") :]
    records = []
    for line in rest.splitlines():
        if not line.strip():
            continue
        records.append(json.loads(line))  # every log line is JSON (fails on a text line)
    assert all({"ts", "level", "logger", "message", "process"} <= set(r) for r in records)
    processes = {r["process"] for r in records}
    assert {"demo", "bridge", "agent", "api"} <= processes, processes
    agent = [r for r in records if r["process"] == "agent"]
    assert all(r["enclosure_id"] == "demo-01" for r in agent)
    bridge_states = [
        r for r in records if r["process"] == "bridge" and r.get("enclosure_id") == "demo-01"
    ]
    assert bridge_states, "no bridge line with the enclosure id"
