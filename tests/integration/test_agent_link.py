"""The agent's MQTT connection (``MqttLink``) on a real Mosquitto, below the agent."""

# ruff: noqa: F811 (pytest fixtures are imported by name, then requested as parameters)

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from controlsvc.broker import LocalBroker
from enclosure_agent.link import Inbound, Outgoing
from enclosure_agent.mqtt import LinkSettings, MqttLink
from tests.support.broker import BrokerAccount, broker_enclosure, mosquitto, mqtt_client  # noqa: F401
from tests.support.waiting import wait_for

pytestmark = pytest.mark.mosquitto

PREFIX = "jaxmba/v1"
SERVICE = "jaxmba_service"


class Listener:
    """Everything the link reports, for the test thread to look at."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.connections = 0
        self.disconnects: list[str] = []
        self.payloads: list[bytes] = []
        self.subscribed: list[int] = []

    def link_connected(self, session_present: bool) -> None:
        with self.lock:
            self.connections += 1

    def link_disconnected(self, reason: str) -> None:
        with self.lock:
            self.disconnects.append(reason)

    def link_refused(self, reason: str, fatal: bool) -> None:
        raise AssertionError(f"refused: {reason}")

    def link_message(self, message: Inbound) -> None:
        with self.lock:
            self.payloads.append(message.payload)

    def link_published(self, mid: int, ok: bool, reason: str) -> None:
        pass

    def link_subscribed(self, mid: int, granted: list[int]) -> None:
        with self.lock:
            self.subscribed.append(mid)


@pytest.fixture
def link(
    mosquitto: LocalBroker, broker_enclosure: BrokerAccount
) -> Iterator[tuple[MqttLink, Listener]]:
    eid = broker_enclosure.username
    listener = Listener()
    made = MqttLink(
        LinkSettings(
            host=mosquitto.host,
            port=mosquitto.port,
            client_id=eid,
            username=eid,
            password=broker_enclosure.password,
            keepalive_s=5,
            session_expiry_s=300,
            will=Outgoing(f"{PREFIX}/enc/{eid}/state", b"{}", qos=1, retain=False),
            reconnect_min_s=0.2,
            reconnect_max_s=1,
        ),
        listener,
    )
    made.start()
    try:
        wait_for(lambda: made.connected, message="the link never connected")
        yield made, listener
    finally:
        made.stop()


def test_an_exception_escaping_pahos_loop_does_not_end_the_link(
    link: tuple[MqttLink, Listener], broker_enclosure: BrokerAccount, mosquitto, mqtt_client
) -> None:
    """paho lets an exception from its own code, or from a callback it calls unguarded, end its
    network thread: the link looked connected and delivered nothing, for good. Now it connects
    again, and the message being handled comes again (QoS 1, the broker kept the session)."""
    made, listener = link
    eid = broker_enclosure.username
    topic = f"{PREFIX}/enc/{eid}/cmd"
    mid = made.subscribe([topic])
    wait_for(lambda: mid in listener.subscribed, message="no SUBACK")

    client: Any = made._client  # the one way to make paho's loop raise on demand
    guarded = client.on_message

    def explode(*args: object) -> None:
        client.on_message = guarded
        raise RuntimeError("a bug in the network thread")

    client.on_message = explode
    service = mqtt_client(mosquitto, SERVICE)
    service.publish(topic, b"first", qos=1)
    wait_for(
        lambda: b"first" in listener.payloads,
        message=lambda: f"nothing arrived after the loop failed: {listener.disconnects}",
    )
    assert listener.disconnects
    assert "network loop failed" in listener.disconnects[0]
    wait_for(lambda: made.connected and listener.connections == 2)
    service.publish(topic, b"second", qos=1)
    wait_for(lambda: b"second" in listener.payloads, message="the link stopped delivering")
    assert listener.payloads.count(b"first") == 1
