"""The fleet simulator on a real Mosquitto: birth, heartbeat, commands, desired, Will, stop."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from controlsvc.broker import OPERATOR_USER, SERVICE_USER, LocalBroker, generate_password
from fleet_simulator import Fleet, FleetNotReady, LinkState, fleet_accounts
from schemas import (
    Ack,
    AckResult,
    Command,
    CommandKind,
    Desired,
    DesiredRecording,
    EnclosureStateMessage,
    Event,
    EventKind,
    Lifecycle,
    Status,
    Topics,
    dump_message,
    parse_message,
    utc_now,
)
from tests.support.broker import mosquitto_factory, mqtt_client  # noqa: F401 (fixtures)
from tests.support.mqtt import ACCEPTED, MqttTestClient
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.mosquitto, pytest.mark.slow]  # fleets of simulated agents

FLEET_SIZE = 20
STATUS_INTERVAL_S = 0.3
TOPICS = Topics()


@pytest.fixture
def accounts() -> dict[str, str]:
    return fleet_accounts(FLEET_SIZE, "simtest")


@pytest.fixture
def broker(
    mosquitto_factory: Callable[..., LocalBroker],  # noqa: F811
    accounts: dict[str, str],
) -> LocalBroker:
    users = {SERVICE_USER: generate_password(), OPERATOR_USER: generate_password(), **accounts}
    return mosquitto_factory(users, persistence=False)


@pytest.fixture
def service(
    broker: LocalBroker,
    mqtt_client: Callable[..., MqttTestClient],  # noqa: F811
) -> MqttTestClient:
    """The service's account, watching the whole tree from before the fleet connects."""
    client = mqtt_client(broker, SERVICE_USER)
    assert client.subscribe(TOPICS.all_filter()) == [1]
    return client


@pytest.fixture
def fleet(
    broker: LocalBroker, accounts: dict[str, str], service: MqttTestClient
) -> Iterator[Fleet]:
    fleet = Fleet(broker.host, broker.port, accounts, status_interval_s=STATUS_INTERVAL_S, seed=7)
    fleet.start(timeout=30)
    try:
        yield fleet
    finally:
        fleet.stop()
        assert fleet.counters().errors == 0, "the simulator logged errors (see the log)"


def _states(service: MqttTestClient, eid: str) -> list[EnclosureStateMessage]:
    return [
        parse_message(EnclosureStateMessage, m.payload)
        for m in service.received(TOPICS.state(eid))
        if m.payload
    ]


def _statuses(service: MqttTestClient, eid: str) -> list[Status]:
    return [parse_message(Status, m.payload) for m in service.received(TOPICS.status(eid))]


def _send(
    service: MqttTestClient,
    eid: str,
    kind: CommandKind,
    params: dict[str, Any] | None = None,
    *,
    expires_in_s: float = 10.0,
    correlate: bool = True,
) -> uuid.UUID:
    command_id = uuid.uuid4()
    command = Command(
        id=command_id,
        kind=kind,
        params=params or {},
        expires_at=utc_now() + timedelta(seconds=expires_in_s),
    )
    properties = None
    if correlate:
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        properties.ResponseTopic = TOPICS.ack(eid)
        properties.CorrelationData = str(command_id).encode()
    assert service.publish(TOPICS.cmd(eid), dump_message(command), properties=properties) == 0
    return command_id


def _acks(service: MqttTestClient, eid: str, command_id: uuid.UUID, count: int) -> list[Ack]:
    def answered() -> list[Ack]:
        acks = [parse_message(Ack, m.payload) for m in service.received(TOPICS.ack(eid))]
        mine = [a for a in acks if a.command_id == command_id]
        return mine if len(mine) >= count else []

    return wait_for(answered, message=f"{count} acks of {command_id} from {eid}")


def test_every_enclosure_is_born_and_heartbeats(fleet: Fleet, service: MqttTestClient) -> None:
    for eid in fleet.ids:
        wait_for(lambda eid=eid: len(_statuses(service, eid)) >= 3, message=f"statuses of {eid}")
        messages = service.received(f"{TOPICS.prefix}/enc/{eid}/+")
        kinds = [m.topic.rsplit("/", 1)[1] for m in messages]
        states = [s.state for s in _states(service, eid)]
        assert states[:2] == [Lifecycle.INIT, Lifecycle.READY]
        # The contract's birth: init, then a first status, then (subscribed) ready.
        assert kinds.index("state") < kinds.index("status") < kinds.index("state", 1)
        statuses = _statuses(service, eid)
        assert [s.seq for s in statuses] == list(range(len(statuses)))
        assert {s.boot_id for s in statuses} == {_states(service, eid)[0].boot_id}
        assert all(m.retain is False or m.topic.endswith(("state", "status")) for m in messages)
    counters = fleet.counters()
    assert counters.ready == counters.births == FLEET_SIZE
    assert counters.statuses_acked >= 3 * FLEET_SIZE


def test_heartbeats_are_spread_over_the_interval(fleet: Fleet, service: MqttTestClient) -> None:
    wait_for(lambda: all(len(_statuses(service, e)) >= 2 for e in fleet.ids))
    second = sorted(_statuses(service, e)[1].at for e in fleet.ids)
    assert second[-1] - second[0] > timedelta(seconds=STATUS_INTERVAL_S / 4)


def test_ping_answers_on_the_response_topic_with_correlation(
    fleet: Fleet, service: MqttTestClient
) -> None:
    eid = fleet.ids[3]
    command_id = _send(service, eid, CommandKind.PING)
    acks = _acks(service, eid, command_id, 1)
    assert [a.result for a in acks] == [AckResult.SUCCEEDED]
    assert acks[0].data is not None
    assert acks[0].data["pong"] is True
    received = service.received(TOPICS.ack(eid))
    assert {m.correlation_data for m in received} == {str(command_id).encode()}
    assert fleet.counters().acks_sent == {"succeeded": 1}


def test_ping_without_mqtt5_properties_uses_the_json_fields(
    fleet: Fleet, service: MqttTestClient
) -> None:
    eid = fleet.ids[4]
    command_id = _send(service, eid, CommandKind.PING, correlate=False)
    assert _acks(service, eid, command_id, 1)[-1].result is AckResult.SUCCEEDED


def test_recording_commands_follow_the_agent_state_rules(
    fleet: Fleet, service: MqttTestClient
) -> None:
    eid = fleet.ids[5]
    start = {"session_id": "s-1", "file_prefix": "mouse", "duration_s": 60}
    stop_when_idle = _send(service, eid, CommandKind.STOP_RECORDING)
    assert _acks(service, eid, stop_when_idle, 1)[-1].result is AckResult.REJECTED

    started = _send(service, eid, CommandKind.START_RECORDING, start)
    assert _acks(service, eid, started, 2)[-1].result is AckResult.SUCCEEDED
    assert fleet.enclosure(eid).recording_session == "s-1"
    other = _send(service, eid, CommandKind.START_RECORDING, {**start, "session_id": "s-2"})
    refusal = _acks(service, eid, other, 1)[-1]
    assert refusal.result is AckResult.REJECTED
    assert "s-1" in (refusal.detail or "")

    stopped = _send(service, eid, CommandKind.STOP_RECORDING)
    assert _acks(service, eid, stopped, 2)[-1].result is AckResult.SUCCEEDED
    assert fleet.enclosure(eid).recording_session is None
    events = [parse_message(Event, m.payload) for m in service.received(TOPICS.events(eid))]
    assert [e.kind for e in events] == [
        EventKind.RECORDING_STARTED,
        EventKind.SEGMENT_CLOSED,
        EventKind.RECORDING_STOPPED,
    ]


def test_expired_and_malformed_commands_are_answered_not_run(
    fleet: Fleet, service: MqttTestClient
) -> None:
    eid = fleet.ids[6]
    start = {"session_id": "s-1", "file_prefix": "m", "duration_s": 5}
    late = _send(service, eid, CommandKind.START_RECORDING, start, expires_in_s=-1)
    assert _acks(service, eid, late, 1)[-1].result is AckResult.EXPIRED
    bad_params = _send(service, eid, CommandKind.START_RECORDING, {"session_id": "s-1"})
    refusal = _acks(service, eid, bad_params, 1)[-1]
    assert refusal.result is AckResult.REJECTED
    assert "file_prefix" in (refusal.detail or "")
    malformed_id = uuid.uuid4()
    payload = json.dumps({"id": str(malformed_id), "kind": "dance", "expires_at": "soon"})
    service.publish(TOPICS.cmd(eid), payload)
    assert _acks(service, eid, malformed_id, 1)[-1].result is AckResult.REJECTED
    assert fleet.enclosure(eid).recording_session is None


def _publish_desired(service: MqttTestClient, eid: str, desired: Desired) -> None:
    assert service.publish(TOPICS.desired(eid), dump_message(desired), retain=True) in ACCEPTED


def _latest_status(service: MqttTestClient, eid: str) -> Status | None:
    statuses = _statuses(service, eid)
    return statuses[-1] if statuses else None


def test_desired_recording_is_reported_and_none_makes_it_idle(
    fleet: Fleet, service: MqttTestClient
) -> None:
    eid = fleet.ids[7]
    now = utc_now()
    recording = DesiredRecording(
        session_id="s-9", file_prefix="mouse", start_at=now, end_at=now + timedelta(minutes=5)
    )
    _publish_desired(service, eid, Desired(version=3, recording=recording))

    def recording_status() -> Status | None:
        status = _latest_status(service, eid)
        recording = status.recording if status is not None else None
        return status if recording is not None and recording.session_id == "s-9" else None

    first = wait_for(recording_status)
    assert first.camera.recording is True
    later = wait_for(
        lambda: (
            (s := recording_status()) is not None
            and s.camera.frames_written > first.camera.frames_written
            and s
        )
    )
    assert later.recording is not None
    assert later.recording.recorded_s > 0

    # An older document is ignored; a newer one without a recording makes it idle.
    _publish_desired(service, eid, Desired(version=2))
    marker = _send(service, eid, CommandKind.PING)  # delivered after it, in order
    _acks(service, eid, marker, 1)
    assert fleet.enclosure(eid).recording_session == "s-9"
    _publish_desired(service, eid, Desired(version=4))
    idle = wait_for(
        lambda: (s := _latest_status(service, eid)) is not None and s.recording is None and s
    )
    assert idle.camera.recording is False
    assert fleet.enclosure(eid).desired_version == 4


def test_retained_desired_is_applied_at_birth(
    broker: LocalBroker, accounts: dict[str, str], service: MqttTestClient
) -> None:
    eid = next(iter(accounts))
    now = utc_now()
    recording = DesiredRecording(
        session_id="s-7",
        file_prefix="m",
        start_at=now - timedelta(minutes=1),
        end_at=now + timedelta(minutes=5),
    )
    _publish_desired(service, eid, Desired(version=1, recording=recording))
    fleet = Fleet(broker.host, broker.port, {eid: accounts[eid]}, status_interval_s=5.0)
    with fleet:
        status = wait_for(
            lambda: (s := _latest_status(service, eid)) is not None and s.recording and s
        )
        assert status.recording is not None
        assert status.recording.session_id == "s-7"
        assert fleet.counters().recording == 1


def test_kill_drops_the_connection_and_the_will_says_lost(
    fleet: Fleet, service: MqttTestClient
) -> None:
    eid = fleet.ids[8]
    boot = fleet.enclosure(eid).boot_id
    fleet.kill(eid)
    lost = wait_for(
        lambda: [s for s in _states(service, eid) if s.state is Lifecycle.LOST],
        message=f"the Will of {eid}",
    )
    assert lost[0].boot_id == boot
    assert fleet.enclosure(eid).state is LinkState.KILLED
    assert fleet.counters().ready == FLEET_SIZE - 1
    # It stays down until revived, then comes back as a new boot.
    service.clear()
    fleet.revive(eid)
    ready = wait_for(lambda: [s for s in _states(service, eid) if s.state is Lifecycle.READY])
    assert ready[0].boot_id != boot
    assert _statuses(service, eid)[0].seq == 0


def test_clean_stop_says_disconnected_and_no_will(
    broker: LocalBroker, accounts: dict[str, str], service: MqttTestClient
) -> None:
    fleet = Fleet(broker.host, broker.port, accounts, status_interval_s=1.0)
    fleet.start(timeout=30)
    fleet.stop()
    assert all(fleet.enclosure(e).state is LinkState.STOPPED for e in fleet.ids)

    def last_states() -> dict[str, Lifecycle]:
        return {e: s[-1].state for e in fleet.ids if (s := _states(service, e))}

    wait_for(lambda: set(last_states().values()) == {Lifecycle.DISCONNECTED}, message=last_states)
    assert not [m for m in service.received() if b'"lost"' in m.payload]
    service.clear()
    service.expect_none(f"{TOPICS.prefix}/enc/+/state")  # and no Will follows


def test_refused_credentials_stop_retrying(broker: LocalBroker, accounts: dict[str, str]) -> None:
    eid = next(iter(accounts))
    fleet = Fleet(broker.host, broker.port, {eid: "not-the-password"})
    with pytest.raises(FleetNotReady, match=eid):
        fleet.start(timeout=10)
    try:
        assert fleet.enclosure(eid).state is LinkState.REFUSED
        assert fleet.counters().connect_refused == 1
    finally:
        fleet.stop()


def test_burst_publishes_and_counts_broker_acks(fleet: Fleet, service: MqttTestClient) -> None:
    before = fleet.counters().statuses_acked
    fleet.publish_statuses(25)
    fleet.wait_until(lambda c: c.statuses_acked >= before + 25 * FLEET_SIZE, timeout=30)
    eid = fleet.ids[0]
    wait_for(lambda: len(_statuses(service, eid)) >= 25)
    seqs = [s.seq for s in _statuses(service, eid)]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == len(seqs)
