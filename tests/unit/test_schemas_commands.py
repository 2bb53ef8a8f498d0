from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from schemas import (
    COMMAND_PARAMS,
    AckResult,
    Command,
    CommandKind,
    CommandState,
    EmptyParams,
    MessageError,
    SessionEnclosureStatus,
    SessionStatus,
    SetConfigParams,
    StartLiveViewParams,
    StartRecordingParams,
    command_id_of,
    dump_message,
    parse_message,
    parse_params,
)
from tests.unit.schemas_samples import T0

GOOD_START = {"session_id": "s-1", "file_prefix": "mouse_A", "duration_s": 3600}
S = GOOD_START
MONTH = 31 * 86400


def test_every_kind_has_a_params_model():
    assert set(COMMAND_PARAMS) == set(CommandKind)
    for model in COMMAND_PARAMS.values():
        assert issubclass(model, BaseModel)
        assert model.model_config.get("extra") == "forbid"


@pytest.mark.parametrize(
    ("kind", "params"),
    [
        ("ping", {}),
        ("rebirth", {}),
        ("start_recording", GOOD_START),
        (
            "start_recording",
            {**GOOD_START, "target_fps": 60, "segment_minutes": 10, "apply_filter": True},
        ),
        ("start_recording", {**S, "fragment_hourly": True}),
        ("stop_recording", {}),
        ("start_live_view", {}),
        ("start_live_view", {"duration_s": 120}),
        ("stop_live_view", {}),
        ("snapshot", {}),
        ("set_config", {"status_interval_s": 2, "log_level": "DEBUG"}),
        ("restart_agent", {}),
    ],
)
def test_good_params(kind, params):
    parsed = parse_params(CommandKind(kind), params)
    assert isinstance(parsed, COMMAND_PARAMS[CommandKind(kind)])


def test_start_recording_defaults():
    params = StartRecordingParams.model_validate(GOOD_START)
    assert params.target_fps is None
    assert params.fragment_hourly is False
    assert params.segment_minutes is None
    assert params.apply_filter is False
    assert StartLiveViewParams().duration_s == 30


@pytest.mark.parametrize(
    ("kind", "params", "reason"),
    [
        ("ping", {"x": 1}, "params.x: Extra inputs are not permitted"),
        ("start_recording", {}, "params.session_id: Field required"),
        (
            "start_recording",
            {**GOOD_START, "file_prefix": ""},
            "file_prefix: '' is not",
        ),
        ("start_recording", {**S, "file_prefix": "a b"}, "params.file_prefix"),
        ("start_recording", {**S, "file_prefix": "../x"}, "params.file_prefix"),
        (
            "start_recording",
            {**GOOD_START, "duration_s": 0},
            "duration_s: Input should be greater",
        ),
        (
            "start_recording",
            {**GOOD_START, "duration_s": 31 * 86400 + 1},
            "params.duration_s: Input should be less than",
        ),
        ("start_recording", {**S, "target_fps": 0}, "params.target_fps"),
        ("start_recording", {**S, "target_fps": 121}, "params.target_fps"),
        (
            "start_recording",
            {**GOOD_START, "fragment_hourly": True, "segment_minutes": 5},
            "params: choose either",
        ),
        ("start_recording", {**S, "duration_s": "NaN"}, "params.duration_s"),
        ("start_live_view", {"duration_s": -1}, "params.duration_s"),
        ("set_config", {}, "params: set_config needs at least one setting"),
        ("set_config", {"camera": "x"}, "params.camera: Extra inputs are not permitted"),
        ("set_config", {"log_level": "LOUD"}, "params.log_level"),
    ],
)
def test_bad_params_give_a_clear_reason(kind, params, reason):
    with pytest.raises(MessageError) as info:
        parse_params(CommandKind(kind), params)
    assert reason in str(info.value)


def test_set_config_changes():
    assert SetConfigParams(crf=18).changes() == {"crf": 18}


def test_empty_params():
    assert EmptyParams().model_dump() == {}


def test_command_typed_params():
    command = Command(id=uuid.uuid4(), kind="start_recording", params=GOOD_START, expires_at=T0)
    params = command.typed_params()
    assert isinstance(params, StartRecordingParams)
    assert params.duration_s == 3600
    bad = command.model_copy(update={"params": {"session_id": "s"}})
    with pytest.raises(MessageError, match="params.file_prefix: Field required"):
        bad.typed_params()


def test_command_with_an_unknown_kind_is_refused_but_its_id_can_be_read():
    command_id = uuid.uuid4()
    payload = json.dumps(
        {"id": str(command_id), "kind": "self_destruct", "expires_at": "2030-01-01T00:00:00Z"}
    ).encode()
    with pytest.raises(MessageError, match="cmd.kind"):
        parse_message(Command, payload)
    assert command_id_of(payload) == command_id


@pytest.mark.parametrize(
    "payload",
    [b"", b"[]", b'{"id": 5}', b'{"id": "x"}', b"\xff", b'{"kind": "ping"}', b"[" * 100000],
)
def test_command_id_of_garbage_is_none(payload):
    assert command_id_of(payload) is None


def test_command_json_carries_the_mqtt5_fields():
    command = Command(
        id=uuid.UUID(int=9),
        kind="ping",
        expires_at=T0 + timedelta(seconds=30),
        response_topic="jaxmba/v1/enc/e1/ack",
        correlation_data=str(uuid.UUID(int=9)),
    )
    document = json.loads(dump_message(command))
    assert document["id"] == str(uuid.UUID(int=9))
    assert document["expires_at"] == "2024-03-31T01:00:28Z"
    assert document["response_topic"] == "jaxmba/v1/enc/e1/ack"
    assert document["params"] == {}


def test_command_states():
    terminal = {s for s in CommandState if s.is_terminal}
    assert terminal == {"rejected", "succeeded", "failed", "expired", "timed_out"}
    for result in AckResult:
        assert result.command_state.value == result.value
        assert result.is_final is (result is not AckResult.ACCEPTED)
    assert {s for s in SessionStatus if s.is_terminal} == {
        "completed",
        "completed_with_failures",
        "canceled",
    }
    assert {s for s in SessionEnclosureStatus if not s.is_terminal} == {
        "pending",
        "starting",
        "recording",
    }


@given(
    duration=st.floats(min_value=0.001, max_value=31 * 86400),
    fps=st.none() | st.integers(min_value=1, max_value=120),
    minutes=st.none() | st.integers(min_value=1, max_value=1440),
)
def test_start_recording_params_property(duration, fps, minutes):
    params = {**GOOD_START, "duration_s": duration, "target_fps": fps, "segment_minutes": minutes}
    parsed = parse_params(CommandKind.START_RECORDING, params)
    assert StartRecordingParams.model_validate(parsed.model_dump()) == parsed


def test_params_models_are_strict_about_types():
    with pytest.raises(ValidationError):
        StartRecordingParams.model_validate({**GOOD_START, "fragment_hourly": "maybe"})
