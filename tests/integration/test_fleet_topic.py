"""The fleet on the wire: the bridge publishes, retained, every enclosure's derived state on
``{prefix}/service/fleet/{eid}`` (registered enclosures that never connected too), so a fresh
``mosquitto_sub`` as the operator account shows what the UI shows. Real broker, real bridge,
fake agents, the real ``mosquitto_sub``; both backends."""

# ruff: noqa: F811 (pytest fixtures are imported by name, then requested as parameters)

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

import pytest
from flask import Flask

from controlsvc.broker import OPERATOR_USER, SERVICE_USER
from controlsvc.config.settings import Settings
from controlsvc.store.models.enclosures import Enclosure
from schemas import FleetState, parse_message
from tests.integration.bridge_fixtures import (  # noqa: F401 (fixtures)
    PREFIX,
    agents,
    bridge_settings,
    broker,
    broker_app,
    make_bridge,
    mosquitto_factory,
    operator,
    wait_state,
)
from tests.support.broker import mqtt_client  # noqa: F401 (fixture)
from tests.support.waiting import wait_for

pytestmark = pytest.mark.mosquitto

FLEET = f"{PREFIX}/service/fleet"


@pytest.fixture
def settings(settings: Settings, broker) -> Settings:
    return bridge_settings(settings, broker)


@pytest.fixture
def app(broker_app: Flask) -> Flask:
    return broker_app


def mosquitto_sub(broker, *topics: str, count: int) -> list[tuple[str, dict[str, Any]]]:
    """What a person at a terminal sees: ``mosquitto_sub -v`` as the operator, retained
    messages included; ``count`` messages, then it exits."""
    binary = shutil.which("mosquitto_sub")
    if binary is None:
        pytest.skip("mosquitto_sub is not installed (Debian: mosquitto-clients)")
    args = [binary, "-h", broker.host, "-p", str(broker.port), "-u", OPERATOR_USER]
    args += ["-P", broker.accounts[OPERATOR_USER], "-v", "-C", str(count), "-W", "20"]
    for topic in topics:
        args += ["-t", topic]
    done = subprocess.run(args, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    out = []
    for line in done.stdout.splitlines():
        topic, _, payload = line.partition(" ")
        out.append((topic, json.loads(payload)))
    return out


def latest(watcher, eid: str) -> FleetState:
    return parse_message(FleetState, watcher.received(f"{FLEET}/{eid}")[-1].payload)


@pytest.mark.slow  # waits for the fleet timer's rounds
def test_a_fresh_subscriber_sees_the_whole_fleet(
    client, operator, settings, make_bridge, agents, database, broker, mqtt_client
):
    with database.session() as s:  # registered by an administrator, never connected
        s.add(Enclosure(id="enc-never", name="Rack 9", registered=True, state="offline"))
    make_bridge(settings)
    a = agents("enc-a", interval=1.0)
    a.online()
    wait_state(database, "enc-a", "idle")
    # The test watches as the service (its own listener): mosquitto_sub below logs in as the
    # operator, whose client id is its user name, and would take over an operator watcher.
    watcher = mqtt_client(broker, SERVICE_USER)
    watcher.subscribe(f"{FLEET}/+")
    wait_for(lambda: watcher.received(f"{FLEET}/enc-never"), message="enc-never not published")
    wait_for(
        lambda: watcher.received(f"{FLEET}/enc-a") and latest(watcher, "enc-a").state == "idle",
        message="enc-a idle not published",
    )
    never = latest(watcher, "enc-never")
    assert (never.state, never.name, never.session_id) == ("offline", "Rack 9", None)
    assert never.reason == "never seen"
    assert never.last_seen_at is None

    # What mosquitto_sub shows at once on the whole tree: every enclosure, retained.
    seen = dict(mosquitto_sub(broker, f"{FLEET}/+", count=2))
    assert seen[f"{FLEET}/enc-never"]["state"] == "offline"
    assert seen[f"{FLEET}/enc-a"]["state"] == "idle"

    # A session on enc-a: its state names the session.
    response = client.post(
        "/api/sessions",
        json={
            "name": "wire",
            "duration_s": 600,
            "enclosures": [{"id": "enc-a", "file_prefix": "w"}],
        },
        headers=operator,
    )
    assert response.status_code == 201, response.get_json()
    sid = response.get_json()["id"]
    wait_for(lambda: latest(watcher, "enc-a").session_id == sid, message="no session on the wire")

    # Lost: at once on the wire, with since.
    a.drop()
    lost = wait_state(database, "enc-a", "lost")
    wait_for(lambda: latest(watcher, "enc-a").state == "lost", message="lost not published")
    state = latest(watcher, "enc-a")
    assert state.since == lost.state_changed_at
    assert state.session_id == sid
    assert state.reason


def test_retiring_clears_the_retained_state(
    client, auth, settings, make_bridge, agents, database, broker, mqtt_client
):
    admin = auth.headers(auth.create("admin@example.com", role="admin"))
    with database.session() as s:
        s.add(Enclosure(id="enc-gone", name="enc-gone", registered=True, state="offline"))
    make_bridge(settings)
    a = agents("enc-a", interval=1.0)
    a.online()
    wait_state(database, "enc-a", "idle")
    first = mosquitto_sub(broker, f"{FLEET}/enc-gone", count=1)
    assert first[0][1]["enclosure_id"] == "enc-gone"
    assert client.delete("/api/enclosures/enc-gone", headers=admin).status_code == 204
    # Subscribed to the retired one first, then to enc-a: once enc-a's retained message is
    # delivered, enc-gone's would have been delivered before it.
    watcher = mqtt_client(broker, OPERATOR_USER)
    watcher.subscribe(f"{FLEET}/enc-gone")
    watcher.subscribe(f"{FLEET}/enc-a")
    watcher.expect(f"{FLEET}/enc-a")
    assert [m for m in watcher.received(f"{FLEET}/enc-gone") if m.payload] == []
