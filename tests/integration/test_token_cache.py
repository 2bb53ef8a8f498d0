"""Cached token checks across two API processes (two apps on one database and one real broker):
a cached check spares the database, and every change of a user's tokens made in one process
ends the cached checks in the other at once (over ``{prefix}/service/auth``), far sooner than
the cache's lifetime (60 s here, longer than any wait below)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import paho.mqtt.client as paho
import pytest
from flask import Flask
from flask.testing import FlaskClient
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import event

from controlsvc.api import event_feed
from controlsvc.api.token_cache import EXTENSION_KEY, TokenCache
from controlsvc.broker import SERVICE_USER, LocalBroker
from controlsvc.config.settings import Settings
from controlsvc.mqtt.loop_stop import stop_loop
from controlsvc.mqtt.publisher import PUBLISHER_KEY
from controlsvc.ops.app import create_app
from controlsvc.store.db import Database
from schemas.topics import Topics
from tests.integration.bridge_fixtures import (  # noqa: F401 (fixtures)
    PREFIX,
    bridge_settings,
    broker,
    mosquitto_factory,
)
from tests.support.auth import Account, Auth
from tests.support.waiting import wait_for

pytestmark = pytest.mark.mosquitto

LIFETIME_S = 60.0


@pytest.fixture
def make_app(
    settings: Settings, database: Database, broker: LocalBroker
) -> Iterator[Callable[[], Flask]]:
    made: list[Flask] = []

    def make() -> Flask:
        app = create_app(
            bridge_settings(settings, broker, token_check_cache_s=LIFETIME_S), database=database
        )
        made.append(app)
        return app

    yield make
    for app in made:
        event_feed.close_feed(app)
        app.extensions[PUBLISHER_KEY].close()


def cache_of(app: Flask) -> TokenCache:
    cache: TokenCache = app.extensions[EXTENSION_KEY]
    return cache


def warm(client: FlaskClient, app: Flask, headers: dict[str, str]) -> None:
    """A first request starts the process's feed; once subscribed, the next check is kept."""
    assert client.get("/api/users/me", headers=headers).status_code == 200
    wait_for(lambda: cache_of(app).live, message="the token cache never went live")
    assert client.get("/api/users/me", headers=headers).status_code == 200
    assert len(cache_of(app)) == 1


class TokenQueries:
    """Counts the statements that check a token (they read the denylists)."""

    def __init__(self, database: Database) -> None:
        self.count = 0
        event.listen(database.engine, "before_cursor_execute", self._seen)

    def _seen(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "revoked_token" in statement:
            self.count += 1


@pytest.fixture
def two(make_app) -> tuple[Flask, Flask]:
    return make_app(), make_app()


@pytest.fixture
def people(two) -> tuple[Auth, Account, Account]:
    a, _ = two
    auth = Auth(a, a.test_client())
    return auth, auth.admin(), auth.create("op@example.com", role="operator")


def test_a_cached_check_spares_the_database(two, people, database):
    a, _ = two
    auth, _admin, operator = people
    client = a.test_client()
    headers = auth.headers(operator)
    warm(client, a, headers)
    queries = TokenQueries(database)
    for _ in range(3):
        assert client.get("/api/enclosures", headers=headers).status_code == 200
    assert queries.count == 0
    # The views that need the whole user still read it.
    me = client.get("/api/users/me", headers=headers).get_json()
    assert me["email"] == "op@example.com"


def test_a_logout_in_one_process_ends_the_token_in_the_other(two, people):
    a, b = two
    auth, _admin, operator = people
    client_a, client_b = a.test_client(), b.test_client()
    headers = auth.headers(operator)
    warm(client_a, a, headers)
    assert client_b.post("/api/auth/logout", headers=headers).status_code == 204
    wait_for(
        lambda: client_a.get("/api/enclosures", headers=headers).status_code == 401,
        timeout=10,
        message="process A kept serving a token logged out in process B",
    )


def test_disabling_and_demoting_in_one_process_count_at_once_in_the_other(two, people):
    a, b = two
    auth, admin, operator = people
    client_a, client_b = a.test_client(), b.test_client()
    admin_headers = auth.headers(admin)
    op_headers = auth.headers(operator)
    warm(client_a, a, op_headers)
    # An operator may send commands; demoted to viewer, process A says 403 at once.
    body = {"kind": "ping", "enclosure_ids": ["enc-a"]}
    assert client_a.post("/api/commands/bulk", json=body, headers=op_headers).status_code != 403
    response = client_b.patch(
        f"/api/users/{operator.id}", json={"role": "viewer"}, headers=admin_headers
    )
    assert response.status_code == 200, response.get_json()
    wait_for(
        lambda: (
            client_a.post("/api/commands/bulk", json=body, headers=op_headers).status_code == 403
        ),
        timeout=10,
        message="process A kept the operator's old role",
    )
    warm(client_a, a, op_headers)
    response = client_b.patch(
        f"/api/users/{operator.id}", json={"disabled": True}, headers=admin_headers
    )
    assert response.status_code == 200, response.get_json()
    wait_for(
        lambda: client_a.get("/api/enclosures", headers=op_headers).status_code == 401,
        timeout=10,
        message="process A kept serving a disabled user's token",
    )


def test_with_the_broker_away_every_request_checks_the_database(two, people, broker):
    a, b = two
    auth, _admin, operator = people
    client_a, client_b = a.test_client(), b.test_client()
    headers = auth.headers(operator)
    warm(client_a, a, headers)
    broker.stop()
    wait_for(lambda: not cache_of(a).live, message="the cache stayed live without a broker")
    assert len(cache_of(a)) == 0
    # B cannot tell A; A does not need telling.
    assert client_b.post("/api/auth/logout", headers=headers).status_code == 204
    assert client_a.get("/api/enclosures", headers=headers).status_code == 401


def test_a_bad_message_on_the_topic_empties_the_cache(two, people, broker):
    a, _ = two
    auth, _admin, operator = people
    client = a.test_client()
    warm(client, a, auth.headers(operator))
    sender = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    sender.username_pw_set(SERVICE_USER, broker.accounts[SERVICE_USER])
    sender.connect(broker.host, broker.service_port)
    sender.loop_start()
    try:
        topic = Topics(PREFIX).service_auth()
        sender.publish(topic, b'{"users": ["everyone"]}', qos=1).wait_for_publish(10)
        wait_for(lambda: len(cache_of(a)) == 0, message="a bad message left the cache as it was")
    finally:
        sender.disconnect()
        stop_loop(sender)
