"""paho's client reading the socket in large chunks.

paho reads each packet with at least three ``recv`` calls (the type byte, the length bytes one
at a time, the rest), and after ``select`` says the socket is readable it handles one packet
before asking ``select`` again. Under load, that is four system calls and a pass through paho's
loop per message: taking 50,000 QoS 1 messages of 800 bytes and acknowledging them in batches
as the bridge does, a subscriber spent 135-143 µs of CPU per message, and 80-91 µs reading
64 KiB at a time and serving paho's small reads from that (``bench/mqtt_receive.py``;
docs/benchmarks.md).

The buffer is dropped with the socket it came from; paho resets its half-read packet at the
same points (``reconnect``), so no byte of one connection is read on the next.
"""

from __future__ import annotations

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode

__all__ = ["READ_CHUNK", "BufferedReadClient"]

# One read takes what the kernel has, up to this: about 80 status messages.
READ_CHUNK = 65536


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
