"""Pipelined publishing (``publish_many``) against a real Mosquitto: every message acknowledged,
refusals reported per message, and ``desired.publish_all`` using it."""

from __future__ import annotations

import secrets

import pytest
from pydantic import SecretStr

from controlsvc.broker import OPERATOR_USER, SERVICE_USER, LocalBroker
from controlsvc.config.settings import Settings
from controlsvc.domain.publisher import BatchPublisher, BrokerUnavailable, PublishRefused
from controlsvc.mqtt.publisher import MqttPublisher
from controlsvc.store import desired
from tests.integration.bridge_fixtures import bridge_settings
from tests.support.broker import mosquitto  # noqa: F401 (fixture)
from tests.support.mqtt import MqttTestClient

pytestmark = pytest.mark.mosquitto

PREFIX = "jaxmba/v1"


def _publisher(settings: Settings, broker: LocalBroker, user: str) -> MqttPublisher:
    base = bridge_settings(settings, broker)
    mqtt = base.mqtt.model_copy(
        update={
            "username": user,
            "password": SecretStr(broker.accounts[user]),
            "port": broker.port_for(user),  # only the service logs in on the service's listener
        }
    )
    return MqttPublisher(base.model_copy(update={"mqtt": mqtt}), publish_timeout=10)


def test_publish_many_pipelines_and_every_message_is_acknowledged(
    settings: Settings,
    mosquitto: LocalBroker,  # noqa: F811
) -> None:
    publisher = _publisher(settings, mosquitto, SERVICE_USER)
    assert isinstance(publisher, BatchPublisher)
    run = secrets.token_hex(3)
    messages = [(f"{PREFIX}/enc/enc-a/desired", f"{run}-{i}".encode()) for i in range(300)]
    try:
        errors = publisher.publish_many(messages, qos=1, retain=True)
        assert errors == [None] * 300
        with MqttTestClient.for_broker(mosquitto, OPERATOR_USER, client_id=f"ops-{run}") as ops:
            ops.subscribe(f"{PREFIX}/enc/enc-a/desired")
            assert ops.expect(f"{PREFIX}/enc/enc-a/desired").payload == f"{run}-299".encode()
        # An invalid topic fails alone; the others still go out.
        errors = publisher.publish_many(
            [(f"{PREFIX}/enc/+/desired", b"x"), (f"{PREFIX}/enc/enc-b/desired", b"")], retain=True
        )
        assert isinstance(errors[0], BrokerUnavailable)
        assert "wildcard" in errors[0].detail
        assert errors[1] is None
    finally:
        publisher.close()


def test_refusals_are_reported_per_message(
    settings: Settings,
    mosquitto: LocalBroker,  # noqa: F811
) -> None:
    publisher = _publisher(settings, mosquitto, OPERATOR_USER)  # may publish nothing
    try:
        errors = publisher.publish_many([(f"{PREFIX}/enc/enc-a/desired", b"{}")] * 5, retain=True)
        assert all(isinstance(e, PublishRefused) for e in errors)
        published = desired.publish_all(
            publisher,
            [
                desired.Outgoing(f"enc-{c}", 7, f"{PREFIX}/enc/enc-{c}/desired", b"{}")
                for c in "abc"
            ],
        )
        assert published == []  # nothing marked published: the bridge will retry
    finally:
        publisher.close()
