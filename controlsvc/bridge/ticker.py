"""The bridge's one timer thread, and the schedules of periodic tasks it runs.

Housekeeping (liveness, command time-outs, re-publishing, heartbeats, purge) and the session
driver (desired documents, sessions, expected-online alerts, mail, the fleet topic) each keep a
``Schedule``: named tasks, each with its period. One ``Ticker`` thread runs every schedule's
due tasks every ``TICK_S``, in order, so that no two timers of one bridge race each other for
the same rows, and a batch never waits for a timer (the workers have threads of their own).
The ``led`` schedules run only while this bridge holds the timers' lease
(``controlsvc.bridge.leadership``): of several bridges, one runs them.

A failing task is logged at most once per ``ERROR_LOG_PERIOD_S`` per task: without a traceback
when the database or the broker is away (an outage the next tick retries), with one otherwise
(a bug). The other tasks run on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from controlsvc.bridge.stats import LogThrottle
from controlsvc.domain.publisher import BrokerUnavailable
from controlsvc.store.db import is_down

log = logging.getLogger(__name__)

__all__ = ["ERROR_LOG_PERIOD_S", "TICK_S", "Schedule", "Ticker"]

# The timers run this often: lost enclosures, time-outs and start times within half a second.
TICK_S = 0.5
# After an error, a task is logged at most once per this many seconds.
ERROR_LOG_PERIOD_S = 60.0

Task = Callable[[datetime | None], object]


@dataclass(slots=True)
class _Entry:
    name: str
    task: Task
    every_s: float  # 0: at every tick
    due: float  # monotonic time it is next due


class Schedule:
    """Named periodic tasks; ``run_due(now)`` runs those that are due (tests call it directly)."""

    def __init__(self, label: str) -> None:
        self.label = label  # "housekeeping", "sessions": the words of its log lines
        self._entries: list[_Entry] = []
        self._throttle = LogThrottle(ERROR_LOG_PERIOD_S)
        # Set when the ticker stops: a long task (a purge in chunks) ends early.
        self.stopping = threading.Event()

    def add(self, name: str, task: Task, *, every_s: float = 0.0, first_in_s: float = 0.0) -> None:
        """Run ``task(now)`` every ``every_s`` (0: every tick), first ``first_in_s`` from now."""
        self._entries.append(_Entry(name, task, every_s, time.monotonic() + first_in_s))

    def run_due(self, now: datetime | None = None) -> None:
        """One round: every task that is due, in the order they were added."""
        clock = time.monotonic()
        for entry in self._entries:
            if clock < entry.due:
                continue
            entry.due = clock + entry.every_s
            try:
                entry.task(now)
            except Exception as exc:
                self._failed(entry.name, exc)

    def _failed(self, name: str, exc: Exception) -> None:
        if self._throttle.allow(name) is None:
            return
        outage = is_down(exc) or isinstance(exc, BrokerUnavailable)
        log.warning(
            "bridge %s: %s failed: %s: %s",
            self.label,
            name,
            type(exc).__name__,
            exc,
            exc_info=None if outage else exc,
        )


class Lease(Protocol):
    def refresh(self) -> bool: ...


class Ticker:
    """One thread that runs ``schedules`` every ``tick_s`` until stopped, and ``led`` too while
    ``lease.refresh()`` says this bridge holds the lease (always, without a lease)."""

    def __init__(
        self,
        schedules: Sequence[Schedule],
        *,
        led: Sequence[Schedule] = (),
        lease: Lease | None = None,
        tick_s: float = TICK_S,
    ) -> None:
        self.schedules = list(schedules)
        self.led = list(led)
        self.lease = lease
        self.tick_s = tick_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        for schedule in (*self.schedules, *self.led):
            schedule.stopping.clear()
        self._thread = threading.Thread(target=self._run, name="jaxmba-bridge-ticker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Let the round in progress finish (within ``timeout``) and run no more."""
        self._stop.set()
        for schedule in (*self.schedules, *self.led):
            schedule.stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def run_once(self, now: datetime | None = None) -> None:
        for schedule in self.schedules:
            schedule.run_due(now)
        if self.led and (self.lease is None or self.lease.refresh()):
            for schedule in self.led:
                schedule.run_due(now)

    def _run(self) -> None:
        while not self._stop.wait(self.tick_s):
            self.run_once()
