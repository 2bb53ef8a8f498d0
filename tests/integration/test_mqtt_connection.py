"""``MqttConnection``, what every MQTT connection of the service is, on a real Mosquitto."""

# ruff: noqa: F811 (pytest fixtures are imported by name, then requested as parameters)

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable, Iterator
from typing import Any

import paho.mqtt.client as paho
import pytest
from prometheus_client import REGISTRY
from pydantic import SecretStr

from controlsvc.broker import SERVICE_USER, LocalBroker
from controlsvc.config.settings import MqttSettings, Settings
from controlsvc.mqtt.connection import MqttConnection
from controlsvc.mqtt.read_buffer import READ_CHUNK
from schemas.connack import FATAL_CONNACK
from tests.support.broker import mosquitto, mqtt_client  # noqa: F401
from tests.support.waiting import wait_for

pytestmark = pytest.mark.mosquitto

PREFIX = "jaxmba/v1"
log = logging.getLogger(__name__)


class Hooks:
    """What the connection told its user, for the test thread to look at."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ups = 0
        self.downs: list[str] = []
        self.refusals: list[Any] = []
        self.payloads: list[bytes] = []

    def on_up(self, client: paho.Client, _session_present: bool) -> None:
        client.subscribe(f"{PREFIX}/test/#", qos=1)
        with self.lock:
            self.ups += 1

    def on_down(self, detail: str) -> None:
        with self.lock:
            self.downs.append(detail)

    def on_refused(self, refused: Any) -> None:
        with self.lock:
            self.refusals.append(refused)

    def on_message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        with self.lock:
            self.payloads.append(msg.payload)


def _settings(settings: Settings, broker: LocalBroker, password: str) -> Settings:
    mqtt = MqttSettings(
        host=broker.host,
        port=broker.service_port,
        username=SERVICE_USER,
        password=SecretStr(password),
        topic_prefix=PREFIX,
        keepalive_s=5,
    )
    return settings.model_copy(update={"mqtt": mqtt})


@pytest.fixture
def connect(
    settings: Settings, mosquitto: LocalBroker
) -> Iterator[Callable[..., tuple[MqttConnection, Hooks]]]:
    made: list[MqttConnection] = []

    def factory(password: str | None = None) -> tuple[MqttConnection, Hooks]:
        hooks = Hooks()
        kind = f"test-{secrets.token_hex(3)}"
        connection = MqttConnection(
            _settings(settings, mosquitto, password or mosquitto.accounts[SERVICE_USER]),
            kind=kind,
            client_id=f"jaxmba-{kind}",
            logger=log,
            on_up=hooks.on_up,
            on_down=hooks.on_down,
            on_refused=hooks.on_refused,
        )
        connection.client.on_message = hooks.on_message
        made.append(connection)
        connection.start()
        return connection, hooks

    try:
        yield factory
    finally:
        for connection in made:
            connection.stop()


def _metric(name: str, kind: str) -> float:
    return REGISTRY.get_sample_value(name, {"kind": kind}) or 0.0


def test_up_and_down_are_told_once_and_counted(connect) -> None:
    connection, hooks = connect()
    wait_for(lambda: connection.up, message="never connected")
    assert hooks.ups == 1
    assert _metric("jaxmba_mqtt_connections_up", connection.kind) == 1
    assert _metric("jaxmba_mqtt_connects_total", connection.kind) == 1
    connection.stop()
    connection.stop()  # idempotent
    assert hooks.downs == ["stopped"]
    assert not connection.up
    assert _metric("jaxmba_mqtt_connections_up", connection.kind) == 0


def test_bad_credentials_stop_the_reconnecting_with_the_shared_table(connect) -> None:
    """The refusal is read with the table the agent uses; paho's loop ends instead of knocking
    at the broker every few seconds with a password that cannot work."""
    connection, hooks = connect(password="wrong-" + secrets.token_hex(8))
    # `refusal` is set before the hooks run (in paho's thread): wait for what is asserted
    wait_for(lambda: hooks.refusals and hooks.downs, message="the refusal was not told")
    refused = connection.refusal
    assert refused is not None
    assert refused.fatal
    assert refused.code in FATAL_CONNACK
    assert "bad user name or password" in str(refused) or "not authorized" in str(refused)
    assert hooks.refusals == [refused]
    assert len(hooks.downs) == 1
    assert "refused" in hooks.downs[0]
    thread = f"paho-mqtt-client-{connection.client_id}"
    wait_for(
        lambda: all(t.name != thread for t in threading.enumerate()),
        message="paho's network thread kept reconnecting after a fatal refusal",
    )
    code = f"0x{refused.code:02x}"
    assert (
        REGISTRY.get_sample_value(
            "jaxmba_mqtt_refusals_total", {"kind": connection.kind, "code": code}
        )
        == 1
    )
    assert hooks.ups == 0
    assert not connection.up


def test_an_exception_escaping_pahos_loop_does_not_end_the_connection(
    connect, mosquitto, mqtt_client
) -> None:
    """paho lets an exception from a callback it calls unguarded end its network thread: the
    connection looked up and moved nothing, for good. Now it is reported down, connects again
    and subscribes again (the user's on_up), and messages flow."""
    connection, hooks = connect()
    wait_for(lambda: connection.up and hooks.ups == 1, message="never connected")
    client: Any = connection.client
    guarded = client.on_message

    def explode(*args: object) -> None:
        client.on_message = guarded
        raise RuntimeError("a bug in the network thread")

    client.on_message = explode
    sender = mqtt_client(mosquitto, SERVICE_USER)
    sender.publish(f"{PREFIX}/test/x", b"first", qos=1)
    wait_for(lambda: hooks.downs, message="the failed loop was not reported")
    assert "network loop failed" in hooks.downs[0]
    wait_for(lambda: connection.up and hooks.ups == 2, message="never connected again")
    sender.publish(f"{PREFIX}/test/x", b"second", qos=1)
    wait_for(lambda: b"second" in hooks.payloads, message="the connection stopped delivering")


def test_a_burst_arrives_whole_and_in_order_in_few_socket_reads(
    connect, mosquitto, mqtt_client, monkeypatch
) -> None:
    """The connection reads the socket in chunks (``controlsvc.mqtt.read_buffer``): messages of
    every size, one larger than a chunk and empty ones among them, arrive whole and in order,
    in fewer reads than messages (paho alone makes at least three per message)."""
    reads = 0
    plain_recv = paho.Client._sock_recv

    def counted(self: paho.Client, bufsize: int) -> bytes:
        nonlocal reads
        if self is connection.client:  # not the sender's reads of its PUBACKs
            reads += 1
        return plain_recv(self, bufsize)

    monkeypatch.setattr(paho.Client, "_sock_recv", counted)
    connection, hooks = connect()
    wait_for(lambda: connection.up and hooks.ups == 1, message="never connected")
    sender: Any = mqtt_client(mosquitto, SERVICE_USER)
    # Probes until one arrives: the subscription (made in on_up) is in place.
    wait_for(
        lambda: sender.publish(f"{PREFIX}/test/probe", b"probe") == 0 and hooks.payloads,
        message="the subscription never delivered",
    )
    sizes = [(i * 37) % 1500 for i in range(1500)]
    sizes[700] = READ_CHUNK + 12345
    payloads = [bytes([i % 251]) * size for i, size in enumerate(sizes)]
    reads = 0
    infos = [sender._client.publish(f"{PREFIX}/test/burst", p, qos=1) for p in payloads]
    for info in infos:
        info.wait_for_publish(timeout=30)

    def burst() -> list[bytes]:
        with hooks.lock:
            return [p for p in hooks.payloads if p != b"probe"]

    wait_for(lambda: len(burst()) >= len(payloads), message="the burst did not arrive")
    assert burst() == payloads
    assert reads < len(payloads), f"{reads} socket reads for {len(payloads)} messages"
