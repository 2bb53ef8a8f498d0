"""Overload: a bridge that falls far behind loses no event and no ack, and keeps the latest
status of every enclosure (docs/bridge.md, "Overload").

The database is held (rows locked on PostgreSQL, the write lock on SQLite), so the bridge
cannot write anything while a burst of statuses, interleaved with events and acks, arrives:
falling behind is certain, not a matter of the machine's speed. The bridge's queue of events
and acks is set small, so the burst overflows it many times over, as 5,000 enclosures at 1 Hz
overflowed the queue of a bridge that could not keep up; statuses coalesce to the latest per
enclosure as soon as the lane is behind, so they never queue up. The broker's queue is large
enough for the whole burst: a status the broker itself drops (which the design allows) would
never reach the bridge to be coalesced, and how many it drops depends on the machine's speed,
which no test may.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import paho.mqtt.client as paho
import pytest
from flask import Flask
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from sqlalchemy import func, select

from controlsvc.broker import LocalBroker
from controlsvc.config.sections import SecretsSettings
from controlsvc.config.settings import Settings
from controlsvc.mqtt.loop_stop import stop_loop
from controlsvc.store import commands as command_domain
from controlsvc.store.db import Database
from controlsvc.store.models.commands import Command
from controlsvc.store.models.enclosures import AgentEvent, Enclosure
from schemas.enums import CommandKind
from tests.conftest import TEST_SECRET
from tests.integration.bridge_fixtures import (  # noqa: F401 (fixtures)
    PREFIX,
    ack_payload,
    bridge_settings,
    event_payload,
    make_bridge,
    mosquitto_factory,
    status_payload,
)
from tests.support.broker import default_accounts
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.mosquitto, pytest.mark.slow]

ENCLOSURES = 40
STATUSES = 375  # per enclosure: 15,000 in all
EVENTS = 5  # per enclosure, spread through its statuses (the last one after its last status)
EVENT_AFTER = [STATUSES * (j + 1) // EVENTS for j in range(EVENTS)]  # status seqs
BROKER_QUEUE = 100_000  # per client above those in flight: the whole burst fits
BRIDGE_QUEUE = 100  # the bridge's in-process queue of state/ack/events
# A lane is behind once its oldest waiting status came this long before the next: here at once,
# so every status coalesces with its enclosure's waiting one instead of queueing up behind it
# (the service's 1 s would make the count depend on how fast this machine publishes).
STATUS_BEHIND_S = 0.0
BATCH_MAX = 50
PUBLISH_TIMEOUT_S = 120.0
DRAIN_TIMEOUT_S = 120.0
COALESCE_TIMEOUT_S = 300.0  # generous: reading 15,000 statuses on a loaded machine
SCRAPE_TOKEN = "scrape-" + "o" * 40
COALESCED = "jaxmba_bridge_statuses_coalesced_total"


class Publisher:
    """One enclosure's connection, publishing QoS 1 without waiting for each PUBACK."""

    def __init__(self, broker: LocalBroker, eid: str) -> None:
        self.eid = eid
        self.refused: list[int] = []
        self._client = paho.Client(CallbackAPIVersion.VERSION2, client_id=eid, protocol=paho.MQTTv5)
        self._client.username_pw_set(eid, broker.accounts[eid])
        self._client.max_inflight_messages_set(100)
        self._client.max_queued_messages_set(0)
        self._client.on_publish = self._on_publish
        self._connected = threading.Event()
        self._client.on_connect = lambda *_a: self._connected.set()
        self._client.connect(broker.host, broker.port)
        self._client.loop_start()
        assert self._connected.wait(10), f"{eid} could not connect"
        self._infos: list[paho.MQTTMessageInfo] = []

    def _on_publish(self, _c: Any, _u: Any, _mid: int, rc: Any, _p: Any) -> None:
        if rc.value >= 0x80:
            self.refused.append(rc.value)

    def publish(self, channel: str, payload: bytes, *, retain: bool = False) -> None:
        topic = f"{PREFIX}/enc/{self.eid}/{channel}"
        self._infos.append(self._client.publish(topic, payload, qos=1, retain=retain))

    def wait_acknowledged(self, timeout: float) -> None:
        for info in self._infos:
            info.wait_for_publish(timeout)
        self._infos.clear()
        assert not self.refused, f"the broker refused publishes of {self.eid}: {self.refused}"

    def close(self) -> None:
        self._client.disconnect()
        stop_loop(self._client)


@contextlib.contextmanager
def database_held(database: Database, ids: list[str]) -> Iterator[None]:
    """No bridge write gets through while inside: the enclosure rows are locked (PostgreSQL)
    or the database's write lock is taken (SQLite)."""
    raw = database.engine.raw_connection()
    try:
        cursor = raw.cursor()
        if database.engine.dialect.name == "postgresql":
            cursor.execute("SELECT id FROM enclosures WHERE id = ANY(%s) FOR UPDATE", (ids,))
            assert len(cursor.fetchall()) == len(ids)
        else:
            raw.driver_connection.isolation_level = None  # type: ignore[union-attr]
            cursor.execute("BEGIN IMMEDIATE")
        yield
    finally:
        raw.rollback()
        raw.close()


@pytest.fixture
def fleet_broker(mosquitto_factory: Callable[..., LocalBroker]) -> LocalBroker:  # noqa: F811
    ids = tuple(f"enc-o{i:02d}" for i in range(ENCLOSURES))
    return mosquitto_factory(accounts=default_accounts(ids), max_queued_messages=BROKER_QUEUE)


@pytest.fixture
def scrape(settings: Settings, database: Database) -> Callable[[], str]:
    from controlsvc.ops.app import create_app

    secrets_ = SecretsSettings(
        secret_key=SecretStr(TEST_SECRET),
        jwt_secret_key=SecretStr(TEST_SECRET),
        metrics_token=SecretStr(SCRAPE_TOKEN),
    )
    app: Flask = create_app(settings.model_copy(update={"secrets": secrets_}), database=database)
    client = app.test_client()

    def get() -> str:
        answer = client.get("/metrics", headers={"Authorization": f"Bearer {SCRAPE_TOKEN}"})
        assert answer.status_code == 200
        return answer.text

    return get


def metric(text_: str, name: str) -> float:
    for family in text_string_to_metric_families(text_):
        for sample in family.samples:
            if sample.name == name and not sample.labels:
                return float(sample.value)
    return 0.0


def test_overload_loses_no_event_or_ack_and_keeps_the_latest_status(
    settings, database, fleet_broker, make_bridge, scrape
):
    ids = [f"enc-o{i:02d}" for i in range(ENCLOSURES)]
    bridge = make_bridge(
        bridge_settings(settings, fleet_broker),
        queue_size=BRIDGE_QUEUE,
        status_behind_s=STATUS_BEHIND_S,
        batch_max=BATCH_MAX,
        housekeeping=False,
    )
    boot = secrets.token_hex(6)
    fleet = [Publisher(fleet_broker, eid) for eid in ids]
    try:
        for pub in fleet:  # registration: every enclosure exists, with status seq 0
            pub.publish("status", status_payload(boot, 0), retain=True)
        for pub in fleet:
            pub.wait_acknowledged(PUBLISH_TIMEOUT_S)
        wait_for(
            lambda: _stored_seqs(database, ids) == dict.fromkeys(ids, 0),
            timeout=DRAIN_TIMEOUT_S,
            message="the enclosures were not registered",
        )
        with database.session() as session:
            command_ids = {
                eid: command_domain.create_command(session, eid, CommandKind.PING, {}, 600).id
                for eid in ids
            }
        coalesced_before = metric(scrape(), COALESCED)
        event_ids = {eid: [uuid.uuid4().hex for _ in range(EVENTS)] for eid in ids}

        with database_held(database, ids):
            for seq in range(1, STATUSES + 1):
                for pub in fleet:
                    pub.publish("status", status_payload(boot, seq), retain=True)
                    if seq == STATUSES // 3:
                        ack = ack_payload(str(command_ids[pub.eid]), "accepted")
                        pub.publish("ack", ack)
                    if seq == 2 * STATUSES // 3:
                        ack = ack_payload(str(command_ids[pub.eid]), "succeeded")
                        pub.publish("ack", ack)
                    if seq in EVENT_AFTER:
                        event_id = event_ids[pub.eid][EVENT_AFTER.index(seq)]
                        pub.publish("events", event_payload(event_id))
            for pub in fleet:
                pub.wait_acknowledged(PUBLISH_TIMEOUT_S)
            # While nothing can be written, every status is replaced by a newer one but those
            # in the batches in progress and one per enclosure: none queues up stale.
            in_batches = len(bridge._lanes) * BATCH_MAX
            least = ENCLOSURES * (STATUSES - 1) - in_batches
            wait_for(
                lambda: bridge.stats.snapshot().get("statuses_coalesced", 0) >= least,
                timeout=COALESCE_TIMEOUT_S,
                message=lambda: (
                    f"coalesced fewer than {least}: {bridge.stats.snapshot()}; waiting"
                    f" {[lane.queue.qsize() for lane in bridge._lanes]}; broker:"
                    f" {_drops(fleet_broker)}"
                ),
            )

        expected_events = {(eid, e) for eid, events in event_ids.items() for e in events}
        wait_for(
            lambda: _stored_events(database, ids) >= expected_events,
            timeout=DRAIN_TIMEOUT_S,
            message=lambda: (
                f"{len(expected_events - _stored_events(database, ids))} events missing;"
                f" stats {bridge.stats.snapshot()}"
            ),
        )
        wait_for(
            lambda: _command_states(database, command_ids) == dict.fromkeys(ids, "succeeded"),
            timeout=DRAIN_TIMEOUT_S,
            message=lambda: f"commands: {_command_states(database, command_ids)}",
        )
        wait_for(
            lambda: _stored_seqs(database, ids) == dict.fromkeys(ids, STATUSES),
            timeout=DRAIN_TIMEOUT_S,
            message=lambda: f"latest statuses: {_stored_seqs(database, ids)}",
        )
    finally:
        for pub in fleet:
            pub.close()

    assert _drops(fleet_broker) == []  # not even statuses: the bridge took them all
    # Exactly once: no event row twice, and nothing else arrived.
    assert _event_rows(database, ids) == len(expected_events)
    stats = bridge.stats.snapshot()
    assert stats["written"]["events"] == len(expected_events)
    assert stats["written"]["ack"] == 2 * ENCLOSURES
    assert stats["ignored"].get("duplicate", 0) == 0
    # Every status published is either written, or counted as replaced by a newer one.
    published = ENCLOSURES * (STATUSES + 1)
    assert stats["received"]["status"] + stats["statuses_coalesced"] == published
    wait_for(
        lambda: metric(scrape(), COALESCED) - coalesced_before == stats["statuses_coalesced"],
        message=lambda: f"/metrics shows {metric(scrape(), COALESCED) - coalesced_before}",
    )


def _drops(broker: LocalBroker) -> list[str]:
    """The broker's notices that it dropped messages for a client."""
    text_ = broker.log_file.read_text(errors="replace")
    return [line for line in text_.splitlines() if "being dropped" in line]


def _stored_seqs(database: Database, ids: list[str]) -> dict[str, int | None]:
    with database.sessionmaker() as session:
        rows = session.execute(
            select(Enclosure.id, Enclosure.status_seq).where(Enclosure.id.in_(ids))
        ).all()
    return {row.id: row.status_seq for row in rows}


def _stored_events(database: Database, ids: list[str]) -> set[tuple[str, str]]:
    with database.sessionmaker() as session:
        rows = session.execute(
            select(AgentEvent.enclosure_id, AgentEvent.event_id).where(
                AgentEvent.enclosure_id.in_(ids)
            )
        ).all()
    return {(row.enclosure_id, row.event_id) for row in rows}


def _event_rows(database: Database, ids: list[str]) -> int:
    with database.sessionmaker() as session:
        query = select(func.count()).select_from(AgentEvent)
        return int(session.scalar(query.where(AgentEvent.enclosure_id.in_(ids))) or 0)


def _command_states(database: Database, command_ids: dict[str, uuid.UUID]) -> dict[str, str]:
    with database.sessionmaker() as session:
        rows = session.execute(
            select(Command.enclosure_id, Command.state).where(
                Command.id.in_(list(command_ids.values()))
            )
        ).all()
    return {row.enclosure_id: row.state for row in rows}
