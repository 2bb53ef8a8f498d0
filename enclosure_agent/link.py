"""What the agent needs from its MQTT connection, without paho (``mqtt.py`` implements it).

``Inbound`` is a received message copied out of paho's ``MQTTMessage``; ``LinkListener`` is
what the connection reports (called on the MQTT network thread: implementations hand the work
to the agent's own thread); ``Link`` is what the agent calls.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from schemas.types import utc_now

__all__ = ["Inbound", "Link", "LinkListener", "Outgoing"]


@dataclass(frozen=True, slots=True)
class Inbound:
    """One delivered message."""

    topic: str
    payload: bytes
    retain: bool = False
    qos: int = 1
    response_topic: str | None = None
    correlation_data: bytes | None = None
    expiry_interval_s: int | None = None  # what was left of the MQTT 5 Message Expiry Interval
    received_at: datetime = field(default_factory=utc_now)
    received_monotonic: float = field(default_factory=time.monotonic)

    def expired(self, now_monotonic: float | None = None) -> bool:
        """True when the MQTT message expiry lapsed while the message waited here."""
        if self.expiry_interval_s is None:
            return False
        now = time.monotonic() if now_monotonic is None else now_monotonic
        return now > self.received_monotonic + self.expiry_interval_s


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to publish."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False
    correlation_data: bytes | None = None
    expiry_interval_s: int | None = None


class LinkListener(Protocol):
    """What the connection reports; every method is called on the MQTT network thread."""

    def link_connected(self, session_present: bool) -> None: ...

    def link_disconnected(self, reason: str) -> None: ...

    def link_refused(self, reason: str, fatal: bool) -> None: ...

    def link_message(self, message: Inbound) -> None: ...

    def link_published(self, mid: int, ok: bool, reason: str) -> None: ...

    def link_subscribed(self, mid: int, granted: list[int]) -> None: ...


class Link(Protocol):
    """The connection as the agent uses it (thread-safe)."""

    @property
    def connected(self) -> bool: ...

    def start(self) -> None: ...

    def publish(self, message: Outgoing) -> int | None: ...

    def subscribe(self, topic_filters: list[str]) -> int | None: ...

    def wait_published(self, mid: int, timeout_s: float) -> bool: ...

    def stop(self, timeout_s: float) -> None: ...
