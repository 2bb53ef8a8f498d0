"""One worker lane's received messages: every message that must be written, and the statuses,
coalesced to the latest per enclosure once the lane falls behind.

- ``put``: state, ack and events messages, first in first out, at most ``maxsize``; a full
  inbox makes the caller (the reliable connection's network thread) wait: back-pressure, and
  the broker keeps the rest in the bridge's session.
- ``put_status``: a status. It never waits. While the lane keeps up it joins the others (every
  status is written, with its history row). Once the lane is behind, it replaces the ones of
  its enclosure still waiting, in the place of the oldest of them (statuses are latest-value:
  the newest carries everything a user sees). Behind: the oldest status waiting arrived more
  than ``status_behind_s`` before this one (None: never by age), or ``status_maxsize`` statuses
  wait. So under sustained overload a status waits behind at most about ``status_behind_s``
  worth of the others plus one per enclosure, not a queue's worth, and the broker has nothing
  to queue or drop. A retained copy (replayed on subscribe) never replaces a live status: it
  is the older one.
- ``get``: the oldest message that must be written first, then the statuses in the order they
  arrived: events and acks have priority over statuses (``statuses=False``: only those).
  ``take_statuses`` takes the statuses of given enclosures out of line: a batch of agent events
  writes its enclosures' statuses with them (see ``controlsvc.bridge.batching``). A
  reader filling a batch asks for ``enough`` statuses: a status wakes it only once that many
  wait (any other message wakes it at once). Woken by every status, the worker took turns with
  the network thread for the GIL at every message: 7 % of the bridge's CPU at 2,000 statuses/s.

Interface of ``queue.Queue`` where it overlaps (``put``/``get`` raise ``queue.Full``/
``queue.Empty``), so the worker reads it like the queue it replaces.
"""

from __future__ import annotations

import queue
import sys
import threading
from collections import deque
from datetime import datetime, timedelta

from controlsvc.bridge.inbound import Inbound

__all__ = ["Inbox"]


class _Waiting:
    """A status in line; a replacement takes over the place (and the arrival time) of the
    oldest of its enclosure, the others are marked dead and skipped."""

    __slots__ = ("inbound", "live", "since")

    def __init__(self, inbound: Inbound) -> None:
        self.inbound = inbound
        self.since = inbound.received_at
        self.live = True


class Inbox:
    """Thread-safe; one thread per kind of ``put``, one reader."""

    def __init__(
        self, maxsize: int, status_maxsize: int, status_behind_s: float | None = None
    ) -> None:
        self.maxsize = maxsize
        self.status_maxsize = status_maxsize
        self.status_behind = None if status_behind_s is None else timedelta(seconds=status_behind_s)
        self._fifo: deque[Inbound] = deque()
        self._line: deque[_Waiting] = deque()  # statuses in arrival order, dead ones included
        self._by_topic: dict[str, list[_Waiting]] = {}  # the live ones, oldest first
        self._statuses = 0  # live ones
        self._woken = False  # `wake` was called: a waiting `get` returns
        self._statuses_enough = 1  # live statuses that wake the waiting `get`
        self.took_status = False  # what the last `get` gave was a status (for its one reader)
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)

    def put(self, inbound: Inbound, timeout: float | None = None) -> None:
        """Append ``inbound``; waits up to ``timeout`` for room, else ``queue.Full``."""
        with self._not_full:
            if not self._not_full.wait_for(lambda: len(self._fifo) < self.maxsize, timeout):
                raise queue.Full
            self._fifo.append(inbound)
            self._not_empty.notify()

    def put_status(self, inbound: Inbound) -> list[Inbound]:
        """Add a status (see the module doc); the statuses it made redundant: those it
        replaced, or itself (a retained copy of a live one waiting)."""
        with self._lock:
            waiting = self._by_topic.get(inbound.topic)
            if waiting and self._behind(inbound.received_at):
                if inbound.retain and not all(w.inbound.retain for w in waiting):
                    return [inbound]
                first = waiting[0]
                replaced = [first.inbound]
                for other in waiting[1:]:
                    other.live = False
                    replaced.append(other.inbound)
                first.inbound = inbound
                del waiting[1:]
                self._statuses -= len(replaced) - 1
                return replaced
            entry = _Waiting(inbound)
            self._line.append(entry)
            self._by_topic.setdefault(inbound.topic, []).append(entry)
            self._statuses += 1
            if self._statuses >= self._statuses_enough:
                self._not_empty.notify()
            return []

    def _behind(self, now: datetime) -> bool:
        if self._statuses >= self.status_maxsize:
            return True
        if self.status_behind is None:
            return False
        head = self._head()
        return head is not None and now - head.since > self.status_behind

    def get(
        self, timeout: float | None = None, *, statuses: bool = True, enough: int = 1
    ) -> Inbound:
        """The next message (see the module doc); waits up to ``timeout`` for one, or for
        ``enough`` statuses, else ``queue.Empty`` if there is none. Without ``statuses``, only a
        message that must be written counts."""
        with self._not_empty:
            enough = max(1, enough)
            # Without statuses, none is worth waking for.
            self._statuses_enough = enough if statuses else sys.maxsize
            try:
                self._not_empty.wait_for(
                    lambda: self._woken or bool(self._fifo) or self._enough(statuses, enough),
                    timeout,
                )
            finally:
                self._statuses_enough = 1
            if not self._has_any(statuses):
                self._woken = False
                raise queue.Empty
            return self._pop()

    def wake(self) -> None:
        """Make a waiting ``get`` return now, ``queue.Empty`` if nothing is queued: the reader
        is stopping and looks at its flags without waiting out its poll."""
        with self._lock:
            self._woken = True
            self._not_empty.notify_all()

    def get_nowait(self, *, statuses: bool = True) -> Inbound:
        with self._lock:
            if not self._has_any(statuses):
                raise queue.Empty
            return self._pop()

    def take_statuses(self, topics: set[str], limit: int) -> list[Inbound]:
        """The statuses waiting on these ``topics`` (oldest first per topic), at most
        ``limit`` of them, out of line."""
        taken: list[Inbound] = []
        with self._lock:
            for topic in topics:
                waiting = self._by_topic.get(topic)
                if not waiting or len(taken) + len(waiting) > limit:
                    continue
                del self._by_topic[topic]
                for entry in waiting:
                    entry.live = False  # skipped where it stands in line
                    taken.append(entry.inbound)
                self._statuses -= len(waiting)
            if not self._statuses:
                self._line.clear()
        return taken

    def _enough(self, statuses: bool, enough: int) -> bool:
        return statuses and self._statuses >= enough

    def _has_any(self, statuses: bool = True) -> bool:
        return bool(self._fifo) or (statuses and self._statuses > 0)

    def _pop(self) -> Inbound:
        self.took_status = not self._fifo
        if self._fifo:
            self._not_full.notify()
            return self._fifo.popleft()
        entry = self._head()
        assert entry is not None  # _has_any
        self._line.popleft()
        waiting = self._by_topic[entry.inbound.topic]
        del waiting[0]  # the oldest live one of its topic is first in line
        if not waiting:
            del self._by_topic[entry.inbound.topic]
        self._statuses -= 1
        if not self._statuses:
            self._line.clear()
        return entry.inbound

    def _head(self) -> _Waiting | None:
        """The first live status in line (dropping dead ones before it)."""
        while self._line and not self._line[0].live:
            self._line.popleft()
        return self._line[0] if self._line else None

    def qsize(self) -> int:
        with self._lock:
            return len(self._fifo) + self._statuses

    def empty(self) -> bool:
        return self.qsize() == 0

    def oldest(self) -> datetime | None:
        """When the longest-waiting message arrived (None: nothing waits)."""
        with self._lock:
            head = self._head()
            times = [head.since] if head is not None else []
            if self._fifo:
                times.append(self._fifo[0].received_at)
            return min(times, default=None)

    def clear(self) -> None:
        with self._lock:
            self._fifo.clear()
            self._line.clear()
            self._by_topic.clear()
            self._statuses = 0
            self._not_full.notify_all()
