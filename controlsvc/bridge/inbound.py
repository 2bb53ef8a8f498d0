"""A received MQTT message, copied out of paho's ``MQTTMessage`` (or the short path's
``Received``) on the network thread."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum

import paho.mqtt.client as paho

from controlsvc.mqtt.received import Received
from controlsvc.store.db import utcnow

__all__ = ["Inbound", "Link"]


class Link(Enum):
    """Which of the bridge's connections a message came on (docs/bridge.md, "Overload")."""

    RELIABLE = "reliable"  # state, ack, events
    STATUSES = "statuses"  # status


@dataclass(frozen=True, slots=True)
class Inbound:
    """What the worker needs of one message; ``mid``/``generation`` let it ack after the write."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    received_at: datetime
    mid: int = 0
    generation: int = 0  # the connection it arrived on; acks go only to that connection
    correlation_data: bytes | None = None
    link: Link = Link.RELIABLE  # the connection that acknowledges it

    @classmethod
    def from_paho(
        cls, message: paho.MQTTMessage, generation: int, link: Link = Link.RELIABLE
    ) -> Inbound:
        props = message.properties
        return cls(
            topic=message.topic,
            payload=bytes(message.payload),
            qos=message.qos,
            retain=bool(message.retain),
            received_at=utcnow(),
            mid=message.mid,
            generation=generation,
            correlation_data=getattr(props, "CorrelationData", None) if props else None,
            link=link,
        )

    @classmethod
    def from_received(
        cls, received: Received, generation: int, link: Link = Link.RELIABLE
    ) -> Inbound:
        return cls(
            received.topic,
            received.payload,
            received.qos,
            received.retain,
            utcnow(),
            received.mid,
            generation,
            received.correlation_data,
            link,
        )
