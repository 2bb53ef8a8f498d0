"""The agent's own thread: a queue of tasks plus timers, run one at a time.

Every change to the agent's state happens here. Other threads (the MQTT network thread, the
capture and recorder threads, signal handlers) only ``call_soon`` a task; timers are set
from the loop itself. A task that raises is logged with its traceback and the loop goes on.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["EventLoop", "Timer"]

log = logging.getLogger(__name__)

Task = Callable[[], None]
MAX_WAIT_S = 1.0  # the loop wakes at least this often (signal handlers get to run)


@dataclass(order=True, slots=True)
class Timer:
    """A scheduled task; ``cancel()`` it before it runs to drop it."""

    deadline: float
    order: int
    task: Task | None = field(compare=False)

    def cancel(self) -> None:
        self.task = None

    @property
    def pending(self) -> bool:
        return self.task is not None


class EventLoop:
    """Runs tasks and timers on the thread that calls ``run()``."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Task | None] = queue.SimpleQueue()
        self._timers: list[Timer] = []
        self._order = itertools.count()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.failures = 0  # tasks that raised (tests assert none)

    @property
    def in_loop(self) -> bool:
        return self._thread is threading.current_thread()

    def call_soon(self, task: Task) -> None:
        """Run ``task`` on the loop thread as soon as possible (thread-safe)."""
        self._queue.put(task)

    def call_later(self, delay_s: float, task: Task) -> Timer:
        """Run ``task`` after ``delay_s`` seconds (loop thread only)."""
        timer = Timer(time.monotonic() + max(0.0, delay_s), next(self._order), task)
        heapq.heappush(self._timers, timer)
        return timer

    def stop(self) -> None:
        """Make ``run()`` return after the current task (thread-safe, idempotent)."""
        self._stopping.set()
        self._queue.put(None)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def run(self) -> None:
        """Run tasks and timers until ``stop()``."""
        self._thread = threading.current_thread()
        while not self._stopping.is_set():
            self._run_due_timers()
            timeout = self._next_timeout()
            try:
                task = self._queue.get(timeout=timeout)
            except queue.Empty:
                continue
            if task is not None:
                self._run(task)

    def drain(self, timeout_s: float = 0.0) -> int:
        """Run the queued tasks (after ``run()`` returned); wait up to ``timeout_s`` for more."""
        self._thread = threading.current_thread()
        done = 0
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                task = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return done
            if task is not None:
                self._run(task)
                done += 1

    def _run(self, task: Task) -> None:
        try:
            task()
        except Exception:
            self.failures += 1
            log.exception("agent task %r failed", task)

    def _run_due_timers(self) -> None:
        now = time.monotonic()
        while self._timers and self._timers[0].deadline <= now:
            timer = heapq.heappop(self._timers)
            task, timer.task = timer.task, None
            if task is not None:
                self._run(task)
            if self._stopping.is_set():
                return

    def _next_timeout(self) -> float:
        while self._timers and self._timers[0].task is None:
            heapq.heappop(self._timers)
        if not self._timers:
            return MAX_WAIT_S
        return min(MAX_WAIT_S, max(0.0, self._timers[0].deadline - time.monotonic()))
