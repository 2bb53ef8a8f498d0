"""paho's client reading in chunks (``controlsvc.mqtt.read_buffer``), on socket pairs."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from controlsvc.mqtt.read_buffer import BufferedReadClient


def _pair() -> tuple[socket.socket, socket.socket]:
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    return ours, theirs


@pytest.fixture
def client() -> Iterator[BufferedReadClient]:
    made = BufferedReadClient(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
    yield made
    made._sock_close()


def test_small_reads_are_served_from_one_read_of_the_socket(client) -> None:
    ours, theirs = _pair()
    client._sock = ours
    theirs.sendall(b"0123456789")
    assert client._sock_recv(1) == b"0"
    theirs.sendall(b"abc")  # not read until the buffer is used up
    assert client._sock_recv(3) == b"123"
    assert client._sock_recv(100) == b"456789"
    assert client._sock_recv(100) == b"abc"
    with pytest.raises(BlockingIOError):
        client._sock_recv(1)
    theirs.close()
    assert client._sock_recv(1) == b""  # the end of the stream, as paho expects it


def test_what_a_closed_socket_left_is_not_read_on_the_next(client) -> None:
    ours, theirs = _pair()
    client._sock = ours
    theirs.sendall(b"old connection's bytes")
    assert client._sock_recv(1) == b"o"
    client._sock_close()
    theirs.close()
    ours, theirs = _pair()
    client._sock = ours
    theirs.sendall(b"new")
    assert client._sock_recv(10) == b"new"
    theirs.close()


def _publish_packet(topic: str, payload: bytes) -> bytes:
    """An MQTT 3.1.1 PUBLISH at QoS 0 (lengths under 128: one length byte)."""
    body = struct.pack("!H", len(topic)) + topic.encode() + payload
    return bytes([0x30, len(body)]) + body


def test_packets_waiting_in_the_buffer_are_handled_without_waiting_for_the_socket(
    client,
) -> None:
    """``select`` cannot see the buffer: one ``loop_read`` handles every whole packet in it."""
    got: list[bytes] = []
    client.on_message = lambda _c, _u, msg: got.append(msg.payload)
    ours, theirs = _pair()
    client._sock = ours
    packets = [_publish_packet("t/x", f"m{i}".encode()) for i in range(5)]
    half = packets[4][:4]
    theirs.sendall(b"".join(packets[:4]) + half)
    assert client.loop_read() == paho.MQTT_ERR_SUCCESS
    assert got == [b"m0", b"m1", b"m2", b"m3"]
    theirs.sendall(packets[4][4:])  # the rest of the half-read packet
    assert client.loop_read() == paho.MQTT_ERR_SUCCESS
    assert got == [b"m0", b"m1", b"m2", b"m3", b"m4"]
    theirs.close()
