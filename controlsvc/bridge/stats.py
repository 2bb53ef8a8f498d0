"""Counters of what the bridge received, refused and wrote (``Bridge.stats``).

Plain in-process counters, cheap enough for every message; ``controlsvc.metrics`` exports them.
Label values come from small fixed sets (channels, reasons), never from ids.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = ["INVALID_REASONS", "LogThrottle", "BridgeStats"]

# Why a message was refused (never stored): topic (not ours / bad enclosure id / unknown channel),
# and the schemas.MessageError categories.
INVALID_REASONS = ("topic", "too_large", "not_utf8", "invalid_json", "schema")
# Why a valid message changed nothing: duplicate (seen before), stale (older than what is stored),
# late_ack (command already settled), unknown_command, foreign_ack (another enclosure's command),
# retired (the enclosure is retired), dropped (its write failed alone, see the log),
# old_connection (a copy queued before a reconnection; the broker delivers it again).
IGNORED_REASONS = (
    "duplicate",
    "stale",
    "late_ack",
    "unknown_command",
    "foreign_ack",
    "retired",
    "dropped",
    "old_connection",
)


@dataclass
class BridgeStats:
    """Thread-safe counters; read them with ``snapshot()``."""

    received: Counter[str] = field(default_factory=Counter)  # by channel
    invalid: Counter[str] = field(default_factory=Counter)  # by reason (INVALID_REASONS)
    ignored: Counter[str] = field(default_factory=Counter)  # by reason (IGNORED_REASONS)
    written: Counter[str] = field(default_factory=Counter)  # applied messages by channel
    commands_settled: Counter[str] = field(default_factory=Counter)  # by final state
    transitions: Counter[str] = field(default_factory=Counter)  # by new enclosure state
    batches: int = 0
    batch_seconds_total: float = 0.0
    last_batch_seconds: float = 0.0
    last_batch_size: int = 0
    batch_retries: int = 0  # batches retried row by row after a failed transaction
    database_errors: int = 0  # transactions that failed because the database was unreachable
    queue_depth: int = 0
    # Statuses replaced, before they were written, by a newer one of the same enclosure (the
    # bridge was behind; statuses are latest-value, so only the newest is stored).
    statuses_coalesced: int = 0
    connected: bool = False
    connects: int = 0
    # Whether this bridge holds the timers' lease (controlsvc.bridge.leadership).
    leads: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, counter: str, key: str, n: int = 1) -> None:
        with self._lock:
            getattr(self, counter)[key] += n

    def batch_done(self, size: int, seconds: float) -> None:
        with self._lock:
            self.batches += 1
            self.batch_seconds_total += seconds
            self.last_batch_seconds = seconds
            self.last_batch_size = size

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + n)

    def snapshot(self) -> dict[str, Any]:
        """A consistent copy: counters as plain dicts."""
        with self._lock:
            return {
                "received": dict(self.received),
                "invalid": dict(self.invalid),
                "ignored": dict(self.ignored),
                "written": dict(self.written),
                "commands_settled": dict(self.commands_settled),
                "transitions": dict(self.transitions),
                "batches": self.batches,
                "batch_seconds_total": self.batch_seconds_total,
                "last_batch_seconds": self.last_batch_seconds,
                "last_batch_size": self.last_batch_size,
                "batch_retries": self.batch_retries,
                "database_errors": self.database_errors,
                "queue_depth": self.queue_depth,
                "statuses_coalesced": self.statuses_coalesced,
                "connected": self.connected,
                "connects": self.connects,
                "leads": self.leads,
            }


class LogThrottle:
    """Allows one log line per key per ``period_s`` (bad input is logged, not a flood of it)."""

    def __init__(self, period_s: float = 60.0, max_keys: int = 10_000) -> None:
        self.period_s = period_s
        self.max_keys = max_keys
        self._last: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()
        self._lock = threading.Lock()

    def allow(self, key: str) -> int | None:
        """None to stay quiet; else how many lines were suppressed since the last one."""
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.period_s:
                self._suppressed[key] += 1
                return None
            if len(self._last) >= self.max_keys:  # a flood of distinct keys: forget old ones
                cutoff = now - self.period_s
                self._last = {k: t for k, t in self._last.items() if t >= cutoff}
            self._last[key] = now
            return self._suppressed.pop(key, 0)
