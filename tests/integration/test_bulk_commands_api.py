"""``POST /api/commands/bulk`` through the real broker, the bridge and fake agents (SQLite and
PostgreSQL): a command per enclosure, each settled from its agent's ack and announced on the
event log like a single command; problems per enclosure; roles and bad input."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from flask import Flask
from sqlalchemy import select

from controlsvc.config.settings import Settings
from controlsvc.mqtt.publisher import PUBLISHER_KEY
from controlsvc.ops.app import create_app
from controlsvc.store.db import Database, utcnow
from controlsvc.store.models.enclosures import Enclosure
from controlsvc.store.models.events import EventRecord
from schemas.rest.bulk import MAX_BULK_ENCLOSURES
from tests.integration.bridge_fixtures import (  # noqa: F401 (fixtures)
    agents,
    bridge_settings,
    broker,
    command_row,
    make_bridge,
    mosquitto_factory,
    wait_state,
)
from tests.support.auth import Auth
from tests.support.waiting import wait_for

pytestmark = pytest.mark.mosquitto

EIDS = ("enc-a", "enc-b", "enc-c")


@pytest.fixture
def settings(settings: Settings, broker) -> Settings:  # noqa: F811
    return bridge_settings(settings, broker)


@pytest.fixture
def app(settings: Settings, database: Database) -> Iterator[Flask]:
    app = create_app(settings, database=database)
    yield app
    app.extensions[PUBLISHER_KEY].close()
    from controlsvc.api import event_feed

    event_feed.close_feed(app)


@pytest.fixture
def operator(auth: Auth) -> dict[str, str]:
    return auth.headers(auth.create("op@example.com", role="operator"))


@pytest.fixture
def viewer(auth: Auth) -> dict[str, str]:
    return auth.headers(auth.create("viewer@example.com", role="viewer"))


@pytest.fixture
def fleet(settings, database, make_bridge, agents):  # noqa: F811
    """A bridge and three enclosures online; enc-c's agent fails every command."""
    make_bridge(settings)
    made = {eid: agents(eid) for eid in EIDS}
    made["enc-c"].policy = lambda cmd: [("failed", "camera gone", None)]
    for eid, agent in made.items():
        agent.online()
        wait_state(database, eid, "idle")
    return made


def bulk(client, headers, **body):
    body.setdefault("kind", "ping")
    return client.post("/api/commands/bulk", json=body, headers=headers)


def test_a_command_per_enclosure_each_settled_from_its_ack(client, operator, database, fleet):
    response = bulk(client, operator, enclosure_ids=["enc-b", "enc-a", "enc-c"], timeout_s=20)
    assert response.status_code == 202, response.get_json()
    items = response.get_json()["items"]
    assert [i["enclosure_id"] for i in items] == ["enc-b", "enc-a", "enc-c"]  # order asked
    for item in items:
        assert item["problem"] is None
        assert item["command"]["kind"] == "ping"
        assert item["command"]["enclosure_id"] == item["enclosure_id"]
        assert item["command"]["state"] in ("sent", "accepted", "succeeded", "failed")
    ids = {i["enclosure_id"]: uuid.UUID(i["command"]["id"]) for i in items}
    final = {"enc-a": "succeeded", "enc-b": "succeeded", "enc-c": "failed"}
    wait_for(
        lambda: all(command_row(database, ids[e]).state == s for e, s in final.items()),
        timeout=15,
        message="the bulk commands never settled",
    )
    assert command_row(database, ids["enc-c"]).detail == "camera gone"
    for eid in EIDS:
        assert len(fleet[eid].wait_commands(1)) == 1  # each agent got its own, once
    # Each settlement is on the event log (what the fleet view follows), ending in its state.
    with database.sessionmaker() as session:
        for eid, command_id in ids.items():
            states = [
                e.data["state"]
                for e in session.scalars(
                    select(EventRecord)
                    .where(EventRecord.command_id == command_id)
                    .where(EventRecord.kind == "command.updated")
                    .order_by(EventRecord.id)
                )
            ]
            assert states, eid
            assert states[-1] == final[eid], (eid, states)


def test_unknown_and_retired_enclosures_get_a_problem_the_others_go(
    client, operator, database, fleet
):
    with database.session() as session:
        session.get(Enclosure, "enc-b").retired_at = utcnow()
    response = bulk(client, operator, enclosure_ids=["enc-a", "enc-zz", "enc-b"])
    assert response.status_code == 202, response.get_json()
    items = {i["enclosure_id"]: i for i in response.get_json()["items"]}
    assert items["enc-a"]["command"] is not None
    assert items["enc-zz"]["command"] is None
    assert items["enc-zz"]["problem"]["status"] == 404
    assert "enc-zz" in items["enc-zz"]["problem"]["detail"]
    assert items["enc-b"]["command"] is None
    assert items["enc-b"]["problem"]["status"] == 409
    command_id = items["enc-a"]["command"]["id"]
    wait_for(lambda: command_row(database, uuid.UUID(command_id)).state == "succeeded", 15)


def test_roles_and_bad_input(client, operator, viewer, fleet):
    assert bulk(client, viewer, enclosure_ids=["enc-a"]).status_code == 403
    assert bulk(client, {}, enclosure_ids=["enc-a"]).status_code == 401

    def field_of(**body):
        response = bulk(client, operator, **body)
        assert response.status_code == 422, response.get_json()
        assert response.mimetype == "application/problem+json"
        return response.get_json()["errors"][0]["field"]

    assert field_of(enclosure_ids=[]) == "enclosure_ids"
    assert field_of(enclosure_ids=["Enc_A"]) == "enclosure_ids.0"
    assert field_of(enclosure_ids=["enc-a", "enc-a"]) == "enclosure_ids"
    too_many = [f"enc-{i}" for i in range(MAX_BULK_ENCLOSURES + 1)]
    assert field_of(enclosure_ids=too_many) == "enclosure_ids"
    assert field_of(kind="start_recording", enclosure_ids=["enc-a"]) == "kind"
    assert field_of(enclosure_ids=["enc-a"], timeout_s=0) == "timeout_s"
    assert field_of(enclosure_ids=["enc-a"], params={}) == "params"


def test_documented_in_openapi(client):
    spec = client.get("/swagger.json").get_json()
    operation = spec["paths"]["/api/commands/bulk"]["post"]
    assert {"202", "401", "403", "422"} <= set(operation["responses"])
    assert operation["security"]
