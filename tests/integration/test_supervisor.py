"""The demo's agent supervisor with real child processes: a child that dies is started again,
and the log says how it died (the signal that killed it, or its exit code)."""

from __future__ import annotations

import logging
import signal
import sys

import psutil
import pytest

from controlsvc.ops.supervisor import describe_exit, supervised
from tests.support.waiting import wait_for

SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]


def test_describe_exit_names_the_signal_or_the_code():
    assert describe_exit(-9) == "killed by signal SIGKILL (9)"
    assert describe_exit(-15) == "killed by signal SIGTERM (15)"
    assert describe_exit(3) == "exited with code 3"
    assert "code 0" in describe_exit(0)


def test_a_killed_child_is_restarted_and_its_death_logged(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO, logger="controlsvc.ops.supervisor")
    with supervised(SLEEPER, {}, "agent test-01", restart_after_s=0.1) as child:
        first = child.pid
        assert first is not None
        psutil.Process(first).send_signal(signal.SIGKILL)
        wait_for(lambda: child.restarts == 1 and child.pid != first, 10, message="no restart")
        second = child.pid
        assert second is not None
        assert psutil.Process(second).is_running()
    said = f"agent test-01 (pid {first}) died: killed by signal SIGKILL (9); restarting it in 0.1 s"
    assert said in caplog.text
    assert not psutil.pid_exists(second)  # stopped with the supervisor


def test_exit_codes_are_logged_and_restarts_slow_down(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.WARNING, logger="controlsvc.ops.supervisor")
    failing = [sys.executable, "-c", "raise SystemExit(3)"]
    with supervised(failing, {}, "agent test-02", restart_after_s=0.05) as child:
        wait_for(lambda: child.restarts >= 2, 10, message="not restarted twice")
    deaths = [r.getMessage() for r in caplog.records if "died" in r.getMessage()]
    assert deaths[0].endswith("died: exited with code 3; restarting it in 0.05 s")
    assert deaths[1].endswith("died: exited with code 3; restarting it in 0.1 s")


def test_zero_means_leave_it_dead(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.WARNING, logger="controlsvc.ops.supervisor")
    with supervised(
        [sys.executable, "-c", "raise SystemExit(7)"], {}, "agent test-03", restart_after_s=0
    ) as child:
        wait_for(lambda: child.last_exit is not None, 10, message="never exited")
        assert child.restarts == 0
    assert "agent test-03" in caplog.text
    assert "died: exited with code 7" in caplog.text
