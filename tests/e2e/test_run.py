"""`jaxmba-service run` for real in a fresh directory (dev profile: embedded broker, SQLite).

The bridge is a child of `run`, the API another (gunicorn reaps every child of its own
process, so it must not be the bridge's parent): a bridge that dies is logged with how it died
and started again, and SIGTERM stops everything, leaving no process behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from controlsvc.broker import find_free_port
from tests.e2e.test_demo import _healthy
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.mosquitto]


def _bridge(run: psutil.Process) -> psutil.Process | None:
    for child in run.children():
        try:
            if child.cmdline()[-1:] == ["bridge"]:
                return child
        except psutil.NoSuchProcess:
            continue
    return None


def test_run_restarts_a_dead_bridge_and_stops_on_sigterm(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAXMBA_")}
    env["FLASK_CONFIG"] = "dev"
    config = tmp_path / "jax-mba-service.config"
    cli = [sys.executable, "-m", "controlsvc", "--config", str(config)]
    subprocess.run([*cli, "init_config"], cwd=tmp_path, env=env, check=True, capture_output=True)
    port = find_free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "run.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [*cli, "run", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    children: list[psutil.Process] = []
    try:
        wait_for(
            lambda: proc.poll() is None and _healthy(base),
            timeout=90,
            message=lambda: f"the API never became healthy:\n{log_path.read_text()[-3000:]}",
        )
        run = psutil.Process(proc.pid)
        victim = wait_for(lambda: _bridge(run), timeout=30, message="no bridge process")
        victim.send_signal(signal.SIGKILL)
        said = f"bridge (pid {victim.pid}) died: killed by signal SIGKILL (9); restarting"
        wait_for(
            lambda: said in log_path.read_text(),
            timeout=30,
            message=lambda: f"no word of the death:\n{log_path.read_text()[-2000:]}",
        )
        wait_for(
            lambda: (b := _bridge(run)) is not None and b.pid != victim.pid,
            timeout=60,
            message=lambda: f"the bridge was not started again:\n{log_path.read_text()[-2000:]}",
        )
        assert _healthy(base)
    finally:
        if proc.poll() is None:
            children = psutil.Process(proc.pid).children(recursive=True)
            proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    text = log_path.read_text()
    assert code == 0, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    psutil.wait_procs(children, timeout=10)
    leftovers = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert not leftovers, f"processes left behind: {leftovers}"
