"""The simulated agent's behaviour without a broker: what it publishes for what it receives.

(Pure logic, no I/O; it lives next to the simulator's broker tests.)
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest

from fleet_simulator import AgentOptions, OutKind, SimulatedAgent
from fleet_simulator.client import FAST_PUBACK
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

EID = "sim-0042"


@pytest.fixture
def agent() -> SimulatedAgent:
    return SimulatedAgent(EID, AgentOptions(Topics(), "sim-test", 1.0))


def _command(kind: CommandKind, params: dict[str, Any] | None = None, **extra: Any) -> bytes:
    fields: dict[str, Any] = {
        "id": uuid.uuid4(),
        "kind": kind,
        "params": params or {},
        "expires_at": utc_now() + timedelta(seconds=30),
    }
    return dump_message(Command(**(fields | extra)))


def _acks(messages: list[Any]) -> list[Ack]:
    return [parse_message(Ack, m.payload) for m in messages if m.kind is OutKind.ACK]


def _status(messages: list[Any]) -> Status:
    return parse_message(Status, [m for m in messages if m.kind is OutKind.STATUS][-1].payload)


def _recording(session: str, start: datetime, minutes: float = 5) -> DesiredRecording:
    end = start + timedelta(minutes=minutes)
    return DesiredRecording(session_id=session, file_prefix="mouse", start_at=start, end_at=end)


def test_idle_status_from_the_template_equals_the_full_document(agent: SimulatedAgent) -> None:
    now = utc_now()
    fast = agent.status_message(now)
    assert json.loads(fast.payload) == json.loads(json.dumps(agent._status_document(now)))
    status = parse_message(Status, fast.payload)
    assert status.seq == 0
    assert status.boot_id == agent.boot_id
    assert status.system.hostname == EID
    assert fast.retain
    assert fast.topic == f"jaxmba/v1/enc/{EID}/status"


def test_seq_grows_and_a_new_boot_starts_again(agent: SimulatedAgent) -> None:
    seqs = [parse_message(Status, agent.status_message().payload).seq for _ in range(3)]
    assert seqs == [0, 1, 2]
    boot = agent.boot_id
    agent.new_boot()
    assert agent.boot_id != boot
    assert parse_message(Status, agent.status_message().payload).seq == 0


def test_state_messages_carry_boot_and_version(agent: SimulatedAgent) -> None:
    out = agent.state_message(Lifecycle.LOST)
    state = parse_message(EnclosureStateMessage, out.payload)
    assert (state.state, state.boot_id, state.agent_version) == (
        Lifecycle.LOST,
        agent.boot_id,
        "sim-test",
    )
    assert out.retain


def test_ping_succeeds_at_once(agent: SimulatedAgent) -> None:
    reaction = agent.on_command(_command(CommandKind.PING))
    acks = _acks(reaction.messages)
    assert [a.result for a in acks] == [AckResult.SUCCEEDED]  # as the real agent answers
    assert acks[0].data is not None
    assert acks[0].data["pong"] is True
    assert {m.topic for m in reaction.messages} == {f"jaxmba/v1/enc/{EID}/ack"}


def test_acks_go_to_the_response_topic_with_the_correlation_data(agent: SimulatedAgent) -> None:
    reaction = agent.on_command(
        _command(CommandKind.PING), response_topic="elsewhere/ack", correlation_data=b"abc"
    )
    assert {(m.topic, m.correlation_data) for m in reaction.messages} == {("elsewhere/ack", b"abc")}


def test_a_redelivered_command_is_answered_again_not_run_twice(agent: SimulatedAgent) -> None:
    params = {"session_id": "s-1", "file_prefix": "m", "duration_s": 60}
    payload = _command(CommandKind.START_RECORDING, params)
    first = agent.on_command(payload)
    assert [e.kind for e in first.messages].count(OutKind.EVENT) == 1
    again = agent.on_command(payload)
    assert [a.result for a in _acks(again.messages)] == [AckResult.SUCCEEDED]
    assert all(m.kind is OutKind.ACK for m in again.messages)


def test_expired_commands_are_not_run(agent: SimulatedAgent) -> None:
    params = {"session_id": "s-1", "file_prefix": "m", "duration_s": 60}
    late = _command(
        CommandKind.START_RECORDING, params, expires_at=utc_now() - timedelta(seconds=1)
    )
    acks = _acks(agent.on_command(late).messages)
    assert [a.result for a in acks] == [AckResult.EXPIRED]
    assert agent.recording is None


def test_unreadable_command_without_id_is_refused_silently(agent: SimulatedAgent) -> None:
    reaction = agent.on_command(b"{not json")
    assert reaction.messages == []
    assert reaction.invalid


def test_recording_commands_and_the_events_they_produce(agent: SimulatedAgent) -> None:
    params = {"session_id": "s-1", "file_prefix": "m", "duration_s": 60, "target_fps": 25}
    start = agent.on_command(_command(CommandKind.START_RECORDING, params))
    status = _status(start.messages)
    assert status.recording is not None
    assert status.recording.session_id == "s-1"
    assert status.camera.target_fps == 25
    same = agent.on_command(_command(CommandKind.START_RECORDING, params))
    assert _acks(same.messages)[-1].detail == "already recording; end time updated"
    stop = agent.on_command(_command(CommandKind.STOP_RECORDING))
    assert [a.result for a in _acks(stop.messages)] == [AckResult.ACCEPTED, AckResult.SUCCEEDED]
    events = [parse_message(Event, m.payload) for m in stop.messages if m.kind is OutKind.EVENT]
    assert [e.kind for e in events] == [EventKind.SEGMENT_CLOSED, EventKind.RECORDING_STOPPED]
    assert _status(stop.messages).recording is None


def test_frames_grow_while_recording(agent: SimulatedAgent) -> None:
    now = utc_now()
    agent.on_desired(dump_message(Desired(version=1, recording=_recording("s-1", now))), now)
    early = parse_message(Status, agent.status_message(now + timedelta(seconds=1)).payload)
    late = parse_message(Status, agent.status_message(now + timedelta(seconds=3)).payload)
    assert early.camera.frames_written == 30
    assert late.camera.frames_written == 90
    assert late.recording is not None
    assert late.recording.recorded_s == pytest.approx(3.0)


def test_desired_versions_only_grow(agent: SimulatedAgent) -> None:
    now = utc_now()
    agent.on_desired(dump_message(Desired(version=5, recording=_recording("s-1", now))), now)
    assert agent.recording is not None
    ignored = agent.on_desired(dump_message(Desired(version=4)), now)
    assert ignored.messages == []
    assert agent.recording is not None
    idle = agent.on_desired(dump_message(Desired(version=6)), now)
    assert agent.recording is None
    assert _status(idle.messages).recording is None


def test_a_cleared_desired_document_means_idle(agent: SimulatedAgent) -> None:
    now = utc_now()
    agent.on_desired(dump_message(Desired(version=1, recording=_recording("s-1", now))), now)
    agent.on_desired(b"", now)
    assert agent.recording is None


def test_future_recordings_start_and_end_on_time(agent: SimulatedAgent) -> None:
    now = utc_now()
    start = now + timedelta(seconds=10)
    agent.on_desired(dump_message(Desired(version=1, recording=_recording("s-2", start, 1))), now)
    assert agent.recording is None
    assert agent.next_deadline() == start
    begun = agent.tick(start)
    assert agent.recording is not None
    assert [m.kind for m in begun] == [OutKind.EVENT, OutKind.STATUS]
    assert agent.next_deadline() == start + timedelta(minutes=1)
    ended = agent.tick(start + timedelta(minutes=1))
    assert agent.recording is None
    kinds = [parse_message(Event, m.payload).kind for m in ended if m.kind is OutKind.EVENT]
    assert kinds == [EventKind.SEGMENT_CLOSED, EventKind.RECORDING_STOPPED]


def test_desired_wins_over_a_command_recording_of_another_session(agent: SimulatedAgent) -> None:
    params = {"session_id": "manual", "file_prefix": "m", "duration_s": 600}
    agent.on_command(_command(CommandKind.START_RECORDING, params))
    now = utc_now()
    agent.on_desired(dump_message(Desired(version=1, recording=_recording("s-3", now))), now)
    assert agent.recording is not None
    assert agent.recording.session_id == "s-3"


def test_set_config_and_restart(agent: SimulatedAgent) -> None:
    reaction = agent.on_command(_command(CommandKind.SET_CONFIG, {"status_interval_s": 2}))
    assert agent.status_interval_s == 2
    assert _acks(reaction.messages)[-1].result is AckResult.SUCCEEDED
    restart = agent.on_command(_command(CommandKind.RESTART_AGENT))
    assert restart.restart


def test_live_view_is_reported(agent: SimulatedAgent) -> None:
    reaction = agent.on_command(_command(CommandKind.START_LIVE_VIEW, {"duration_s": 30}))
    assert _status(reaction.messages).live_view.active is True
    reaction = agent.on_command(_command(CommandKind.STOP_LIVE_VIEW))
    assert _status(reaction.messages).live_view.active is False


def test_paho_still_has_what_the_fast_puback_path_needs() -> None:
    assert FAST_PUBACK, "paho changed: SimClient falls back to paho's slow PUBACK decoding"
