"""The paho client the simulator runs thousands of: paho's own, with a cheaper PUBACK.

For every PUBACK, paho 2.x builds a fresh ``Properties`` (it rebuilds a table of 27 property
names each time) and two ``ReasonCode`` objects: about 110 µs on a 2-core test machine, more
than everything else a QoS 1 status publish costs together, and 0.5 core at 5,000 statuses/s.
A PUBACK from mosquitto has no properties, so ``SimClient`` decodes that common case with
shared, never-mutated objects and hands everything else to paho. The override relies on
``_in_packet``, ``_out_messages``, ``_out_message_mutex`` and ``_do_on_publish`` (paho 2.1 and
2.2); ``FAST_PUBACK`` is off, and paho's own code runs, if a paho release no longer has them.
"""

from __future__ import annotations

import inspect
import struct
from typing import Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

__all__ = ["FAST_PUBACK", "SimClient"]


def _paho_looks_as_expected() -> bool:
    for name in ("_handle_pubackcomp", "_do_on_publish", "_packet_read"):
        if not hasattr(mqtt.Client, name):
            return False
    source = inspect.getsource(mqtt.Client._handle_pubackcomp)
    return all(part in source for part in ("_in_packet", "_out_messages", "_do_on_publish"))


FAST_PUBACK = _paho_looks_as_expected()

_NO_PROPERTIES = Properties(PacketTypes.PUBACK)  # type: ignore[no-untyped-call]
_REASONS: dict[int, ReasonCode] = {}


def _reason(code: int) -> ReasonCode:
    reason = _REASONS.get(code)
    if reason is None:
        reason = _REASONS[code] = ReasonCode(PacketTypes.PUBACK, identifier=code)
    return reason


class SimClient(mqtt.Client):
    """``paho.mqtt.client.Client`` with the fast PUBACK path described above."""

    def _handle_pubackcomp(self, cmd: Literal["PUBACK", "PUBCOMP"]) -> MQTTErrorCode:
        packet = self._in_packet["packet"]
        size = len(packet)
        # MQTT 5 PUBACK: packet id, then optionally a reason code, then optionally properties.
        plain = size == 2 or size == 3 or (size == 4 and packet[3] == 0)
        if not (FAST_PUBACK and cmd == "PUBACK" and plain and self._protocol == mqtt.MQTTv5):
            return super()._handle_pubackcomp(cmd)
        try:
            reason = _reason(packet[2] if size > 2 else 0)
        except (KeyError, ValueError):  # a code paho does not know for PUBACK: let it say so
            return super()._handle_pubackcomp(cmd)
        (mid,) = struct.unpack_from("!H", packet)
        with self._out_message_mutex:
            if mid in self._out_messages:
                return self._do_on_publish(mid, reason, _NO_PROPERTIES)
        return MQTTErrorCode.MQTT_ERR_SUCCESS
