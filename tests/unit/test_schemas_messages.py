from __future__ import annotations

import contextlib
import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas import (
    CHANNEL_MODELS,
    EVENT_PAYLOADS,
    MAX_PAYLOAD_BYTES,
    Ack,
    Channel,
    ClockSkew,
    Command,
    Desired,
    DesiredRecording,
    DiskLow,
    EnclosureStateMessage,
    Event,
    EventKind,
    MessageError,
    RecordingFailed,
    RecordingResumed,
    SegmentClosed,
    ServiceState,
    Status,
    WireMessage,
    dump_message,
    event_payload,
    parse_message,
)
from tests.unit.schemas_samples import T0, all_messages, status

MESSAGES = all_messages()


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_every_message_round_trips(message):
    payload = dump_message(message)
    assert isinstance(payload, bytes)
    assert b"\n" not in payload
    assert b": " not in payload  # compact
    assert parse_message(type(message), payload) == message


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_unknown_fields_are_ignored(message):
    document = json.loads(dump_message(message))
    document["from_the_future"] = {"x": 1}
    parsed = parse_message(type(message), json.dumps(document).encode())
    assert parsed == message


def test_nested_unknown_fields_are_ignored():
    document = json.loads(dump_message(status()))
    document["camera"]["exposure_us"] = 800
    assert parse_message(Status, json.dumps(document).encode()) == status()


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_every_message_carries_version_and_utc_time(message):
    document = json.loads(dump_message(message))
    assert document["v"] == 1
    assert document["at"].endswith("Z")
    assert datetime.fromisoformat(document["at"]) == T0


def test_times_with_an_offset_are_converted_to_utc():
    payload = json.dumps({"online": True, "version": "1", "at": "2024-03-31T02:59:58+02:00"})
    message = parse_message(ServiceState, payload.encode())
    assert message.at == T0
    assert message.at.tzinfo is UTC


def test_naive_times_are_refused():
    payload = b'{"online": true, "version": "1", "at": "2024-03-31T00:59:58"}'
    with pytest.raises(MessageError, match=r"service_state\.at: Input should have timezone info"):
        parse_message(ServiceState, payload)


def test_default_time_is_now_in_utc():
    before = datetime.now(UTC)
    message = ServiceState(online=True, version="1")
    assert before <= message.at <= datetime.now(UTC)
    assert message.v == 1


def test_messages_are_frozen():
    with pytest.raises(ValidationError):
        status().seq = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d: d.update(seq=-1), "status.seq: Input should be greater than or equal to 0"),
        (lambda d: d.pop("boot_id"), "status.boot_id: Field required"),
        (lambda d: d.update(seq="many"), "status.seq: Input should be a valid integer"),
        (lambda d: d["camera"].pop("connected"), "status.camera.connected: Field required"),
        (
            lambda d: d["system"].update(disk_free_bytes=-5),
            "status.system.disk_free_bytes: Input should be greater than or equal to 0",
        ),
        (lambda d: d.update(v=0), "status.v: Input should be greater than or equal to 1"),
        (lambda d: d.update(at="yesterday"), "status.at: Input should be a valid datetime"),
        (
            lambda d: d["recording"].update(session_id="../etc"),
            "status.recording.session_id: '../etc' is not valid",
        ),
    ],
)
def test_schema_failures_name_the_field(mutate, reason):
    document = json.loads(dump_message(status()))
    mutate(document)
    with pytest.raises(MessageError) as info:
        parse_message(Status, json.dumps(document).encode())
    assert reason in str(info.value)
    assert info.value.category == "schema"
    assert info.value.errors


def test_non_object_payload_is_refused():
    with pytest.raises(MessageError, match="status: Input should be an object") as info:
        parse_message(Status, b"[1, 2]")
    assert info.value.category == "schema"


@pytest.mark.parametrize("payload", [b"", b"{", b"not json", b'{"seq": 1,}', b"\x00"])
def test_invalid_json_is_refused(payload):
    with pytest.raises(MessageError, match="status: Invalid JSON") as info:
        parse_message(Status, payload)
    assert info.value.category == "invalid_json"


def test_non_utf8_is_refused():
    with pytest.raises(MessageError, match="not UTF-8") as info:
        parse_message(Status, b'{"boot_id": "\xff\xfe"}')
    assert info.value.category == "not_utf8"


def test_oversized_payload_is_refused_unread():
    payload = b" " * (MAX_PAYLOAD_BYTES + 1)
    with pytest.raises(MessageError, match="over the 262144 byte limit") as info:
        parse_message(Status, payload)
    assert info.value.category == "too_large"
    assert MAX_PAYLOAD_BYTES == 256 * 1024


def test_payload_at_the_limit_is_read():
    document = json.loads(dump_message(status()))
    document["padding"] = ""
    size = len(json.dumps(document).encode())
    document["padding"] = "x" * (MAX_PAYLOAD_BYTES - size)
    payload = json.dumps(document).encode()
    assert len(payload) == MAX_PAYLOAD_BYTES
    assert parse_message(Status, payload) == status()


def test_dump_refuses_oversized_messages():
    ack = Ack(
        command_id=MESSAGES[5].command_id,
        result="succeeded",
        data={"jpeg_base64": "x" * MAX_PAYLOAD_BYTES},
    )
    with pytest.raises(MessageError, match="byte limit"):
        dump_message(ack)


def test_message_error_is_a_value_error():
    assert issubclass(MessageError, ValueError)


def test_every_json_channel_has_a_model():
    assert set(CHANNEL_MODELS) == set(Channel) - {Channel.PREVIEW}
    for message in MESSAGES:
        assert isinstance(message, WireMessage)


def test_lifecycle_will_payload():
    will = EnclosureStateMessage(state="lost", boot_id="b", agent_version="1")
    assert parse_message(EnclosureStateMessage, dump_message(will)).state == "lost"
    with pytest.raises(MessageError, match="state.state: Input should be 'init'"):
        parse_message(
            EnclosureStateMessage, b'{"state": "zombie", "boot_id": "b", "agent_version": "1"}'
        )


# -- desired --------------------------------------------------------------------------------------


def _recording(**changes):
    base = {
        "session_id": "s-1",
        "file_prefix": "mouse",
        "start_at": T0,
        "end_at": T0 + timedelta(hours=1),
    }
    base.update(changes)
    return DesiredRecording.model_validate(base)


def test_desired_recording_defaults():
    recording = _recording()
    assert recording.target_fps is None
    assert not recording.fragment_hourly
    assert recording.segment_minutes is None
    assert not recording.apply_filter


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"end_at": T0}, "end_at must be after start_at"),
        ({"end_at": T0 - timedelta(seconds=1)}, "end_at must be after start_at"),
        (
            {"fragment_hourly": True, "segment_minutes": 10},
            "either fragment_hourly or segment_minutes",
        ),
        ({"target_fps": 0}, "greater than or equal to 1"),
        ({"target_fps": 121}, "less than or equal to 120"),
        ({"segment_minutes": 0}, "greater than or equal to 1"),
        ({"segment_minutes": 1441}, "less than or equal to 1440"),
        ({"file_prefix": ""}, "is not valid"),
        ({"file_prefix": "a/b"}, "is not valid"),
    ],
)
def test_desired_recording_validators(changes, reason):
    with pytest.raises(ValidationError, match=reason):
        _recording(**changes)


def test_desired_validator_errors_through_parse_message():
    document = json.loads(dump_message(MESSAGES[3]))
    document["recording"]["end_at"] = document["recording"]["start_at"]
    with pytest.raises(MessageError, match="desired.recording: end_at must be after start_at"):
        parse_message(Desired, json.dumps(document).encode())


def test_desired_version_never_negative():
    with pytest.raises(ValidationError, match="greater than or equal to 0"):
        Desired(version=-1)
    assert Desired(version=0).recording is None


# -- events ---------------------------------------------------------------------------------------


def test_event_payload_is_typed():
    event = parse_message(Event, dump_message(MESSAGES[6]))
    payload = event_payload(event)
    assert isinstance(payload, SegmentClosed)
    assert payload.frames == 108_000
    assert event.session_id == "s-1"
    assert event.kind is EventKind.SEGMENT_CLOSED


def test_every_event_kind_has_a_payload_model():
    assert set(EVENT_PAYLOADS) == set(EventKind)
    for kind, model in EVENT_PAYLOADS.items():
        assert model.kind is kind


@pytest.mark.parametrize(
    "payload",
    [
        RecordingFailed(reason="camera gone"),
        RecordingResumed(gap_started_at=T0, gap_ended_at=T0 + timedelta(seconds=3), gap_s=3),
        DiskLow(free_bytes=10, reserve_bytes=100),
        ClockSkew(offset_s=-2.5, threshold_s=1),
    ],
    ids=lambda p: p.kind.value,
)
def test_event_of_round_trips(payload):
    session_id = "s-1" if payload.kind.value.startswith("recording") else None
    event = Event.of(payload, session_id=session_id)
    parsed = parse_message(Event, dump_message(event))
    assert parsed.kind is payload.kind
    assert event_payload(parsed) == payload
    assert parsed.event_id == event.event_id


def test_event_ids_are_new_each_time_unless_given():
    payload = DiskLow(free_bytes=1, reserve_bytes=2)
    assert Event.of(payload).event_id != Event.of(payload).event_id
    assert Event.of(payload, event_id="fixed").event_id == "fixed"


def test_event_data_errors_name_the_data_field():
    document = json.loads(dump_message(MESSAGES[6]))
    document["data"]["frames"] = -1
    document["data"].pop("sha256")
    with pytest.raises(MessageError) as info:
        parse_message(Event, json.dumps(document).encode())
    assert dict(info.value.errors) == {
        "event.data.frames": "Input should be greater than or equal to 0",
        "event.data.sha256": "Field required",
    }


def test_recording_events_need_a_session():
    with pytest.raises(ValidationError, match="recording_failed event needs a session_id"):
        Event(kind="recording_failed", data={"reason": "x"})


def test_unknown_event_kind_is_refused():
    with pytest.raises(MessageError, match="event.kind: Input should be"):
        parse_message(Event, b'{"event_id": "e", "kind": "exploded"}')


# -- commands -------------------------------------------------------------------------------------


def test_command_expiry():
    command = MESSAGES[4]
    assert isinstance(command, Command)
    assert not command.is_expired(T0)
    assert command.is_expired(T0 + timedelta(seconds=31))
    assert command.is_expired()  # T0 is long past


# -- properties ---------------------------------------------------------------------------------


@given(
    seq=st.integers(min_value=0, max_value=2**53),
    fps=st.none() | st.floats(min_value=0, max_value=1000),
    # NUL characters are refused on the wire (test_schemas_values.py).
    error=st.none() | st.text(st.characters(exclude_characters="\x00"), max_size=200),
)
@example(seq=0, fps=None, error="\ud800")  # found by hypothesis: no UTF-8 form
def test_status_round_trip_property(seq, fps, error):
    base = status()
    message = base.model_copy(
        update={
            "seq": seq,
            "camera": base.camera.model_copy(update={"measured_fps": fps}),
        }
    )
    # As a sender builds it: validated (model_copy alone would skip the reason's validator).
    message = Status.model_validate({**message.model_dump(), "last_error": error})
    # A lone surrogate (from a file name decoded with surrogateescape, say) cannot be UTF-8:
    # human text keeps the rest of the sentence with U+FFFD in its place.
    expected = message.model_copy(
        update={"last_error": None if error is None else _SURROGATE.sub("\ufffd", error)}
    )
    assert parse_message(Status, dump_message(message)) == expected


_SURROGATE = re.compile("[\ud800-\udfff]")


def test_lone_surrogate_in_a_reason_is_replaced_not_fatal():
    message = Status.model_validate(
        {**status().model_dump(), "last_error": "open /data/\udcff.mp4 failed"}
    )
    assert Status.model_validate(
        {**status().model_dump(), "last_error": "x\ud800y"}
    ).last_error == ("x\ufffdy")
    assert parse_message(Status, dump_message(message)).last_error == "open /data/\ufffd.mp4 failed"


def test_a_message_that_cannot_be_utf8_is_a_message_error():
    # Text fields other than reasons are not rewritten: the sender gets a MessageError naming
    # the problem instead of a serialisation error from deep inside pydantic.
    message = status().model_copy(update={"boot_id": "b\udcff"})
    with pytest.raises(MessageError) as caught:
        dump_message(message)
    assert caught.value.category == "not_utf8"
    assert "surrogate" in str(caught.value)


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_escape_as_another_error(payload):
    for model in CHANNEL_MODELS.values():
        with contextlib.suppress(MessageError):
            parse_message(model, payload)


@pytest.mark.parametrize("interval", [1e-9, 0.0, -5.0, 1e9])
def test_status_interval_is_bounded(interval):
    """A tiny interval would make liveness flap (lost between two statuses)."""
    samples = (
        EnclosureStateMessage(state="lost", boot_id="b", agent_version="1"),
        ServiceState(online=True, version="1"),
    )
    for sample in samples:
        document = json.loads(dump_message(sample))
        document["status_interval_s"] = interval
        with pytest.raises(MessageError) as info:
            parse_message(type(sample), json.dumps(document).encode())
        assert f"{sample.label}.status_interval_s: Input should be" in str(info.value)
