"""The short path for received PUBLISHes (``controlsvc.mqtt.received``), on socket pairs."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from controlsvc.mqtt.read_buffer import whole_packet
from controlsvc.mqtt.received import Received, ReceivingClient, parse_publish

SUBSCRIPTION_ID = bytes([0x0B, 0x01])
PAYLOAD_FORMAT = bytes([0x01, 0x01])
USER_PROPERTY = bytes([0x26, 0, 1]) + b"k" + bytes([0, 1]) + b"v"
TOPIC_ALIAS = bytes([0x23, 0, 5])


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value % 128, value // 128
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _correlation(data: bytes) -> bytes:
    return bytes([0x09]) + struct.pack("!H", len(data)) + data


def _body(topic: bytes, payload: bytes, *, qos: int, mid: int, properties: bytes) -> bytes:
    body = struct.pack("!H", len(topic)) + topic
    if qos:
        body += struct.pack("!H", mid)
    return body + _varint(len(properties)) + properties + payload


def _publish(
    topic: str | bytes,
    payload: bytes,
    *,
    qos: int = 1,
    mid: int = 7,
    retain: bool = False,
    properties: bytes = SUBSCRIPTION_ID,
) -> bytes:
    """A whole MQTT 5 PUBLISH packet, fixed header included."""
    raw = topic.encode() if isinstance(topic, str) else topic
    body = _body(raw, payload, qos=qos, mid=mid, properties=properties)
    return bytes([0x30 | qos << 1 | int(retain)]) + _varint(len(body)) + body


def _parsed(packet: bytes) -> Received | None:
    found = whole_packet(packet, 0)
    assert found is not None
    start, end = found
    return parse_publish(packet[0], packet[start:end])


def test_a_qos1_publish_is_read_with_its_correlation_data() -> None:
    packet = _publish(
        "p/enc/e1/ack",
        b'{"ok": true}',
        mid=513,
        retain=True,
        properties=SUBSCRIPTION_ID + PAYLOAD_FORMAT + _correlation(b"\x00corr"),
    )
    assert _parsed(packet) == Received("p/enc/e1/ack", b'{"ok": true}', 1, True, 513, b"\x00corr")


def test_a_qos0_publish_without_properties_has_no_packet_id() -> None:
    packet = _publish("p/enc/e1/status", b"{}", qos=0, properties=b"")
    assert _parsed(packet) == Received("p/enc/e1/status", b"{}", 0, False, 0, None)


def test_a_payload_longer_than_one_length_byte_is_read_whole() -> None:
    payload = bytes(range(256)) * 40  # 10,240 bytes: a remaining length of two bytes
    received = _parsed(_publish("p/enc/e1/status", payload))
    assert received is not None
    assert received.payload == payload


@pytest.mark.parametrize(
    "packet",
    [
        pytest.param(_publish("t", b"x", properties=USER_PROPERTY), id="user property"),
        pytest.param(_publish("t", b"x", properties=TOPIC_ALIAS), id="topic alias"),
        pytest.param(_publish("t", b"x", qos=2), id="qos 2"),
        pytest.param(_publish(b"\xff\xfe", b"x"), id="topic not utf-8"),
        pytest.param(
            _publish("t", b"", properties=bytes([0x09, 0, 50]) + b"short"),
            id="property longer than the packet",
        ),
    ],
)
def test_what_the_short_path_does_not_read_is_left_to_paho(packet: bytes) -> None:
    assert _parsed(packet) is None


def test_a_truncated_packet_is_left_to_paho() -> None:
    packet = _publish("p/enc/e1/status", b"x")
    start, end = whole_packet(packet, 0) or (0, 0)
    assert parse_publish(packet[0], packet[start : start + 3]) is None


def test_whole_packet_says_when_the_buffer_holds_only_part() -> None:
    packet = _publish("t", b"y" * 300)  # a remaining length of two bytes
    assert whole_packet(packet, 0) == (3, len(packet))
    assert whole_packet(packet[:2], 0) is None  # cut inside the length
    assert whole_packet(packet[:-1], 0) is None  # cut inside the body
    assert whole_packet(b"\x00" + packet, 1) == (4, len(packet) + 1)
    assert whole_packet(bytes([0x30, 0x80, 0x80, 0x80, 0x80, 0x01]), 0) is None  # 5 length bytes


@pytest.fixture
def client() -> Iterator[ReceivingClient]:
    made = ReceivingClient(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    made.manual_ack_set(True)
    yield made
    made._sock_close()


def _connect(client: ReceivingClient) -> socket.socket:
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    client._sock = ours
    return theirs


def test_publishes_reach_on_received_and_the_rest_on_message_in_order(client) -> None:
    got: list[tuple[str, bytes, int]] = []
    client.on_received = lambda r: got.append(("received", r.payload, r.mid))
    client.on_message = lambda _c, _u, m: got.append(("message", m.payload, m.mid))
    theirs = _connect(client)
    theirs.sendall(
        _publish("t/a", b"one", mid=1)
        + _publish("t/b", b"two", mid=2, properties=USER_PROPERTY)
        + _publish("t/c", b"three", mid=3)
    )
    assert client.loop_read() == paho.MQTT_ERR_SUCCESS
    assert got == [("received", b"one", 1), ("message", b"two", 2), ("received", b"three", 3)]
    theirs.close()


def test_a_packet_cut_by_the_end_of_a_read_is_finished_on_the_next(client) -> None:
    got: list[bytes] = []
    client.on_received = lambda r: got.append(r.payload)
    theirs = _connect(client)
    first, second = _publish("t/a", b"a" * 200, mid=1), _publish("t/b", b"b" * 200, mid=2)
    theirs.sendall(first + second[:2])  # the second cut inside its remaining length
    assert client.loop_read() == paho.MQTT_ERR_SUCCESS
    assert got == [b"a" * 200]
    theirs.sendall(second[2:])
    assert client.loop_read() == paho.MQTT_ERR_SUCCESS
    assert got == [b"a" * 200, b"b" * 200]
    theirs.close()


def test_each_packet_taken_whole_counts_as_traffic_for_the_keepalive(client) -> None:
    client.on_received = lambda _r: None
    theirs = _connect(client)
    client._last_bytes_received = 0.0
    theirs.sendall(_publish("t/a", b"x") + _publish("t/b", b"y"))
    client.loop_read()
    assert client._last_bytes_received > 0.0
    assert client._in_packet["command"] == 0  # nothing left half-read
    theirs.close()


def test_without_manual_acks_the_short_path_acknowledges_as_paho_does(client) -> None:
    client.manual_ack_set(False)
    client.on_received = lambda _r: None
    theirs = _connect(client)
    theirs.sendall(_publish("t/a", b"x", mid=300))
    client.loop_read()
    client.loop_write()
    assert theirs.recv(16) == bytes([0x40, 0x02]) + struct.pack("!H", 300)
    theirs.close()


def test_without_a_hook_every_publish_goes_to_on_message(client) -> None:
    got: list[bytes] = []
    client.on_message = lambda _c, _u, m: got.append(m.payload)
    theirs = _connect(client)
    theirs.sendall(_publish("t/a", b"one") + _publish("t/b", b"two", qos=0, properties=b""))
    client.loop_read()
    assert got == [b"one", b"two"]
    theirs.close()


def test_a_hook_that_raises_is_reported_as_paho_reports_its_callbacks(client) -> None:
    def fails(_r: Received) -> None:
        raise RuntimeError("boom")

    client.on_received = fails
    theirs = _connect(client)
    theirs.sendall(_publish("t/a", b"x"))
    with pytest.raises(RuntimeError, match="boom"):
        client.loop_read()
    client.suppress_exceptions = True
    theirs.sendall(_publish("t/b", b"y"))
    assert client.loop_read() == paho.MQTT_ERR_SUCCESS
    theirs.close()


def test_the_first_packet_of_a_read_is_taken_whole_too(client) -> None:
    """paho's own reads (a byte of the header at a time) serve only a packet cut by the end of
    a chunk, and the reports of a socket that has nothing or is closed."""
    got: list[int] = []
    client.on_received = lambda r: got.append(r.mid)
    small_reads: list[int] = []
    buffered = client._sock_recv

    def counted(bufsize: int) -> bytes:
        small_reads.append(bufsize)
        return buffered(bufsize)

    client._sock_recv = counted
    theirs = _connect(client)
    theirs.sendall(b"".join(_publish("t/a", b"x" * 100, mid=mid) for mid in (1, 2, 3)))
    assert client.loop_read() == paho.MQTT_ERR_SUCCESS
    assert got == [1, 2, 3]
    assert small_reads == []
    theirs.close()
    assert client.loop_read() == paho.MQTT_ERR_CONN_LOST  # the end of the stream, as paho's
