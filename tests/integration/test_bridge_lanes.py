"""The bridge's worker lanes and its handling of copies queued before a reconnection."""

from __future__ import annotations

from datetime import timedelta

import pytest

from controlsvc.bridge import Bridge
from controlsvc.bridge.inbound import Inbound
from controlsvc.store.db import utcnow
from tests.integration.bridge_fixtures import (  # noqa: F401 (fixtures)
    PREFIX,
    Agent,
    agents,
    bridge_settings,
    broker,
    enclosure_attr,
    history_count,
    make_bridge,
    mosquitto_factory,
    now,
    status_payload,
)
from tests.support.broker import default_accounts
from tests.support.waiting import wait_for

pytestmark = pytest.mark.mosquitto


def _status_inbound(eid: str, *, qos: int, generation: int) -> Inbound:
    payload = status_payload("boot-1", 1)
    return Inbound(f"{PREFIX}/enc/{eid}/status", payload, qos, False, utcnow(), 1, generation)


def test_lanes_per_backend_and_one_lane_per_enclosure(settings, database, broker):
    bridge = Bridge(bridge_settings(settings, broker), database, housekeeping=False)
    expected = 2 if database.engine.dialect.name == "postgresql" else 1
    assert len(bridge._lanes) == expected
    for eid in (f"enc-{i}" for i in range(50)):
        lanes = {id(bridge._lane_of(f"{PREFIX}/enc/{eid}/{ch}")) for ch in ("status", "ack")}
        assert len(lanes) == 1  # every channel of an enclosure on the same lane: in order
    if expected == 2:
        used = {id(bridge._lane_of(f"{PREFIX}/enc/enc-{i}/status")) for i in range(50)}
        assert len(used) == 2
    assert bridge._lane_of("elsewhere/x") is bridge._lanes[0]


def test_copies_from_an_old_connection_are_skipped_not_written(
    settings, database, broker, make_bridge
):
    bridge = make_bridge(bridge_settings(settings, broker))
    lane = bridge._lanes[0]
    current = bridge.client.generation
    bridge._process(lane.writer, [_status_inbound("enc-old", qos=1, generation=current - 1)])
    assert bridge.stats.snapshot()["ignored"].get("old_connection") == 1
    assert history_count(database, "enc-old") == 0
    # QoS 0 is never delivered again: written whatever connection it came on.
    bridge._process(lane.writer, [_status_inbound("enc-q0", qos=0, generation=current - 1)])
    assert history_count(database, "enc-q0") == 1
    bridge._process(lane.writer, [_status_inbound("enc-new", qos=1, generation=current)])
    assert history_count(database, "enc-new") == 1


def test_many_enclosures_over_both_lanes_all_stored_in_order(
    settings, database, mosquitto_factory, make_bridge
):
    ids = tuple(f"enc-{i}" for i in range(12))
    broker = mosquitto_factory(accounts=default_accounts(ids))
    # every status counted in the history: none coalesced if the lanes fall behind
    bridge = make_bridge(bridge_settings(settings, broker), status_behind_s=None)
    fleet = [Agent(broker, eid) for eid in ids]
    for agent in fleet:
        agent.online()
    t = now()
    for agent in fleet:  # online() sent seq 0
        for seq in range(1, 6):
            agent.status(seq=seq, at=t)
    for agent in fleet:
        wait_for(lambda a=agent: enclosure_attr(database, a.eid, "status_seq") == 5)
        assert history_count(database, agent.eid) == 6
    assert bridge.stats.snapshot()["ignored"].get("stale", 0) == 0
    for agent in fleet:
        agent.disconnect()


def test_backlog_holds_back_the_silence_verdict(settings, database, broker, make_bridge, agents):
    bridge = make_bridge(bridge_settings(settings, broker, status_interval_s=0.2))
    assert bridge.backlog_since() is None
    agent = agents("enc-a")
    agent.online()
    wait_for(lambda: enclosure_attr(database, "enc-a", "state") == "idle")
    wait_for(lambda: bridge.backlog_since() is None)
    assert bridge.housekeeping is not None
    # Messages received before the deadline and not yet written: no verdict after them.
    deadline = enclosure_attr(database, "enc-a", "silent_after")
    bridge.housekeeping._backlog_since = lambda: deadline - timedelta(seconds=1)
    wait_for(lambda: bridge.client.connected_for() > 1)
    assert bridge.housekeeping.check_liveness(now=deadline + timedelta(hours=1)) == 0
    assert enclosure_attr(database, "enc-a", "state") == "idle"
    bridge.housekeeping._backlog_since = lambda: None
    assert bridge.housekeeping.check_liveness(now=deadline + timedelta(hours=1)) == 1
    assert enclosure_attr(database, "enc-a", "state") == "lost"


def test_a_queued_message_is_backlog(settings, database, broker):
    bridge = Bridge(bridge_settings(settings, broker), database, housekeeping=False)
    inbound = _status_inbound("enc-a", qos=1, generation=0)
    bridge._lane_of(inbound.topic).queue.put(inbound)
    assert bridge.backlog_since() == inbound.received_at


def test_statuses_come_on_their_own_connection_also_after_an_upgrade(
    settings, database, broker, make_bridge, agents
):
    """A reliable session kept from the one-connection bridge still holds the shared status
    subscription: the bridge drops it, so statuses never queue with events and acks."""
    from controlsvc.broker import SERVICE_USER
    from tests.support.mqtt import MqttTestClient

    config = bridge_settings(settings, broker)
    old = MqttTestClient.for_broker(
        broker,
        SERVICE_USER,
        client_id=f"{config.mqtt.client_id}-bridge",
        clean_start=False,
        session_expiry_s=3600,
    )
    assert old.subscribe(f"$share/controlsvc/{PREFIX}/enc/+/status") == [1]
    old.disconnect()

    bridge = Bridge(config, database, housekeeping=False, status_behind_s=None)
    reliable: list[str] = []
    deliver = bridge.client._deliver

    def spy(inbound: Inbound) -> None:
        reliable.append(inbound.topic)
        deliver(inbound)

    bridge.client._deliver = spy
    bridge.start()
    try:
        assert bridge.wait_ready(10)
        agent = agents("enc-a")
        agent.online()
        for _ in range(20):
            agent.status()
        wait_for(lambda: enclosure_attr(database, "enc-a", "status_seq") == 20)
        assert history_count(database, "enc-a") == 21
        assert [t for t in reliable if t.endswith("/status")] == []
        assert f"{PREFIX}/enc/enc-a/state" in reliable
    finally:
        bridge.stop()


def test_a_status_waiting_longer_than_the_batch_in_progress_is_the_backlog(
    settings, database, broker
):
    """Statuses wait behind state, acks and events: a batch of those may have begun after."""
    bridge = Bridge(bridge_settings(settings, broker), database, housekeeping=False)
    status = _status_inbound("enc-a", qos=1, generation=0)
    lane = bridge._lane_of(status.topic)
    lane.queue.put_status(status)
    lane.busy_since = status.received_at + timedelta(seconds=5)
    assert bridge.backlog_since() == status.received_at
