"""paho's client reading the socket in large chunks.

paho reads each packet with at least three ``recv`` calls (the type byte, the length bytes one
at a time, the rest), and after ``select`` says the socket is readable it handles one packet
before asking ``select`` again. Under load, that is four system calls and a pass through paho's
loop per message: taking 50,000 QoS 1 messages of 800 bytes and acknowledging them in batches
as the bridge does, a subscriber spent 135-143 µs of CPU per message, and 80-91 µs reading
64 KiB at a time and serving paho's small reads from that (``bench/mqtt_receive.py``;
docs/benchmarks.md).

A packet that lies whole in the buffer is taken out of it at once (``_packet_read``) rather
than by paho's reads of one byte of its header at a time; a packet cut by the end of a chunk
goes through paho's own reads.

The buffer is dropped with the socket it came from; paho resets its half-read packet at the
same points (``reconnect``), so no byte of one connection is read on the next.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import paho.mqtt.client as paho
from paho.mqtt.client import MQTT_LOG_DEBUG, time_func
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.exception import MalformedPacket

if TYPE_CHECKING:
    from paho.mqtt.client import _InPacket

__all__ = ["READ_CHUNK", "BufferedReadClient"]

# One read takes what the kernel has, up to this: about 80 status messages.
READ_CHUNK = 65536
# The remaining length of an MQTT packet takes at most four bytes.
_MAX_LENGTH_BYTES = 4


def whole_packet(buffer: bytes, at: int) -> tuple[int, int] | None:
    """Where the packet starting at ``at`` has its body and where it ends, if ``buffer`` holds
    all of it; None if it does not (or its length is malformed: paho's reads report that)."""
    pos = at + 1
    length = 0
    shift = 0
    while True:
        if pos >= len(buffer) or pos - at > _MAX_LENGTH_BYTES:
            return None
        byte = buffer[pos]
        pos += 1
        length |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
        shift += 7
    end = pos + length
    return (pos, end) if end <= len(buffer) else None


def _fresh_packet() -> _InPacket:
    # What paho's ``_packet_read`` leaves in ``_in_packet`` after each packet.
    return {
        "command": 0,
        "have_remaining": 0,
        "remaining_count": [],
        "remaining_mult": 1,
        "remaining_length": 0,
        "packet": bytearray(b""),
        "to_process": 0,
        "pos": 0,
    }


class BufferedReadClient(paho.Client):
    """A paho ``Client`` whose socket reads go through a buffer (see the module doc)."""

    _read_buffer: bytes = b""
    _read_at: int = 0

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._read_at >= len(self._read_buffer):
            data = super()._sock_recv(READ_CHUNK)  # BlockingIOError when nothing is there
            if len(data) <= bufsize:  # all of it wanted (or the end: b"")
                self._drop_read_buffer()
                return data
            self._read_buffer, self._read_at = data, 0
        start = self._read_at
        self._read_at = start + bufsize
        return self._read_buffer[start : self._read_at]

    def _packet_read(self) -> MQTTErrorCode:
        """A packet whole in the buffer at once; otherwise paho's reads (see the module doc)."""
        if self._in_packet["command"] != 0:  # one paho began reading
            return super()._packet_read()
        if self._read_at >= len(self._read_buffer):
            # Read a chunk here: paho's first read would take one byte of it and leave the
            # rest of the packet to its slow path. A failure (nothing there, the connection
            # gone) is paho's to read again and report.
            try:
                data = super()._sock_recv(READ_CHUNK)
            except OSError:  # BlockingIOError included
                return super()._packet_read()
            if not data:
                return super()._packet_read()
            self._read_buffer, self._read_at = data, 0
        buffer, at = self._read_buffer, self._read_at
        found = whole_packet(buffer, at)
        if found is None:
            return super()._packet_read()
        start, end = found
        self._read_at = end
        packet = self._in_packet
        packet["command"] = buffer[at]
        packet["have_remaining"] = 1
        packet["remaining_length"] = end - start
        packet["packet"] = bytearray(memoryview(buffer)[start:end])
        try:
            rc = self._packet_handle()
        except MalformedPacket as exc:
            self._easy_log(MQTT_LOG_DEBUG, "Received malformed packet: %s", exc)
            rc = MQTTErrorCode.MQTT_ERR_PROTOCOL
        self._in_packet = _fresh_packet()
        with self._msgtime_mutex:
            self._last_bytes_received = time_func()
        return rc

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        """paho's, then on while whole packets wait in the buffer: ``select`` cannot tell."""
        rc = super().loop_read(max_packets)
        while (
            rc == MQTTErrorCode.MQTT_ERR_SUCCESS
            and self._read_at < len(self._read_buffer)
            and self._sock is not None
        ):
            rc = super().loop_read(max_packets)
        return rc

    def _sock_close(self) -> None:
        self._drop_read_buffer()
        super()._sock_close()

    def reconnect(self) -> MQTTErrorCode:
        self._drop_read_buffer()
        return super().reconnect()

    def _drop_read_buffer(self) -> None:
        self._read_buffer, self._read_at = b"", 0
