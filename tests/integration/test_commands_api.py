"""Commands through the REST API, the real broker, the bridge and a fake agent."""

from __future__ import annotations

import json
import statistics
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from flask import Flask
from sqlalchemy import select

from controlsvc.config.settings import Settings
from controlsvc.mqtt.publisher import PUBLISHER_KEY
from controlsvc.ops.app import create_app
from controlsvc.store import commands as command_domain
from controlsvc.store.db import Database
from controlsvc.store.models.events import EventRecord
from schemas.enums import CommandKind
from tests.integration.bridge_fixtures import (  # noqa: F401 (fixtures)
    PREFIX,
    ack_payload,
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


@pytest.fixture
def settings(settings: Settings, broker) -> Settings:  # noqa: F811
    """The conftest settings, pointed at this test's broker."""
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
def online(settings, database, make_bridge, agents):
    """A bridge and enclosure enc-a online (its agent answers per ``agent.policy``)."""
    make_bridge(settings)
    agent = agents("enc-a")
    agent.online()
    wait_state(database, "enc-a", "idle")
    return agent


def send(client, headers, eid="enc-a", **body):
    body.setdefault("kind", "ping")
    return client.post(f"/api/enclosures/{eid}/commands", json=body, headers=headers)


def settle(client, headers, command_id, wait=10):
    response = client.get(f"/api/commands/{command_id}?wait={wait}", headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


@pytest.mark.parametrize(
    ("answers", "final", "detail"),
    [
        ([("succeeded", None, {"pong": True})], "succeeded", None),
        ([("failed", "camera gone", None)], "failed", "camera gone"),
        ([("rejected", "already recording s-1", None)], "rejected", "already recording s-1"),
        ([("expired", "received after expires_at", None)], "expired", "received after expires_at"),
        ([("accepted", None, None), ("succeeded", "done", {"n": 1})], "succeeded", "done"),
        ([("accepted", None, None), ("failed", "disk full", None)], "failed", "disk full"),
    ],
)
def test_round_trip_to_every_answered_terminal_state(
    client, operator, viewer, online, database, answers, final, detail
):
    online.policy = lambda cmd: answers
    response = send(client, operator, kind="ping", timeout_s=20)
    assert response.status_code == 202, response.get_json()
    record = response.get_json()
    assert record["state"] in ("sent", "accepted", final)  # the ack may beat the answer
    assert record["enclosure_state"] == "idle"
    assert record["enclosure_id"] == "enc-a"
    settled = settle(client, viewer, record["id"])
    assert settled["state"] == final
    assert settled["detail"] == detail
    # The waiting GET may answer from the live event: the same record as a plain read.
    plain = client.get(f"/api/commands/{record['id']}", headers=viewer)
    assert plain.get_json() == settled
    assert settled["settled_at"] is not None
    assert settled["sent_at"] is not None
    if final == "succeeded" and answers[-1][2] is not None:
        assert settled["result"] == answers[-1][2]
    # The log tells the story in order, ending with the outcome; "sent" only if it came first.
    with database.sessionmaker() as session:
        states = [
            e.data["state"]
            for e in session.scalars(
                select(EventRecord)
                .where(EventRecord.command_id == uuid.UUID(record["id"]))
                .order_by(EventRecord.id)
            )
        ]
    assert states[-1] == final
    assert states in (["sent", *[a[0] for a in answers]], [a[0] for a in answers])
    # What the agent got: MQTT 5 properties and the same fields in the JSON.
    cmd = online.wait_commands(1)[0]
    props = online.command_props[0]
    assert cmd["id"] == record["id"]
    assert props.ResponseTopic == f"{PREFIX}/enc/enc-a/ack" == cmd["response_topic"]
    assert props.CorrelationData == record["id"].encode() == cmd["correlation_data"].encode()
    assert 18 <= props.MessageExpiryInterval <= 20


def test_an_answer_that_beats_the_mark_of_sent_is_what_the_post_returns(
    app, client, operator, online, database, monkeypatch
):
    """The agent's answer is stored before the API marks the command sent: the POST answers
    the outcome, not "sent", and the log holds no "sent" after it."""
    publisher = app.extensions[PUBLISHER_KEY]
    publish = publisher.publish

    def publish_then_wait_for_the_answer(topic, payload, **options):
        publish(topic, payload, **options)
        if topic.endswith("/cmd"):
            command_id = uuid.UUID(json.loads(payload)["id"])
            wait_for(lambda: command_row(database, command_id).state == "succeeded")

    monkeypatch.setattr(publisher, "publish", publish_then_wait_for_the_answer)
    response = send(client, operator)
    assert response.status_code == 202
    record = response.get_json()
    assert record["state"] == "succeeded"
    assert record["result"]["pong"] is True
    with database.sessionmaker() as session:
        states = [
            e.data["state"]
            for e in session.scalars(
                select(EventRecord).where(EventRecord.command_id == uuid.UUID(record["id"]))
            )
        ]
    assert states == ["succeeded"]


def test_post_with_wait_answers_the_outcome(client, operator, online, database):
    """One request that sends and waits: the answer comes after the command was marked sent,
    so only the wait can give the POST its outcome."""
    online.policy = lambda cmd: []  # answered below, once the API has marked it sent
    helper_error: list[BaseException] = []

    def answer_once_sent() -> None:
        try:
            command = online.wait_commands(1)[0]
            wait_for(lambda: command_row(database, command["id"]).state == "sent")
            online.publish(f"{PREFIX}/enc/enc-a/ack", ack_payload(command["id"], "succeeded"))
        except BaseException as exc:  # reported by the test thread
            helper_error.append(exc)

    helper = threading.Thread(target=answer_once_sent, daemon=True)
    helper.start()
    response = client.post(
        "/api/enclosures/enc-a/commands?wait=20", json={"kind": "ping"}, headers=operator
    )
    helper.join(20)
    assert not helper_error
    assert response.status_code == 202, response.get_json()
    assert response.get_json()["state"] == "succeeded"
    assert response.get_json()["sent_at"] is not None


def test_post_with_wait_on_the_live_feed_reads_nothing_back(
    app, client, operator, online, database
):
    """With the event feed connected the POST watches before publishing: the outcome comes
    from the feed's event, and the command is not read again."""
    from sqlalchemy import event

    from controlsvc.api import event_feed

    with app.app_context():
        feed = event_feed.get_feed(app)
    wait_for(lambda: feed.broker_connected, message="the event feed never connected")
    online.policy = lambda cmd: []
    reads: list[str] = []

    def answer_once_sent() -> None:
        command = online.wait_commands(1)[0]
        wait_for(lambda: command_row(database, command["id"]).state == "sent")
        online.publish(f"{PREFIX}/enc/enc-a/ack", ack_payload(command["id"], "succeeded"))

    request_thread = threading.current_thread()  # the test client serves in this thread

    def seen(_conn, _cursor, statement: str, *_args) -> None:
        if threading.current_thread() is not request_thread:
            return  # the helper's own reads
        if statement.lstrip().upper().startswith("SELECT") and "FROM commands" in statement:
            reads.append(statement)

    helper = threading.Thread(target=answer_once_sent, daemon=True)
    helper.start()
    event.listen(database.engine, "before_cursor_execute", seen)
    try:
        response = client.post(
            "/api/enclosures/enc-a/commands?wait=20", json={"kind": "ping"}, headers=operator
        )
    finally:
        event.remove(database.engine, "before_cursor_execute", seen)
    helper.join(20)
    assert response.get_json()["state"] == "succeeded"
    assert reads == []


def test_post_wait_is_bounded_and_validated(client, operator, online):
    online.policy = lambda cmd: []  # never answers
    response = client.post(
        "/api/enclosures/enc-a/commands?wait=0.05", json={"kind": "ping"}, headers=operator
    )
    assert response.status_code == 202
    assert response.get_json()["state"] == "sent"  # the wait ended first
    response = client.post(
        "/api/enclosures/enc-a/commands?wait=61", json={"kind": "ping"}, headers=operator
    )
    assert response.status_code == 422
    assert "wait" in json.dumps(response.get_json())


@pytest.mark.slow  # waits for a command's deadline
def test_timed_out_when_the_agent_does_not_answer(client, operator, online):
    online.policy = None
    record = send(client, operator, timeout_s=1).get_json()
    settled = settle(client, operator, record["id"], wait=10)
    assert settled["state"] == "timed_out"
    assert "no answer from the enclosure within 1 s" in settled["detail"]


@pytest.mark.slow  # waits for a command's deadline
def test_late_ack_after_timeout_is_ignored(settings, database, client, operator, online):
    online.policy = None
    record = send(client, operator, timeout_s=1).get_json()
    assert settle(client, operator, record["id"])["state"] == "timed_out"
    online.publish(
        f"{PREFIX}/enc/enc-a/ack",
        __import__("tests.integration.bridge_fixtures", fromlist=["x"]).ack_payload(
            record["id"], "succeeded"
        ),
    )
    online.status()  # a marker processed after the ack
    wait_for(lambda: command_row(database, record["id"]).state == "timed_out")
    time.sleep(0)  # the state stays: nothing can move a settled command


@pytest.mark.slow  # waits for the deadline
def test_lost_enclosure_is_accepted_and_the_command_expires(
    settings, database, client, operator, make_bridge, agents
):
    make_bridge(settings)
    agent = agents("enc-a")
    agent.online()
    wait_state(database, "enc-a", "idle")
    agent.drop()
    wait_state(database, "enc-a", "lost")
    response = send(client, operator, timeout_s=1)
    assert response.status_code == 202
    record = response.get_json()
    assert record["enclosure_state"] == "lost"
    assert settle(client, operator, record["id"])["state"] == "timed_out"


def test_unknown_enclosure_is_404_and_bad_input_422(client, operator, online):
    response = send(client, operator, eid="enc-zz")
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
    assert "enc-zz" in response.get_json()["detail"]

    bad_id = send(client, operator, eid="Enc_A")
    assert bad_id.status_code == 422
    assert bad_id.get_json()["errors"][0]["field"] == "eid"

    bad_params = send(client, operator, kind="start_live_view", params={"duration_s": -1})
    assert bad_params.status_code == 422
    assert bad_params.get_json()["errors"][0]["field"] == "params.duration_s"

    unknown_field = send(client, operator, kind="ping", params={"x": 1})
    assert unknown_field.status_code == 422
    assert unknown_field.get_json()["errors"][0]["field"] == "params.x"

    bad_kind = send(client, operator, kind="self_destruct")
    assert bad_kind.status_code == 422
    assert bad_kind.get_json()["errors"][0]["field"] == "kind"

    bad_uuid = client.get("/api/commands/not-a-uuid", headers=operator)
    assert bad_uuid.status_code == 422
    assert bad_uuid.get_json()["errors"][0]["field"] == "id"

    unknown = client.get(f"/api/commands/{uuid.uuid4()}", headers=operator)
    assert unknown.status_code == 404


def test_roles(client, viewer, online):
    assert send(client, viewer).status_code == 403
    assert send(client, {}).status_code == 401
    assert client.get("/api/enclosures/enc-a/commands", headers=viewer).status_code == 200


def test_list_commands_newest_first_paginated(client, operator, online):
    ids = [send(client, operator).get_json()["id"] for _ in range(5)]
    first = client.get("/api/enclosures/enc-a/commands?limit=2", headers=operator).get_json()
    assert [c["id"] for c in first["items"]] == ids[::-1][:2]
    seen = [c["id"] for c in first["items"]]
    cursor = first["next_cursor"]
    while cursor:
        page = client.get(
            f"/api/enclosures/enc-a/commands?limit=2&cursor={cursor}", headers=operator
        ).get_json()
        seen += [c["id"] for c in page["items"]]
        cursor = page["next_cursor"]
    assert seen == ids[::-1]
    bad = client.get("/api/enclosures/enc-a/commands?cursor=garbage", headers=operator)
    assert bad.status_code == 422
    assert bad.get_json()["errors"][0]["field"] == "cursor"


@pytest.mark.slow  # waits for the bridge's re-publishing round
def test_pending_command_is_published_by_the_bridge(settings, database, online):
    """The API committed the command and died before publishing it: the bridge sends it."""
    with database.session() as session:
        cmd = command_domain.create_command(session, "enc-a", CommandKind.PING, {}, 30)
        command_id = cmd.id
    # Published once: counted even when the answer beats the bridge's own mark of `sent`.
    wait_for(
        lambda: (
            (row := command_row(database, command_id)).state == "succeeded"
            and row.publish_count == 1
        ),
        timeout=15,
    )
    assert len(online.wait_commands(1)) == 1


def test_broker_down_answers_202_pending(app, client, operator, database, broker, settings):
    from controlsvc.store.enclosure_rows import lock_rows

    with database.session() as session:
        lock_rows(session, ["enc-a"])
    broker.stop()
    response = send(client, operator)
    assert response.status_code == 202
    assert response.get_json()["state"] == "pending"
    assert command_row(database, response.get_json()["id"]).state == "pending"


@pytest.mark.slow  # many round trips
def test_round_trip_latency(client, operator, viewer, online):
    """REST POST -> MQTT -> agent ack -> bridge -> visible through GET ?wait (printed)."""
    samples = []
    for _ in range(30):
        started = time.perf_counter()
        record = send(client, operator).get_json()
        assert settle(client, viewer, record["id"])["state"] == "succeeded"
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    print(
        f"command round trip over {len(samples)}: p50 {statistics.median(samples):.1f} ms,"
        f" max {samples[-1]:.1f} ms"
    )
