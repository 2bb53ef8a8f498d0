"""paho's client taking PUBLISHes on a short path: whole packets out of the read buffer, and
MQTT 5 messages decoded into a small ``Received`` for an ``on_received`` hook.

For each received message paho reads the fixed header a byte at a time, builds a ``Properties``
object (tens of dictionary entries, then the properties one by one), an ``MQTTMessage`` with a
``threading.Condition`` that only sent messages use, and matches the topic against its
per-topic callbacks. At 2,000 statuses/s that was a fifth of the bridge's CPU (py-spy, `bench/
ingest.py --profile-gil`, docs/benchmarks.md). The service reads of a message only its topic,
payload, QoS, retain flag, packet id and correlation data, so:

- ``BufferedReadClient`` hands paho whole packets from its buffer (``_packet_read``);
- a client with ``on_received`` set gets each MQTT 5 PUBLISH at QoS 0 or 1 whose properties are
  only of the kinds ``parse_publish`` reads, as a ``Received``, instead of ``on_message``.
  Anything else (MQTT 3, QoS 2, a topic that is not UTF-8, a user property, a response topic, a
  topic alias, a malformed packet) goes through paho's own path and ``on_message``, so its
  handling (and its errors) stay paho's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as paho
from paho.mqtt.client import MQTT_LOG_ERR
from paho.mqtt.enums import MQTTErrorCode

from controlsvc.mqtt.ack_writes import AckJoiningClient

__all__ = ["Received", "ReceivedHook", "ReceivingClient", "parse_publish"]

# MQTT 5 property identifiers (section 2.2.2.2) that ``parse_publish`` reads or skips.
_PAYLOAD_FORMAT = 0x01  # byte
_MESSAGE_EXPIRY = 0x02  # four-byte integer
_CONTENT_TYPE = 0x03  # UTF-8 string
_CORRELATION_DATA = 0x09  # binary data
_SUBSCRIPTION_ID = 0x0B  # variable byte integer (one per matching subscription)


@dataclass(frozen=True, slots=True)
class Received:
    """What the service reads of a received PUBLISH."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    mid: int  # the packet id (0 at QoS 0)
    correlation_data: bytes | None = None


ReceivedHook = Callable[[Received], None]


def _varint(data: bytes | bytearray, pos: int) -> tuple[int, int]:
    """A variable byte integer at ``pos``, and the position after it."""
    value = 0
    shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 21:
            raise ValueError("a variable byte integer of more than four bytes")


def parse_publish(command: int, packet: bytes | bytearray) -> Received | None:
    """An MQTT 5 PUBLISH at QoS 0 or 1 (``command``: its first byte; ``packet``: the rest after
    the remaining length), or None when paho's own decoder should take it (see the module doc)."""
    qos = (command >> 1) & 0x03
    if qos > 1:
        return None
    try:
        end_of_topic = 2 + ((packet[0] << 8) | packet[1])
        topic_bytes = packet[2:end_of_topic]
        pos = end_of_topic
        mid = 0
        if qos:
            mid = (packet[pos] << 8) | packet[pos + 1]
            pos += 2
        length, pos = _varint(packet, pos)
        end_of_properties = pos + length
        correlation_data = None
        while pos < end_of_properties:
            ident = packet[pos]
            pos += 1
            if ident == _SUBSCRIPTION_ID:
                _, pos = _varint(packet, pos)
            elif ident == _CORRELATION_DATA:
                size = (packet[pos] << 8) | packet[pos + 1]
                correlation_data = packet[pos + 2 : pos + 2 + size]
                pos += 2 + size
            elif ident == _PAYLOAD_FORMAT:
                pos += 1
            elif ident == _MESSAGE_EXPIRY:
                pos += 4
            elif ident == _CONTENT_TYPE:
                pos += 2 + ((packet[pos] << 8) | packet[pos + 1])
            else:
                return None
        if pos != end_of_properties or end_of_properties > len(packet):
            return None
        topic = topic_bytes.decode()
    except (IndexError, ValueError):  # truncated, or a topic that is not UTF-8
        return None
    return Received(
        topic,
        bytes(packet[end_of_properties:]),
        qos,
        bool(command & 0x01),
        mid,
        None if correlation_data is None else bytes(correlation_data),
    )


class ReceivingClient(AckJoiningClient):
    """A paho ``Client`` (chunked reads, joined PUBACKs) that hands MQTT 5 PUBLISHes to
    ``on_received`` when it is set (see the module doc)."""

    on_received: ReceivedHook | None = None

    def _handle_publish(self) -> MQTTErrorCode:
        hook = self.on_received
        if hook is None or self._protocol != paho.MQTTv5:
            return super()._handle_publish()
        received = parse_publish(self._in_packet["command"], self._in_packet["packet"])
        if received is None:
            return super()._handle_publish()
        # As paho calls its message callbacks: under this lock, which tells its other
        # methods that a callback is running on the network thread.
        with self._in_callback_mutex:
            try:
                hook(received)
            except Exception as err:
                self._easy_log(MQTT_LOG_ERR, "Caught exception in on_received: %s", err)
                if not self.suppress_exceptions:
                    raise
        if received.qos == 1 and not self._manual_ack:
            return self._send_puback(received.mid)
        return MQTTErrorCode.MQTT_ERR_SUCCESS
