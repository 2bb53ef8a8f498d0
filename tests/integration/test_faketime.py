"""The shifted clock the clock tests give an agent shifts its wall clock only: its timed waits
(the agent's timers, the recorder's threads) still end when they should."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.faketime import LIBFAKETIME, MISSING, shifted_clock

pytestmark = pytest.mark.skipif(LIBFAKETIME is None, reason=MISSING)

PROBE = """
import queue, threading, time
print(time.time())
threading.Event().wait(0.1)
try:
    queue.SimpleQueue().get(timeout=0.1)
except queue.Empty:
    pass
time.sleep(0.1)  # paho-mqtt's reconnect wait
print("waits returned")
"""


def test_shifted_clock_moves_the_wall_clock_and_keeps_timed_waits() -> None:
    before = float(
        subprocess.run(
            [sys.executable, "-c", "import time; print(time.time())"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", PROBE],
            env={**os.environ, **shifted_clock(600)},
            capture_output=True,
            text=True,
            timeout=30,  # a wait on a shifted monotonic clock would never return
            check=True,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("a timed wait hung under the shifted clock: its monotonic clock is shifted")
    shifted, said = done.stdout.split("\n", 1)
    assert float(shifted) - before > 500
    assert said.strip() == "waits returned"
