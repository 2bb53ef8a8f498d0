"""What an agent's event does to its enclosure's part in a session (the domain's rules)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from controlsvc.domain.session_reactions import (
    END_TOLERANCE_S,
    RECOVERED_BY_FRAMES,
    Gap,
    react,
)
from controlsvc.domain.session_state import EncState, Signal
from schemas.enums import EventKind
from schemas.events import EVENT_PAYLOADS

END = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
SHA = "0" * 64


def _react(kind: EventKind, data: dict[str, object], *, at: datetime, end: datetime | None = END):
    payload = EVENT_PAYLOADS[kind].model_validate(data)
    return react(kind, payload, data, at=at, end_at=end)


def test_frames_flowing_close_the_frame_alerts_when_they_move_the_enclosure() -> None:
    reaction = _react(EventKind.RECORDING_STARTED, {}, at=END - timedelta(hours=1))
    assert reaction is not None
    assert (reaction.signal, reaction.ended, reaction.gap) == (Signal.FRAMES, False, None)
    assert reaction.on_change is not None
    assert reaction.on_change.recover == RECOVERED_BY_FRAMES
    assert reaction.on_change.raise_kind is None


def test_a_resume_records_the_gap_the_agent_was_away() -> None:
    start, stop = END - timedelta(minutes=10), END - timedelta(minutes=9)
    data = {"gap_started_at": start, "gap_ended_at": stop, "gap_s": 60.0}
    reaction = _react(EventKind.RECORDING_RESUMED, data, at=stop)
    assert reaction is not None
    assert reaction.gap == Gap("agent_restart", start, stop, 60.0)


def test_a_closed_segment_is_counted_and_reported() -> None:
    data = {
        "path": "s1/p.mkv",
        "session_id": "s1",
        "started_at": END - timedelta(minutes=2),
        "ended_at": END - timedelta(minutes=1),
        "frames": 10,
        "bytes": 100,
        "sha256": SHA,
    }
    reaction = _react(EventKind.SEGMENT_CLOSED, data, at=END - timedelta(minutes=1))
    assert reaction is not None
    assert (reaction.signal, reaction.segment, reaction.progress) == (Signal.FRAMES, True, True)


@pytest.mark.parametrize(
    ("before_end_s", "reason", "ended"),
    [
        (0, None, True),
        (END_TOLERANCE_S - 0.5, None, True),  # clocks differ a little
        (END_TOLERANCE_S + 5, None, False),  # early: a failure
        (3600, "end reached", True),  # the agent's own word
        (3600, "disk full", False),
    ],
)
def test_a_stop_completes_only_at_the_end(
    before_end_s: float, reason: str | None, ended: bool
) -> None:
    at = END - timedelta(seconds=before_end_s)
    reaction = _react(EventKind.RECORDING_STOPPED, {"reason": reason}, at=at)
    assert reaction is not None
    assert (reaction.signal, reaction.ended, reaction.reason) == (Signal.STOPPED, ended, reason)
    assert (reaction.stopped_at, reaction.clear_live) == (at, True)
    change = reaction.on_change
    assert change is not None
    assert (change.raise_kind, change.only_if) == ("recording_failed", EncState.FAILED)
    assert change.words is not None
    sentence = change.words("Cage 7 (enc-a)", "Night run", "s1")
    assert sentence == (
        f"Cage 7 (enc-a) stopped recording session “Night run” early: {reason or '?'}"
    )


def test_a_failure_raises_an_alert_with_the_agents_reason() -> None:
    reaction = _react(EventKind.RECORDING_FAILED, {"reason": "camera gone"}, at=END)
    assert reaction is not None
    assert (reaction.signal, reaction.reason, reaction.clear_live) == (
        Signal.FAILED,
        "camera gone",
        True,
    )
    assert reaction.on_change is not None
    assert reaction.on_change.only_if is None
    assert reaction.on_change.words is not None
    assert "could not record session s1: camera gone" in reaction.on_change.words(
        "enc-a", None, "s1"
    )


def test_enclosure_events_raise_and_close_alerts_without_a_signal() -> None:
    stalled = _react(EventKind.CAMERA_STALLED, {"source": "cam0"}, at=END, end=None)
    assert stalled is not None
    assert stalled.signal is None
    assert stalled.at_once is not None
    assert stalled.at_once.raise_kind == "camera_stalled"
    low = _react(EventKind.DISK_LOW, {"free_bytes": 1024, "reserve_bytes": 2048}, at=END, end=None)
    assert low is not None
    assert low.at_once is not None
    assert low.at_once.words is not None
    assert "(1.0 KiB free)" in low.at_once.words("enc-a", None, "s1")
    recovered = _react(
        EventKind.CAMERA_RECOVERED, {"source": "cam0", "stalled_s": 30.0}, at=END, end=None
    )
    assert recovered is not None
    assert recovered.at_once is not None
    assert recovered.at_once.recover == ("camera_stalled",)
    assert recovered.gap == Gap("camera_stalled", END - timedelta(seconds=30), END, 30.0)


def test_other_events_change_nothing_in_sessions() -> None:
    assert _react(EventKind.CLOCK_SKEW, {"offset_s": 600.0}, at=END, end=None) is None
