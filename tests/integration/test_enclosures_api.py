"""The enclosure registry through the REST API (real database; real broker where it matters)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from flask import Flask

from controlsvc.bridge.inbound import Inbound
from controlsvc.bridge.stats import BridgeStats
from controlsvc.bridge.writer import Writer
from controlsvc.config.settings import Settings
from controlsvc.mqtt.publisher import PUBLISHER_KEY
from controlsvc.ops.app import create_app
from controlsvc.store.db import Database, utcnow
from controlsvc.store.enclosures import Liveness
from schemas.topics import Topics
from tests.integration.bridge_fixtures import (  # noqa: F401 (fixtures)
    PREFIX,
    agents,
    bridge_settings,
    broker,
    make_bridge,
    mosquitto_factory,
    state_payload,
    status_payload,
    wait_state,
)
from tests.support.auth import Auth
from tests.support.mqtt import ConnectRefused, MqttTestClient


@pytest.fixture
def settings(settings: Settings, broker) -> Settings:  # noqa: F811
    """Pointed at this test's broker; the service manages accounts in its password file."""
    config = bridge_settings(settings, broker)
    mqtt = config.mqtt.model_copy(
        update={
            "password_file": str(broker.config.password_file),
            "reload_pid_file": str(broker.config.pid_file),
        }
    )
    return config.model_copy(update={"mqtt": mqtt})


@pytest.fixture
def app(settings: Settings, database: Database) -> Iterator[Flask]:
    app = create_app(settings, database=database)
    yield app
    app.extensions[PUBLISHER_KEY].close()


@pytest.fixture
def admin(auth: Auth) -> dict[str, str]:
    return auth.headers(auth.admin())


@pytest.fixture
def operator(auth: Auth) -> dict[str, str]:
    return auth.headers(auth.create("op@example.com", role="operator"))


@pytest.fixture
def viewer(auth: Auth) -> dict[str, str]:
    return auth.headers(auth.create("viewer@example.com", role="viewer"))


def ingest(database: Database, *messages: tuple[str, str, bytes]) -> None:
    """Write messages the way the bridge does (no broker needed)."""
    writer = Writer(database, Topics(PREFIX), Liveness(), BridgeStats())
    batch = [Inbound(f"{PREFIX}/enc/{eid}/{ch}", p, 1, False, utcnow()) for eid, ch, p in messages]
    writer.write(writer.parse(batch))


def register(client, headers, eid, **body):
    return client.post("/api/enclosures", json={"id": eid, **body}, headers=headers)


def test_register_creates_a_working_broker_account_once(client, admin, broker, settings):
    response = register(client, admin, "enc-new", name="Rack 1", location="Room 12")
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["id"] == "enc-new"
    assert body["name"] == "Rack 1"
    assert body["state"] == "offline"
    assert body["lifecycle"] is None
    password = body["broker_password"]
    with MqttTestClient.for_broker(broker, "enc-new", password, client_id="enc-new") as enc:
        assert enc.publish(f"{PREFIX}/enc/enc-new/status", b"{}") < 0x80
    again = register(client, admin, "enc-new")
    assert again.status_code == 409
    assert again.get_json()["errors"][0]["field"] == "id"
    shown = client.get("/api/enclosures/enc-new", headers=admin).get_json()
    assert "broker_password" not in shown


def test_register_without_managed_accounts_is_a_clear_409(app, client, admin, settings):
    app.extensions["jaxmba.settings"] = settings.model_copy(
        update={"mqtt": settings.mqtt.model_copy(update={"password_file": ""})}
    )
    response = register(client, admin, "enc-x")
    assert response.status_code == 409
    assert "password_file" in response.get_json()["detail"]
    assert client.get("/api/enclosures/enc-x", headers=admin).status_code == 404


def test_register_needs_admin_and_a_valid_id(client, operator, admin):
    assert register(client, operator, "enc-y").status_code == 403
    bad = register(client, admin, "Bad_Id")
    assert bad.status_code == 422
    assert bad.get_json()["errors"][0]["field"] == "id"
    assert "Bad_Id" in bad.get_json()["errors"][0]["message"]
    extra = register(client, admin, "enc-z", color="red")
    assert extra.status_code == 422
    assert extra.get_json()["errors"][0]["field"] == "color"


def test_an_id_that_names_another_resource_is_refused(client, admin):
    """GET /api/enclosures/summary is the fleet summary: an enclosure named so could never be
    read back."""
    refused = register(client, admin, "summary")
    assert refused.status_code == 422
    error = refused.get_json()["errors"][0]
    assert error["field"] == "id"
    assert "reserved" in error["message"]
    assert register(client, admin, "summary-1").status_code == 201


def test_list_filter_search_and_pages(client, viewer, database):
    ingest(
        database,
        *[(f"enc-{i:02d}", "state", state_payload("ready", f"b{i}")) for i in range(7)],
        ("enc-03", "status", status_payload("b3", 0, recording="s-1")),
        ("enc-05", "state", state_payload("disconnected", "b5")),
    )
    page = client.get("/api/enclosures?limit=3", headers=viewer).get_json()
    ids = [e["id"] for e in page["items"]]
    cursor = page["next_cursor"]
    while cursor:
        page = client.get(f"/api/enclosures?limit=3&cursor={cursor}", headers=viewer).get_json()
        ids += [e["id"] for e in page["items"]]
        cursor = page["next_cursor"]
    assert ids == [f"enc-{i:02d}" for i in range(7)]

    recording = client.get("/api/enclosures?state=recording", headers=viewer).get_json()
    assert [e["id"] for e in recording["items"]] == ["enc-03"]
    assert recording["items"][0]["status"]["recording"]["session_id"] == "s-1"
    offline = client.get("/api/enclosures?state=offline", headers=viewer).get_json()
    assert [e["id"] for e in offline["items"]] == ["enc-05"]
    found = client.get("/api/enclosures?q=C-0", headers=viewer).get_json()  # case-insensitive
    assert len(found["items"]) == 7
    assert client.get("/api/enclosures?state=flying", headers=viewer).status_code == 422
    assert client.get("/api/enclosures?limit=0", headers=viewer).status_code == 422
    assert client.get("/api/enclosures").status_code == 401


def test_get_patch_and_errors(client, viewer, operator, database):
    ingest(database, ("enc-a", "state", state_payload("ready", "b1")))
    got = client.get("/api/enclosures/enc-a", headers=viewer)
    assert got.status_code == 200
    assert got.get_json()["state"] == "idle"

    missing = client.get("/api/enclosures/enc-zz", headers=viewer)
    assert missing.status_code == 404
    assert "enc-zz" in missing.get_json()["detail"]
    invalid = client.get("/api/enclosures/ENC%2BA", headers=viewer)
    assert invalid.status_code == 422
    assert invalid.get_json()["errors"][0]["field"] == "eid"
    assert "ENC+A" in invalid.get_json()["errors"][0]["message"]

    assert (
        client.patch("/api/enclosures/enc-a", json={"name": "x"}, headers=viewer).status_code == 403
    )
    patched = client.patch(
        "/api/enclosures/enc-a",
        json={"name": "Rack 7", "location": "Room 3", "notes": "new camera"},
        headers=operator,
    )
    assert patched.status_code == 200, patched.get_json()
    assert patched.get_json()["name"] == "Rack 7"
    cleared = client.patch("/api/enclosures/enc-a", json={"location": None}, headers=operator)
    assert cleared.get_json()["location"] is None
    assert cleared.get_json()["name"] == "Rack 7"  # untouched
    no_name = client.patch("/api/enclosures/enc-a", json={"name": None}, headers=operator)
    assert no_name.status_code == 422
    too_long = client.patch("/api/enclosures/enc-a", json={"name": "x" * 201}, headers=operator)
    assert too_long.status_code == 422
    assert too_long.get_json()["errors"][0]["field"] == "name"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ('{"notes": "first line\\u0000hidden"}', "notes"),
        ('{"name": "Rack\\u0000 7"}', "name"),
        ('{"location": "Room 3", "extra\\u0000": 1}', "extra\u0000"),
        ('{"notes": 1e400}', "notes"),
    ],
)
def test_nul_characters_and_infinite_numbers_are_refused_naming_the_field(
    client, operator, database, data, field
):
    ingest(database, ("enc-a", "state", state_payload("ready", "b1")))
    response = client.patch(
        "/api/enclosures/enc-a", data=data, content_type="application/json", headers=operator
    )
    assert response.status_code == 422, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    assert [e["field"] for e in response.get_json()["errors"]] == [field]
    unchanged = client.get("/api/enclosures/enc-a", headers=operator).get_json()
    assert (unchanged["name"], unchanged["location"], unchanged["notes"]) == ("enc-a", None, None)


def test_retire_clears_retained_topics_and_the_account(
    client, admin, operator, broker, settings, database, make_bridge, agents
):
    make_bridge(settings)
    password = register(client, admin, "enc-r").get_json()["broker_password"]
    broker.set_account("enc-r", password, reload=False)  # so the fake agent can log in
    agent = agents("enc-r")
    agent.online()
    wait_state(database, "enc-r", "idle")
    agent.disconnect()
    wait_state(database, "enc-r", "offline")

    assert client.delete("/api/enclosures/enc-r", headers=operator).status_code == 403
    response = client.delete("/api/enclosures/enc-r", headers=admin)
    assert response.status_code == 204
    assert client.delete("/api/enclosures/enc-r", headers=admin).status_code == 404

    listed = client.get("/api/enclosures", headers=admin).get_json()["items"]
    assert "enc-r" not in [e["id"] for e in listed]
    everything = client.get("/api/enclosures?include_retired=true", headers=admin).get_json()
    retired = next(e for e in everything["items"] if e["id"] == "enc-r")
    assert retired["retired"] is True
    # Nothing retained any more for it.
    with MqttTestClient.for_broker(broker, "jaxmba_operator") as watcher:
        watcher.subscribe(f"{PREFIX}/enc/enc-r/#")
        watcher.subscribe(f"{PREFIX}/service/state")  # retained: a marker that arrives
        watcher.expect(f"{PREFIX}/service/state")
        watcher.assert_none_queued(f"{PREFIX}/enc/enc-r/#")
    with pytest.raises(ConnectRefused):
        MqttTestClient.for_broker(broker, "enc-r", password, client_id="enc-r")
    # Registering it again brings it back with a new password.
    again = register(client, admin, "enc-r")
    assert again.status_code == 201
    assert again.get_json()["retired"] is False


def test_retire_with_the_broker_down_changes_nothing(client, admin, database, broker):
    ingest(database, ("enc-a", "state", state_payload("ready", "b1")))
    broker.stop()
    response = client.delete("/api/enclosures/enc-a", headers=admin)
    assert response.status_code == 503
    assert client.get("/api/enclosures/enc-a", headers=admin).get_json()["retired"] is False


def test_status_history_pages_and_window(client, viewer, database):
    start = utcnow() - timedelta(minutes=10)
    ingest(
        database,
        ("enc-a", "state", state_payload("ready", "b1")),
        *[
            ("enc-a", "status", status_payload("b1", i, at=start + timedelta(seconds=i)))
            for i in range(25)
        ],
    )
    url = "/api/enclosures/enc-a/status-history"
    page = client.get(f"{url}?limit=10", headers=viewer).get_json()
    seqs = [item["seq"] for item in page["items"]]
    while page["next_cursor"]:
        page = client.get(f"{url}?limit=10&cursor={page['next_cursor']}", headers=viewer).get_json()
        seqs += [item["seq"] for item in page["items"]]
    assert seqs == list(range(24, -1, -1))  # newest first, each once

    since = (start + timedelta(seconds=5)).isoformat()
    until = (start + timedelta(seconds=8)).isoformat()
    window = client.get(url, query_string={"since": since, "until": until}, headers=viewer)
    assert [i["seq"] for i in window.get_json()["items"]] == [7, 6, 5]
    item = window.get_json()["items"][0]
    assert item["status"]["camera"]["source"] == "testpattern"
    assert item["boot_id"] == "b1"

    backwards = client.get(url, query_string={"since": until, "until": since}, headers=viewer)
    assert backwards.status_code == 422
    assert client.get(f"{url}?cursor=!!", headers=viewer).status_code == 422
    assert client.get("/api/enclosures/enc-zz/status-history", headers=viewer).status_code == 404


def test_transitions_are_listed_with_reasons(client, viewer, database):
    ingest(database, ("enc-a", "state", state_payload("ready", "b1")))
    ingest(database, ("enc-a", "status", status_payload("b1", 0, error="lens cap on")))
    ingest(database, ("enc-a", "state", state_payload("disconnected", "b1")))
    items = client.get("/api/enclosures/enc-a/transitions", headers=viewer).get_json()["items"]
    assert [(t["from_state"], t["to_state"]) for t in items] == [
        ("error", "offline"),
        ("idle", "error"),
        ("offline", "idle"),
    ]
    assert items[1]["reason"] == "lens cap on"


def test_health_reports_the_publisher_connection(client, broker):
    body = client.get("/api/health").get_json()
    assert body["broker"]["ok"] is True, body
    broker.stop()
    down = client.get("/api/health").get_json()
    assert down["broker"]["ok"] is False
    assert down["broker"]["detail"]
