"""paho's client writing consecutive PUBACKs in one ``send`` (``controlsvc.mqtt.ack_writes``)."""

from __future__ import annotations

import collections
import socket
import struct

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from controlsvc.mqtt.ack_writes import MAX_JOINED_BYTES, AckJoiningClient


def _puback(mid: int) -> bytes:
    return struct.pack("!BBH", 0x40, 2, mid)


def _read_all(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        data += sock.recv(size - len(data))
    return data


@pytest.fixture
def wired(monkeypatch):
    """A client on one end of a socket pair, its queue filled as by another thread (no write
    on queueing), and the number of ``send`` calls it makes."""
    client = AckJoiningClient(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    client._sock = ours
    client._thread = object()  # type: ignore[assignment]  # queueing then only queues
    sends: list[int] = []
    plain_send = paho.Client._sock_send

    def counted(self: paho.Client, buf: bytes | bytearray) -> int:
        sends.append(len(buf))
        return plain_send(self, buf)

    monkeypatch.setattr(paho.Client, "_sock_send", counted)
    yield client, theirs, sends
    client._thread = None
    client._sock_close()
    theirs.close()


def test_queued_pubacks_go_out_in_one_send_in_order(wired) -> None:
    client, theirs, sends = wired
    for mid in range(1, 301):
        client._send_puback(mid)
    assert client.loop_write() == paho.MQTT_ERR_SUCCESS
    assert sends == [300 * 4]
    assert _read_all(theirs, 1200) == b"".join(_puback(mid) for mid in range(1, 301))
    assert not client._out_packet


def test_other_packets_keep_their_place_and_their_own_writes(wired) -> None:
    client, theirs, sends = wired
    client._send_puback(1)
    client._send_puback(2)
    client._send_simple_command(paho.PINGREQ)
    client._send_puback(3)
    client._send_puback(4)
    client._send_puback(5)
    assert client.loop_write() == paho.MQTT_ERR_SUCCESS
    assert sends == [8, 2, 12]
    expected = (
        _puback(1) + _puback(2) + bytes([paho.PINGREQ, 0]) + b"".join(_puback(m) for m in (3, 4, 5))
    )
    assert _read_all(theirs, len(expected)) == expected


def test_a_write_is_at_most_the_cap(wired) -> None:
    client, theirs, sends = wired
    count = MAX_JOINED_BYTES // 4 + 10
    for mid in range(1, count + 1):
        client._send_puback(mid % 65535 + 1)
    while client._out_packet:
        client.loop_write()
        theirs.recv(1 << 20)
    assert max(sends) <= MAX_JOINED_BYTES
    assert sum(sends) >= count * 4


class _CountingQueue(collections.deque):  # type: ignore[type-arg]
    taken = 0

    def popleft(self):  # type: ignore[no-untyped-def]
        self.taken += 1
        return super().popleft()


def test_a_queue_without_a_run_of_pubacks_is_left_as_it_is(wired, monkeypatch) -> None:
    """A queue of PUBLISHes (a session's documents) is not taken apart and put back."""
    client, _theirs, _sends = wired
    client._out_packet = _CountingQueue()
    for mid in range(1, 6):
        client._packet_queue(0x32, b"publish", mid, 1)  # a PUBLISH at QoS 1
    client._send_puback(9)
    queued = list(client._out_packet)
    seen: list[list[object]] = []

    def write(self: paho.Client) -> paho.MQTTErrorCode:  # paho's, looking only
        seen.append(list(self._out_packet))
        return paho.MQTT_ERR_SUCCESS

    monkeypatch.setattr(paho.Client, "_packet_write", write)
    client._packet_write()
    assert client._out_packet.taken == 0
    assert seen == [queued]
