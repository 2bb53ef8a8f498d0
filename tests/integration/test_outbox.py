"""One commit-then-publish (``controlsvc.store.outbox``): nothing leaves before its commit, and
what a commit decided reaches the broker even when the process dies before publishing it."""

# ruff: noqa: F811 (pytest fixtures are imported by name, then requested as parameters)

from __future__ import annotations

import secrets
from collections.abc import Callable

import pytest
from pydantic import SecretStr

from controlsvc.bridge import Bridge
from controlsvc.broker import OPERATOR_USER, SERVICE_USER, LocalBroker, find_free_port
from controlsvc.config.settings import Settings
from controlsvc.mqtt.publisher import MqttPublisher
from controlsvc.store import desired, outbox, sessions
from controlsvc.store.db import Database
from controlsvc.store.enclosure_rows import lock_rows
from controlsvc.store.models.sessions import RecordingSession
from schemas.codec import parse_message
from schemas.messages import Desired
from schemas.rest.sessions import SessionCreate
from schemas.topics import Topics
from tests.integration.bridge_fixtures import (  # noqa: F401 (fixtures)
    PREFIX,
    bridge_settings,
    broker,
    make_bridge,
    mosquitto_factory,
)
from tests.support.mqtt import MqttTestClient
from tests.support.waiting import wait_for

pytestmark = pytest.mark.mosquitto

TOPICS = Topics(PREFIX)


def _decide(database: Database, eids: list[str]) -> tuple[str, list[desired.Outgoing]]:
    """A session on ``eids`` decided and flushed, not committed: what a view has in hand."""
    session = database.sessionmaker()
    for eid in eids:
        lock_rows(session, [eid])
    body = SessionCreate(
        name=f"outbox-{secrets.token_hex(3)}",
        enclosures=[{"id": eid, "file_prefix": "cage"} for eid in eids],
        duration_s=3600,
        allow_offline=True,
    )
    rs, outgoing = sessions.create_session(session, TOPICS, body)
    session.commit()  # ... and the process dies here: nothing was published
    session.close()
    return rs.id, outgoing


def _unpublished(database: Database) -> list[str]:
    with database.session() as session:
        return sorted(m.enclosure_id for m in desired.unpublished(session, TOPICS))


def test_a_decision_committed_but_never_published_goes_out_from_the_bridge(
    settings: Settings,
    database: Database,
    broker: LocalBroker,
    make_bridge: Callable[..., Bridge],
) -> None:
    eids = [f"enc-{secrets.token_hex(3)}" for _ in range(3)]
    session_id, outgoing = _decide(database, eids)
    assert _unpublished(database) == sorted(eids)  # the record says it did not go out
    make_bridge(bridge_settings(settings, broker))
    wait_for(lambda: _unpublished(database) == [], message="the bridge never published")
    # Retained on the broker: an agent that connects now finds its document.
    documents = {}
    with MqttTestClient.for_broker(broker, OPERATOR_USER, client_id="ops-outbox") as ops:
        ops.subscribe(f"{PREFIX}/enc/+/desired")
        for _ in eids:
            message = ops.expect(f"{PREFIX}/enc/+/desired")
            assert message.retain
            documents[message.topic] = parse_message(Desired, message.payload)
    assert sorted(documents) == sorted(TOPICS.desired(eid) for eid in eids)
    for message in outgoing:
        doc = documents[message.topic]
        assert doc.version == message.version
        assert doc.recording is not None
        assert doc.recording.session_id == session_id


def _publisher(settings: Settings, broker: LocalBroker, port: int | None = None) -> MqttPublisher:
    base = bridge_settings(settings, broker)
    mqtt = base.mqtt.model_copy(
        update={
            "password": SecretStr(broker.accounts[SERVICE_USER]),
            "port": port or base.mqtt.port,
        }
    )
    return MqttPublisher(base.model_copy(update={"mqtt": mqtt}), connect_timeout=1)


def test_commit_then_publish_records_what_the_broker_took(
    settings: Settings, database: Database, broker: LocalBroker
) -> None:
    eids = [f"enc-{secrets.token_hex(3)}" for _ in range(2)]
    session = database.sessionmaker()
    for eid in eids:
        lock_rows(session, [eid])
    body = SessionCreate(
        name="now",
        enclosures=[{"id": eid, "file_prefix": "cage"} for eid in eids],
        duration_s=60,
        allow_offline=True,
    )
    _, outgoing = sessions.create_session(session, TOPICS, body)
    publisher = _publisher(settings, broker)
    try:
        published = outbox.commit_then_publish(session, publisher, PREFIX, outgoing)
    finally:
        publisher.close()
        session.close()
    assert sorted(m.enclosure_id for m in published) == sorted(eids)
    assert _unpublished(database) == []


def test_with_the_broker_away_the_commit_stands_and_the_record_says_not_sent(
    settings: Settings, database: Database, broker: LocalBroker
) -> None:
    eid = f"enc-{secrets.token_hex(3)}"
    session = database.sessionmaker()
    lock_rows(session, [eid])
    body = SessionCreate(
        name="away",
        enclosures=[{"id": eid, "file_prefix": "cage"}],
        duration_s=60,
        allow_offline=True,
    )
    rs, outgoing = sessions.create_session(session, TOPICS, body)
    publisher = _publisher(settings, broker, port=find_free_port())  # nobody listens there
    try:
        assert outbox.commit_then_publish(session, publisher, PREFIX, outgoing) == []
    finally:
        publisher.close()
        session.close()
    with database.session() as check:
        assert check.get(RecordingSession, rs.id) is not None  # committed all the same
    assert _unpublished(database) == [eid]  # ...and the bridge will publish it
