"""The outbox: every event is stored on disk before it is published, and deleted after PUBACK.

A SQLite file in WAL mode with ``synchronous=FULL``: an appended event survives ``kill -9``
and power loss. Rows are published in insertion order (``seq``) at QoS 1; a row is deleted
only when the broker's PUBACK for it arrives. At most ``window`` rows are handed to the MQTT
client at a time, so memory stays bounded however long the broker is away: the queue is
bounded by disk only. After a restart everything still stored is sent again, in order, with
the ``event_id`` it was created with (receivers store each id once).

::

    append(event) ──> [seq, event_id, payload] ──> take(n) ──> publish(mid)
                                                   ^                 │
                                   restart: from 0 │     PUBACK(mid) └──> delete(seq)
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from enclosure_agent.errors import OutboxError
from schemas.codec import dump_message, parse_message
from schemas.events import Event

__all__ = ["DEFAULT_WINDOW", "Outbox", "OutboxItem", "OutboxPump"]

log = logging.getLogger(__name__)

DEFAULT_WINDOW = 100  # rows handed to the MQTT client at once: bounds memory, keeps throughput
BUSY_TIMEOUT_S = 5.0  # another process (check, a test) reading the file never fails us
SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    payload BLOB NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS refused (
    seq INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL,
    payload BLOB NOT NULL,
    reason TEXT NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class OutboxItem:
    seq: int
    event_id: str
    payload: bytes


class Outbox:
    """The on-disk queue. One instance per file, used by one thread at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # the agent serialises its use on its own thread; readers (tests) may share it
            self._db = sqlite3.connect(
                path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise OutboxError(f"cannot open the outbox {path}: {exc}") from exc

    def close(self) -> None:
        self._db.close()

    def append(self, event: Event) -> int:
        """Store ``event`` durably and return its ``seq``; the same ``event_id`` is stored once."""
        payload = dump_message(event)
        try:
            cursor = self._db.execute(
                "INSERT INTO events (event_id, kind, payload, created_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (event_id) DO NOTHING",
                (event.event_id, event.kind.value, payload, event.at.isoformat()),
            )
            if cursor.rowcount == 0:
                row = self._db.execute(
                    "SELECT seq FROM events WHERE event_id = ?", (event.event_id,)
                ).fetchone()
                return int(row[0]) if row else 0
            return int(cursor.lastrowid or 0)
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot store event {event.kind.value}: {exc}") from exc

    def take(self, after_seq: int, limit: int) -> list[OutboxItem]:
        """Up to ``limit`` stored events with ``seq > after_seq``, oldest first."""
        rows = self._db.execute(
            "SELECT seq, event_id, payload FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
            (after_seq, limit),
        ).fetchall()
        return [OutboxItem(int(seq), str(eid), bytes(payload)) for seq, eid, payload in rows]

    def delete(self, seq: int) -> None:
        """Forget a delivered event."""
        self._db.execute("DELETE FROM events WHERE seq = ?", (seq,))

    def refuse(self, seq: int, reason: str) -> None:
        """Move an event the broker refused (e.g. not authorized) aside, for inspection."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute(
                "INSERT OR REPLACE INTO refused (seq, event_id, payload, reason)"
                " SELECT seq, event_id, payload, ? FROM events WHERE seq = ?",
                (reason, seq),
            )
            self._db.execute("DELETE FROM events WHERE seq = ?", (seq,))
            self._db.execute("COMMIT")
        except sqlite3.Error:
            self._db.execute("ROLLBACK")
            raise

    def __len__(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM events").fetchone()[0])

    def events(self) -> list[Event]:
        """Every stored event, oldest first (tests and ``check``; loads them all)."""
        rows = self._db.execute("SELECT payload FROM events ORDER BY seq").fetchall()
        return [parse_message(Event, bytes(row[0])) for row in rows]


Publish = Callable[[bytes], int | None]
"""Hands one payload to MQTT (QoS 1) and returns its mid, or None if it could not."""


class OutboxPump:
    """Feeds stored events to MQTT in order, ``window`` at a time, and deletes them on PUBACK.

    ``pump()`` is called when connected and after every PUBACK; ``acked(mid, ok, reason)``
    from ``on_publish``. The MQTT client keeps unacknowledged QoS 1 messages across
    reconnects and resends them first, in order, with their old mids; so ``in_flight`` is
    kept across reconnects too, and only a new process starts again from the oldest row.
    """

    def __init__(self, outbox: Outbox, window: int = DEFAULT_WINDOW) -> None:
        self.outbox = outbox
        self.window = window
        self._in_flight: dict[int, int] = {}  # mid -> seq
        self._last_seq = 0  # highest seq handed to MQTT

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def pump(self, publish: Publish) -> int:
        """Hand the next stored events to ``publish``; return how many were handed over."""
        room = self.window - len(self._in_flight)
        if room <= 0:
            return 0
        handed = 0
        for item in self.outbox.take(self._last_seq, room):
            mid = publish(item.payload)
            if mid is None:
                break
            self._in_flight[mid] = item.seq
            self._last_seq = item.seq
            handed += 1
        return handed

    def acked(self, mid: int, ok: bool, reason: str = "") -> bool:
        """The broker acknowledged ``mid``; True if it was one of ours."""
        seq = self._in_flight.pop(mid, None)
        if seq is None:
            return False
        if ok:
            self.outbox.delete(seq)
        else:
            log.error("the broker refused event seq %d (%s); kept aside in the outbox", seq, reason)
            self.outbox.refuse(seq, reason)
        return True

    def restart(self) -> None:
        """Forget what was handed over (the MQTT client was replaced): resend from the oldest."""
        self._in_flight.clear()
        self._last_seq = 0
