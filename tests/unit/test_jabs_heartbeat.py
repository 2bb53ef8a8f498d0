"""The original server's heartbeat decision order (jabs-compat.md §3), as ``decide`` keeps it."""

from __future__ import annotations

import pytest

from controlsvc.compat.jabs.heartbeat import (
    LEFT_MESSAGE,
    Assignment,
    Decision,
    DeviceCommand,
    Outcome,
    Report,
    decide,
)
from controlsvc.compat.jabs.shapes import parse_device_time
from controlsvc.domain.session_state import EncState

S, OTHER = "20261203-100000-aaaaaa", "20261203-090000-bbbbbb"
START, STOP, COMPLETE, STREAM = (
    DeviceCommand.START,
    DeviceCommand.STOP,
    DeviceCommand.COMPLETE,
    DeviceCommand.STREAM,
)


def idle() -> Report:
    return Report(named=False, session_id=None, recording=False)


def rec(sid: str | None = S) -> Report:
    return Report(named=True, session_id=sid, recording=True)


def stopped(sid: str | None = S, err: str | None = None) -> Report:
    return Report(named=True, session_id=sid, recording=False, err_msg=err)


def part(state: EncState, due: bool = True, sid: str = S) -> Assignment:
    return Assignment(sid, state, due)


@pytest.mark.parametrize(
    ("report", "assignment", "reported", "stream", "expected"),
    [
        # 1. not assigned: nothing to do
        (idle(), None, None, False, Decision(None)),
        # 2. no session in the heartbeat
        (idle(), part(EncState.STARTING), None, False, Decision(START)),
        (idle(), part(EncState.PENDING, due=False), None, False, Decision(None)),
        (idle(), part(EncState.TIMED_OUT), None, False, Decision(START)),
        (
            idle(),
            part(EncState.RECORDING),
            None,
            False,
            Decision(None, Outcome.LEFT, S, LEFT_MESSAGE),
        ),
        # 3. another session than assigned: STOP while recording ...
        (rec(OTHER), part(EncState.STARTING), EncState.CANCELED, False, Decision(STOP)),
        (rec(S), None, EncState.CANCELED, False, Decision(STOP)),
        (rec(None), None, None, False, Decision(STOP)),  # a session id we do not know
        # ... then its outcome and COMPLETE
        (
            stopped(OTHER),
            part(EncState.STARTING),
            EncState.CANCELED,
            False,
            Decision(COMPLETE, Outcome.STOPPED, OTHER),
        ),
        (stopped(None), None, None, False, Decision(COMPLETE)),
        # 4. stopped: FAILED with err_msg, else stopped; COMPLETE either way
        (
            stopped(err="camera gone"),
            part(EncState.RECORDING),
            EncState.RECORDING,
            False,
            Decision(COMPLETE, Outcome.FAILED, S, "camera gone"),
        ),
        (
            stopped(),
            part(EncState.RECORDING),
            EncState.RECORDING,
            False,
            Decision(COMPLETE, Outcome.STOPPED, S),
        ),
        # 5. recording: a finished part stops; an unconfirmed one is started; STREAM if asked
        (rec(), part(EncState.CANCELED), EncState.CANCELED, True, Decision(STOP)),
        (
            rec(),
            part(EncState.STARTING),
            EncState.STARTING,
            False,
            Decision(None, Outcome.STARTED, S),
        ),
        (rec(), part(EncState.RECORDING), EncState.RECORDING, False, Decision(None)),
        (rec(), part(EncState.RECORDING), EncState.RECORDING, True, Decision(STREAM)),
    ],
)
def test_decision_order(report, assignment, reported, stream, expected) -> None:
    assert decide(report, assignment, reported, stream_wanted=stream) == expected


def test_a_recording_device_never_asked_to_stream_gets_nothing() -> None:
    """The original answered 500 here (a null last_stream_request)."""
    decision = decide(rec(), part(EncState.RECORDING), EncState.RECORDING, stream_wanted=False)
    assert decision.command is None


@pytest.mark.parametrize(
    ("text", "micro"),
    [
        ("2026-12-03T10:11:12.1234567Z", 123456),
        ("2026-12-03T10:11:12Z", 0),
        ("2026-12-03T10:11:12.5Z", 500000),
        ("2026-12-03T10:11:12.1234567+01:00", 123456),
    ],
)
def test_device_timestamps(text: str, micro: int) -> None:
    parsed = parse_device_time(text)
    assert parsed.microsecond == micro
    assert parsed.utcoffset() is not None
    assert parsed.utcoffset().total_seconds() == 0


@pytest.mark.parametrize("text", ["2026-12-03T10:11:12", "yesterday", ""])
def test_bad_device_timestamps(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message is the parser's
        parse_device_time(text)
