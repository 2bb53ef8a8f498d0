"""A single thread that runs callbacks one at a time, in the order they were posted.

The recorder hands its callbacks (and the slow fsync + SHA-256 of a closed segment) to a
``Notifier`` so a slow callback never holds up encoding, and events reach the agent in
the order they happened.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

__all__ = ["Notifier"]

log = logging.getLogger(__name__)


class Notifier:
    """Runs posted callables sequentially on one thread; exceptions are logged, not raised."""

    def __init__(self, name: str) -> None:
        self._queue: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def post(self, task: Callable[[], None]) -> None:
        self._queue.put(task)

    def close(self) -> None:
        """Run what was posted so far, then end the thread (does not wait; see ``join``)."""
        self._queue.put(None)

    def join(self, timeout_s: float | None = None) -> bool:
        """Wait for the thread to end after ``close``; True if it did."""
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while True:
            task = self._queue.get()
            if task is None:
                return
            try:
                task()
            except Exception:
                log.exception("recorder callback %r failed", task)
