"""No account can take over another one's client id, on any listener of any shipped config.

A takeover (connecting with a client id already in use) makes the broker disconnect the client
that had it: an enclosure with its own account and client id ``enc-b`` would knock ``enc-b``
off, and ``enc-b``'s commands would time out. Each config is started for real:

* ``deploy/mosquitto/mosquitto.conf`` (production: 1883 service, 1884 operators, 8883 TLS),
* the config ``render_config`` generates (tests, ``LocalBroker``),
* the embedded broker of ``run`` and of the demo (``EmbeddedBroker``).

On every listener an enclosure or operator can log in to, the client id is the user name; the
service's listener admits the service account alone, whose client ids no enclosure id can equal.
"""
# ruff: noqa: F811 (pytest fixtures imported by name are test arguments)

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controlsvc.broker import (
    OPERATOR_USER,
    SERVICE_USER,
    BrokerConfig,
    LocalBroker,
    add_or_update_account,
)
from controlsvc.config.settings import Settings
from controlsvc.ops.embedded import EmbeddedBroker
from tests.integration.test_broker_deploy import HOST, Deployed, deployed  # noqa: F401
from tests.support.broker import default_accounts, require_mosquitto
from tests.support.mqtt import ACCEPTED, NOT_AUTHORIZED, ConnectRefused, MqttTestClient

pytestmark = pytest.mark.mosquitto

VICTIM, INTRUDER = "enc-b", "enc-a"


def connect(port: int, user: str, password: str, client_id: str, **kw: Any) -> MqttTestClient:
    client = MqttTestClient(HOST, port, client_id=client_id, **kw)
    client.connect(user, password)
    return client


def assert_no_takeover(port: int, accounts: dict[str, str], **kw: Any) -> None:
    """``enc-a`` asks for ``enc-b``'s client id on ``port``; ``enc-b`` stays connected."""
    victim = connect(port, VICTIM, accounts[VICTIM], VICTIM, **kw)
    intruder = connect(port, INTRUDER, accounts[INTRUDER], VICTIM, **kw)
    operator = connect(port, OPERATOR_USER, accounts[OPERATOR_USER], VICTIM, **kw)
    try:
        # Had the broker handed enc-b's id over, it would have closed enc-b's connection before
        # answering the intruder's CONNECT: this PUBACK could not come.
        topic = f"jaxmba/v1/enc/{VICTIM}/status"
        assert victim.publish(topic, b"still connected") in ACCEPTED
        assert victim.connected
        assert victim.disconnects == []
        assert intruder.connected
        assert operator.connected
    finally:
        for client in (operator, intruder, victim):
            client.disconnect()


def assert_service_listener_is_the_services_alone(port: int, accounts: dict[str, str]) -> None:
    """Only the service logs in; its connections keep their own (free) client ids."""
    for user in (VICTIM, OPERATOR_USER):
        with pytest.raises(ConnectRefused) as refused:
            connect(port, user, accounts[user], f"{user}-on-the-service-listener")
        assert refused.value.reason_code == NOT_AUTHORIZED
    bridge = connect(port, SERVICE_USER, accounts[SERVICE_USER], "jaxmba_service-bridge")
    api = connect(port, SERVICE_USER, accounts[SERVICE_USER], "jaxmba_service-api-1-ab")
    try:
        assert bridge.publish("jaxmba/v1/service/state", b"{}") in ACCEPTED
        assert api.publish("jaxmba/v1/service/state", b"{}") in ACCEPTED
        assert bridge.connected
    finally:
        api.disconnect()
        bridge.disconnect()


def assert_an_enclosure_cannot_take_a_service_id(
    service_port: int, enclosure_port: int, accounts: dict[str, str], **kw: Any
) -> None:
    bridge = connect(service_port, SERVICE_USER, accounts[SERVICE_USER], "jaxmba_service-bridge")
    intruder = connect(enclosure_port, INTRUDER, accounts[INTRUDER], "jaxmba_service-bridge", **kw)
    try:
        assert bridge.publish("jaxmba/v1/service/state", b"{}") in ACCEPTED
        assert bridge.disconnects == []
    finally:
        intruder.disconnect()
        bridge.disconnect()


# -- production -----------------------------------------------------------------------------------
def test_production_config(deployed: Deployed) -> None:
    accounts = deployed.accounts
    assert_service_listener_is_the_services_alone(deployed.local_port, accounts)
    assert_no_takeover(deployed.operator_port, accounts)
    assert_no_takeover(deployed.tls_port, accounts, tls_ca=deployed.ca)
    assert_an_enclosure_cannot_take_a_service_id(
        deployed.local_port, deployed.tls_port, accounts, tls_ca=deployed.ca
    )


# -- generated (tests, LocalBroker) ---------------------------------------------------------------
@pytest.fixture
def generated(tmp_path: Path) -> Iterator[LocalBroker]:
    require_mosquitto()
    broker = LocalBroker(
        tmp_path / "broker",
        default_accounts(),
        config=BrokerConfig(enclosure_port=0, persistence=False),
    )
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def test_generated_config(generated: LocalBroker) -> None:
    accounts = generated.accounts
    assert generated.enclosure_port is not None
    assert_service_listener_is_the_services_alone(generated.service_port, accounts)
    assert_no_takeover(generated.port, accounts)
    assert_no_takeover(generated.enclosure_port, accounts)
    assert_an_enclosure_cannot_take_a_service_id(generated.service_port, generated.port, accounts)


# -- embedded (run, demo) -------------------------------------------------------------------------
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_embedded_config_of_run_and_the_demo(settings: Settings, tmp_path: Path) -> None:
    require_mosquitto()
    directory = tmp_path / "embedded"
    mqtt = settings.mqtt.model_copy(
        update={"embedded": True, "embedded_dir": str(directory), "port": 0}
    )
    embedded = EmbeddedBroker(settings.model_copy(update={"mqtt": mqtt}), directory)
    accounts = dict(embedded.credentials())
    for eid in (VICTIM, INTRUDER):  # as the demo and the API register enclosures
        accounts[eid] = f"password of {eid}"
        add_or_update_account(embedded.password_file, eid, accounts[eid])
    with embedded.running() as effective:
        assert effective.mqtt.port != embedded.agent_port
        assert_service_listener_is_the_services_alone(effective.mqtt.port, accounts)
        assert_no_takeover(embedded.agent_port, accounts)
        assert_an_enclosure_cannot_take_a_service_id(
            effective.mqtt.port, embedded.agent_port, accounts
        )
