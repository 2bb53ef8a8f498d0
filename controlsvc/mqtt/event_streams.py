"""What the event feed (``controlsvc.mqtt.event_feed``) hands its readers: ``FeedEvent`` and the
``EventFilter`` of one stream, a bounded ``Subscription`` queue per SSE client (a slow client is
dropped and told to reconnect; it resumes from the log with Last-Event-ID), and a
``CommandWatch`` per ``GET /api/commands/{id}?wait=`` in progress. No paho, no Flask.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Protocol

from controlsvc.store import eventlog
from controlsvc.store.models.events import EventRecord

log = logging.getLogger(__name__)


class _Feed(Protocol):
    """What a subscription needs of its feed (``controlsvc.mqtt.event_feed.EventFeed``)."""

    def _unsubscribe(self, sub: Subscription) -> None: ...

    def _unwatch(self, watch: CommandWatch) -> None: ...


@dataclass(frozen=True, slots=True)
class FeedEvent(eventlog.Logged):
    """One event as streamed; `json` is its SSE `data:` line, built once per process."""

    json: str

    @classmethod
    def from_record(cls, row: EventRecord) -> FeedEvent:
        return cls.from_body(eventlog.event_body(row))

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> FeedEvent:
        """From an `eventlog.event_body` (read from the log, or carried by a notification).
        Raises KeyError, TypeError or ValueError when it is not one."""
        command_id = body["command_id"]
        return cls(
            id=body["id"],
            kind=body["kind"],
            at=datetime.fromisoformat(body["at"]),
            enclosure_id=body["enclosure_id"],
            session_id=body["session_id"],
            command_id=uuid.UUID(command_id) if command_id is not None else None,
            data=body["data"],
            json=json.dumps(body, separators=(",", ":"), ensure_ascii=False),
        )


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which events a client wants: these kinds (None: all), this enclosure (None: all)."""

    kinds: frozenset[str] | None = None
    enclosure_id: str | None = None

    def matches(self, event: FeedEvent) -> bool:
        if self.kinds is not None and event.kind not in self.kinds:
            return False
        return self.enclosure_id is None or event.enclosure_id == self.enclosure_id


class Subscription:
    """The queue of one SSE client. `get` waits for events; `ended` says the stream must stop
    (`overflowed`: the client was too slow; `closed`: unsubscribed or the feed is closing)."""

    def __init__(self, feed: _Feed, event_filter: EventFilter, maxsize: int) -> None:
        self.filter = event_filter
        self._feed = feed
        self._maxsize = maxsize
        self._cond = threading.Condition()
        self._events: deque[FeedEvent] = deque()
        self.overflowed = False
        self.closed = False

    @property
    def ended(self) -> bool:
        return self.overflowed or self.closed

    def _offer(self, events: list[FeedEvent]) -> bool:
        """Queue events (the feed's reader calls this); False when the client is too slow."""
        with self._cond:
            if self.ended:
                return not self.overflowed
            if len(self._events) + len(events) > self._maxsize:
                self.overflowed = True
                self._events.clear()
                self._cond.notify_all()
                return False
            self._events.extend(events)
            self._cond.notify_all()
            return True

    def _end(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def get(self, timeout: float) -> list[FeedEvent]:
        """The queued events, oldest first, waiting up to `timeout` s for one; [] if none came
        or the stream has ended."""
        with self._cond:
            if not self._events and not self.ended:
                self._cond.wait(max(0.0, timeout))
            if self.overflowed:
                return []
            batch = list(self._events)
            self._events.clear()
            return batch

    def close(self) -> None:
        self._feed._unsubscribe(self)
        self._end()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class CommandWatch:
    """Wakes a waiter when a `command.updated` event for one command arrives.

    Register before reading the command, so an update between the read and the wait is not
    missed::

        with feed.watch_command(command_id) as watch:
            while not settled(read_command()) and time_left():
                watch.wait(time_left())
    """

    def __init__(self, feed: _Feed, command_id: uuid.UUID) -> None:
        self.command_id = command_id
        self._feed = feed
        self._cond = threading.Condition()
        self._updates = 0
        self._seen = 0
        self._closed = False
        self._latest: dict[str, Any] | None = None

    @property
    def latest(self) -> dict[str, Any] | None:
        """The data of the newest `command.updated` event seen (the command record as committed
        with that change), or None."""
        return self._latest

    def _notify(self, event: FeedEvent) -> None:
        with self._cond:
            self._updates += 1
            self._latest = event.data
            self._cond.notify_all()

    def _end(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def wait(self, timeout: float) -> bool:
        """True as soon as an update arrived since registration or the previous `wait`;
        False after `timeout` s without one (or when the feed closes)."""
        with self._cond:
            self._cond.wait_for(lambda: self._updates > self._seen or self._closed, timeout)
            if self._updates > self._seen:
                self._seen = self._updates
                return True
            return False

    def close(self) -> None:
        self._feed._unwatch(self)

    def __enter__(self) -> CommandWatch:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
