"""Reading ``GET /api/events`` (Server-Sent Events) and resuming after a dropped connection.

``follow`` yields ``SseEvent`` objects for as long as the caller wants them. When the
connection drops, or the service says ``event: reconnect``, it waits the ``retry:`` delay and
reconnects with ``Last-Event-ID``, so no event is lost or repeated (docs/events.md). Failing to
connect the first time is an error; later it keeps trying, saying so once on ``on_notice``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from controlsvc.ctl.api_client import ApiClient, unreachable
from controlsvc.ctl.errors import ApiError, ServiceUnreachable

__all__ = ["SseEvent", "follow", "parse_stream"]

EVENTS_PATH = "/api/events"
# The service sends a heartbeat every 15 s; silence for this long means the connection is dead.
READ_TIMEOUT_S = 40.0
DEFAULT_RETRY_S = 2.0  # until the stream's own `retry:` line says otherwise
MAX_RETRY_S = 30.0  # back-off ceiling while the service stays away


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One dispatched event: ``event`` is its kind, ``data`` the decoded JSON (or text)."""

    id: str | None
    event: str
    data: Any
    retry_ms: int | None = None

    def record(self) -> dict[str, Any]:
        return self.data if isinstance(self.data, dict) else {"data": self.data}


@dataclass(slots=True)
class _Builder:
    id: str | None = None
    event: str = ""
    data: list[str] = field(default_factory=list)
    retry_ms: int | None = None

    def feed(self, line: str) -> SseEvent | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self.data.append(value)
        elif name == "event":
            self.event = value
        elif name == "id" and "\0" not in value:
            self.id = value
        elif name == "retry" and value.isdigit():
            self.retry_ms = int(value)
        return None

    def _dispatch(self) -> SseEvent | None:
        if not self.data and not self.event:
            return None
        text = "\n".join(self.data)
        try:
            data: Any = json.loads(text) if text else None
        except json.JSONDecodeError:
            data = text
        event = SseEvent(self.id, self.event or "message", data, self.retry_ms)
        self.event, self.data = "", []
        return event


def parse_stream(lines: Iterable[str]) -> Iterator[SseEvent]:
    """Events from the lines of a ``text/event-stream`` body (``retry:`` is kept separately)."""
    builder = _Builder()
    for line in lines:
        event = builder.feed(line.rstrip("\r"))
        if event is not None:
            yield event


@dataclass(slots=True)
class _Cursor:
    last_id: str | None
    retry_s: float = DEFAULT_RETRY_S


def _connect_once(
    client: ApiClient, params: Mapping[str, Any], cursor: _Cursor
) -> Iterator[SseEvent]:
    headers = {"Accept": "text/event-stream"}
    if cursor.last_id is not None:
        headers["Last-Event-ID"] = cursor.last_id
    with client.stream(EVENTS_PATH, params=params, headers=headers, timeout=READ_TIMEOUT_S) as r:
        builder = _Builder()
        for line in r.iter_lines():
            event = builder.feed(line)
            if builder.retry_ms is not None:
                cursor.retry_s = builder.retry_ms / 1000
            if event is None:
                continue
            if event.event == "reconnect":
                return
            if event.id is not None:
                cursor.last_id = event.id
            yield event


def follow(
    client: ApiClient,
    *,
    kinds: Iterable[str] = (),
    enclosure_id: str | None = None,
    last_event_id: str | None = None,
    on_notice: Callable[[str], None] = lambda _msg: None,
) -> Iterator[SseEvent]:
    """Events of the live stream, forever (until the caller stops), resuming after drops."""
    params: dict[str, Any] = {}
    kinds = [k for k in kinds if k]
    if kinds:
        params["kinds"] = ",".join(kinds)
    if enclosure_id:
        params["enclosure_id"] = enclosure_id
    cursor = _Cursor(last_event_id)
    connected_once = False
    failures = 0
    while True:
        try:
            for event in _connect_once(client, params, cursor):
                connected_once, failures = True, 0
                yield event
            connected_once = True
            reason = "the service ended the stream"
        except (ServiceUnreachable, httpx.TransportError) as exc:
            if not connected_once:
                if isinstance(exc, httpx.TransportError):
                    raise unreachable(client.url, exc) from exc
                raise
            reason = str(exc) if isinstance(exc, ServiceUnreachable) else f"connection lost: {exc}"
        except ApiError as exc:
            if not connected_once or exc.status not in (502, 503, 504):
                raise
            reason = exc.message
        failures += 1
        delay = min(cursor.retry_s * failures, MAX_RETRY_S)
        if failures == 1 or failures % 10 == 0:
            on_notice(f"{reason}; reconnecting in {delay:g} s (after event {cursor.last_id})")
        time.sleep(delay)
