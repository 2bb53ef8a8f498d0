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
import time
from pathlib import Path

import av
import httpx
import psutil
import pytest

from controlsvc.broker import find_free_port
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

        session_dir = tmp_path / "var" / "demo" / "recordings" / "demo-test"

        def closed_segments() -> list[Path]:
            return sorted(session_dir.glob("mouse_demo-01_*.mkv")) if session_dir.exists() else []

        wait_for(lambda: closed_segments(), timeout=30, message="no video file appeared")
        # The 4 s recording ends by itself; then the file is complete.
        wait_for(
            lambda: enclosures()[0]["state"] == "idle" and closed_segments(),
            timeout=30,
            message="the recording never finished",
        )
        frames = 0
        for path in closed_segments():
            with av.open(str(path)) as container:
                frames += sum(1 for _ in container.decode(video=0))
        assert frames >= 10, f"only {frames} frames decoded"
    finally:
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
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(c.is_running() for c in children):
        time.sleep(0.1)
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
