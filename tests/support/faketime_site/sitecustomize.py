"""Loaded (``PYTHONPATH``) into a Python process run with a shifted clock (tests/support/
faketime.py). libfaketime 0.9.10 with the monotonic clock left true breaks ``time.sleep`` of
Python 3.11: its ``clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME)`` deadline is shifted as if
the monotonic clock were faked, and the kernel answers EINVAL (libfaketime issue 426). Then
paho-mqtt's reconnect wait raises and its network thread dies. Here ``time.sleep`` waits on an
event instead (``sem_clockwait`` on the true monotonic clock, which libfaketime leaves alone):
the same wait, by a call the shifted clock does not break."""

from __future__ import annotations

import threading
import time


def _sleep(seconds: float) -> None:
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    threading.Event().wait(seconds)


time.sleep = _sleep
