"""What domain code needs from MQTT: publish one message and know the broker has it.

Domain modules (``enclosures``, ``commands``) take a ``Publisher``; the API processes pass
``controlsvc.mqtt.publisher.MqttPublisher``, the bridge passes its own client, unit tests pass a
fake. Nothing here imports paho.

::

    Unavailable (controlsvc.domain.errors, 503)
    └── BrokerUnavailable      the broker cannot be reached, or did not acknowledge in time
        └── PublishRefused     the broker answered with a failure (e.g. 0x87 not authorized)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from controlsvc.domain.errors import Unavailable

__all__ = [
    "BatchPublisher",
    "BrokerUnavailable",
    "MessageProperties",
    "PublishRefused",
    "Publisher",
]


class BrokerUnavailable(Unavailable):
    """The broker cannot be reached or did not acknowledge a QoS 1 message in time."""


class PublishRefused(BrokerUnavailable):
    """The broker refused a message (PUBACK reason code >= 0x80)."""

    def __init__(self, detail: str, *, reason_code: int) -> None:
        super().__init__(detail)
        self.reason_code = reason_code


@dataclass(frozen=True, slots=True)
class MessageProperties:
    """The MQTT 5 PUBLISH properties the service sets (None: not sent)."""

    response_topic: str | None = None
    correlation_data: bytes | None = None
    message_expiry_interval: int | None = None
    content_type: str | None = None


class Publisher(Protocol):
    """Publishes messages; thread safe."""

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        properties: MessageProperties | None = None,
    ) -> None:
        """Publish ``payload`` to ``topic``.

        QoS 1 returns once the broker acknowledged it (PUBACK); QoS 0 once it is handed to the
        socket buffer. Raises ``BrokerUnavailable`` (not connected, or no PUBACK in time) or
        ``PublishRefused``.
        """
        ...


@runtime_checkable
class BatchPublisher(Publisher, Protocol):
    """A ``Publisher`` that can also pipeline many messages (one wait for all PUBACKs)."""

    def publish_many(
        self, messages: Sequence[tuple[str, bytes]], *, qos: int = 1, retain: bool = False
    ) -> list[BrokerUnavailable | None]:
        """Publish ``(topic, payload)`` pairs; per message None (acknowledged) or the error
        ``publish`` would have raised."""
        ...
