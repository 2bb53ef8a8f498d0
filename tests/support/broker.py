"""Real Mosquitto brokers for tests, started on free loopback ports with generated files.

Import the fixtures into a conftest with ``from tests.support.broker import *``:

``mosquitto`` (session)
    A started ``LocalBroker`` shared by the whole run: accounts ``jaxmba_service``,
    ``jaxmba_operator`` and ``enc-a`` ... ``enc-d`` (random passwords in ``.accounts``),
    ACL from ``render_acl`` for ``jaxmba/v1``, no persistence. Retained messages outlive a test:
    use ``broker_enclosure`` for an account of your own, or ``mosquitto_factory`` for a broker of
    your own.
``mosquitto_factory`` (function)
    ``mosquitto_factory(accounts=None, **config) -> LocalBroker``: a started broker of the
    test's own (persistence on, so ``restart()`` keeps retained messages; ``kill()`` for crashes),
    killed at teardown. ``config`` keywords go to ``BrokerConfig``; ``acl_file=...`` uses that
    ACL file instead of a generated one.
``broker_enclosure`` (function)
    A fresh enclosure account ``enc-<random>`` added to the session ``mosquitto`` (reloaded):
    ``BrokerAccount(username, password)``; removed at teardown.
``mqtt_client`` (function)
    ``mqtt_client(broker, user, password=None, **kwargs) -> MqttTestClient``, connected;
    every client is disconnected at teardown.

If the ``mosquitto`` binary is missing the fixtures skip with the reason (``scripts/setup``
installs the Debian packages ``mosquitto`` and ``mosquitto-clients``).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from controlsvc.broker import (
    OPERATOR_USER,
    SERVICE_USER,
    BrokerConfig,
    LocalBroker,
    MosquittoNotInstalled,
    generate_password,
    mosquitto_binary,
)
from tests.support.mqtt import MqttTestClient

__all__ = [  # what `from tests.support.broker import *` brings into a conftest: the fixtures
    "broker_enclosure",
    "mosquitto",
    "mosquitto_factory",
    "mqtt_client",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPED_ACL = REPO_ROOT / "deploy" / "mosquitto" / "acl"
SHIPPED_CONF = REPO_ROOT / "deploy" / "mosquitto" / "mosquitto.conf"
ENCLOSURES = ("enc-a", "enc-b", "enc-c", "enc-d")


@dataclass(frozen=True, slots=True)
class BrokerAccount:
    username: str
    password: str


def require_mosquitto() -> str:
    """The broker binary, or skip the test saying how to install it."""
    try:
        return mosquitto_binary()
    except MosquittoNotInstalled as exc:
        pytest.skip(str(exc))


def default_accounts(enclosures: tuple[str, ...] = ENCLOSURES) -> dict[str, str]:
    """Service, operator and enclosure accounts with fresh random passwords."""
    users = (SERVICE_USER, OPERATOR_USER, *enclosures)
    return {user: generate_password() for user in users}


def start_broker(
    directory: Path, accounts: Mapping[str, str] | None = None, **config: Any
) -> LocalBroker:
    """A started ``LocalBroker`` in ``directory`` (``config``: ``BrokerConfig`` keywords)."""
    require_mosquitto()
    broker = LocalBroker(
        directory,
        default_accounts() if accounts is None else accounts,
        config=BrokerConfig(**config),
    )
    broker.start()
    return broker


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """A broker shared by the session (see the module docstring)."""
    broker = start_broker(tmp_path_factory.mktemp("mosquitto"), persistence=False)
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def mosquitto_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., LocalBroker]]:
    """Start brokers of the test's own; all are killed at teardown."""
    started: list[LocalBroker] = []

    def factory(accounts: Mapping[str, str] | None = None, **config: Any) -> LocalBroker:
        config.setdefault("persistence", True)
        broker = start_broker(tmp_path_factory.mktemp("mosquitto"), accounts, **config)
        started.append(broker)
        return broker

    try:
        yield factory
    finally:
        for broker in started:
            if broker.running:
                broker.kill()  # thrown away: nothing to save, and a clean stop takes ~0.1 s
            broker.stop()  # one that had stopped or died: forgotten (idempotent)


@pytest.fixture
def broker_enclosure(mosquitto: LocalBroker) -> Iterator[BrokerAccount]:
    """A fresh enclosure account on the session broker, so no retained message of another test
    reaches it."""
    account = BrokerAccount(f"enc-{secrets.token_hex(4)}", generate_password())
    mosquitto.set_account(account.username, account.password)
    try:
        yield account
    finally:
        mosquitto.remove_account(account.username, reload=False)


@pytest.fixture
def mqtt_client() -> Iterator[Callable[..., MqttTestClient]]:
    """Connect test clients; all are disconnected at teardown."""
    clients: list[MqttTestClient] = []

    def connect(
        broker: LocalBroker, user: str | None, password: str | None = None, **kwargs: Any
    ) -> MqttTestClient:
        client = MqttTestClient.for_broker(broker, user, password, **kwargs)
        clients.append(client)
        return client

    try:
        yield connect
    finally:
        for client in clients:
            client.disconnect()
