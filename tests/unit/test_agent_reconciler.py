"""The reconciler: desired versions, command overrides, what is wanted when."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from enclosure_agent.reconciler import (
    Intent,
    IntentSource,
    Reconciler,
    StopReason,
    clock_doubt,
    plan_from_command,
)
from schemas.commands import StartRecordingParams
from schemas.messages import Desired, DesiredRecording

T0 = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)


def recording(session: str = "s1", start: float = 0, end: float = 60) -> DesiredRecording:
    return DesiredRecording(
        session_id=session,
        file_prefix="p",
        start_at=T0 + timedelta(seconds=start),
        end_at=T0 + timedelta(seconds=end),
    )


def test_newer_versions_apply_older_and_equal_do_not() -> None:
    r = Reconciler()
    assert r.offer(Desired(version=3, recording=recording()))
    assert r.intent.source is IntentSource.DESIRED
    assert not r.offer(Desired(version=2, recording=None))
    assert not r.offer(Desired(version=3, recording=None))
    assert r.intent.recording is not None
    assert r.offer(Desired(version=4, recording=None))
    assert r.intent.recording is None


def test_a_command_overrides_until_a_newer_desired() -> None:
    r = Reconciler()
    r.offer(Desired(version=1, recording=recording()))
    r.stop()
    assert r.intent.recording is None
    assert r.intent.source is IntentSource.COMMAND
    assert not r.offer(Desired(version=1, recording=recording()))  # the retained copy again
    assert r.offer(Desired(version=2, recording=None))


def test_wanted_between_start_and_end() -> None:
    intent = Intent(recording=recording(start=10, end=20))
    assert intent.wanted_recording(T0) is None
    assert intent.wanted_recording(T0 + timedelta(seconds=10)) is not None
    assert intent.wanted_recording(T0 + timedelta(seconds=20)) is None
    assert intent.next_change(T0) == T0 + timedelta(seconds=10)
    assert intent.next_change(T0 + timedelta(seconds=15)) == T0 + timedelta(seconds=20)
    assert intent.next_change(T0 + timedelta(seconds=25)) is None


def test_live_view_until() -> None:
    intent = Intent(live_view_until=T0 + timedelta(seconds=5))
    assert intent.live_view_active(T0)
    assert not intent.live_view_active(T0 + timedelta(seconds=5))
    assert intent.next_change(T0) == T0 + timedelta(seconds=5)


def test_stop_reasons() -> None:
    r = Reconciler()
    r.offer(Desired(version=1, recording=recording(end=60)))
    assert r.stop_reason("s1", T0 + timedelta(seconds=60)) is StopReason.END_REACHED
    r.offer(Desired(version=2, recording=recording("s2")))
    assert r.stop_reason("s1", T0) is StopReason.REPLACED
    r.offer(Desired(version=3, recording=None))
    assert r.stop_reason("s2", T0) is StopReason.DESIRED
    r.stop()
    assert r.stop_reason("s2", T0) is StopReason.COMMAND


def test_plan_from_command() -> None:
    params = StartRecordingParams(
        session_id="s9", file_prefix="cage1", duration_s=90, target_fps=15, segment_minutes=5
    )
    plan = plan_from_command(params, T0)
    assert plan.start_at == T0
    assert plan.end_at == T0 + timedelta(seconds=90)
    assert (plan.target_fps, plan.segment_minutes) == (15, 5)


def test_intent_round_trips_as_json() -> None:
    intent = Intent(
        recording=recording(), live_view_until=T0, version=4, source=IntentSource.COMMAND
    )
    assert Intent.model_validate_json(intent.model_dump_json()) == intent


def test_clock_doubt_names_the_clock_when_it_disagrees_with_the_service() -> None:
    r = Reconciler()
    r.offer(Desired(version=1, recording=recording(end=120), at=T0 + timedelta(seconds=1)))
    assert r.intent.published_at == T0 + timedelta(seconds=1)
    assert clock_doubt(r.intent, T0 + timedelta(seconds=30)) is None  # the clocks agree
    ahead = clock_doubt(r.intent, T0 + timedelta(minutes=10))
    assert ahead is not None
    assert "s1" in ahead
    assert "by this enclosure's clock" in ahead
    assert "is over" in ahead
    behind = clock_doubt(r.intent, T0 - timedelta(minutes=10))
    assert behind is not None
    assert "not open yet" in behind


def test_no_clock_doubt_for_a_window_the_service_published_outside() -> None:
    r = Reconciler()
    # published after its end (a retained copy of a finished session): nothing to doubt
    r.offer(Desired(version=1, recording=recording(end=60), at=T0 + timedelta(seconds=90)))
    assert clock_doubt(r.intent, T0 + timedelta(minutes=10)) is None
    r.start(recording("s2"))  # a command's plan is in the agent's own time
    assert clock_doubt(r.intent, T0 + timedelta(minutes=10)) is None
    assert clock_doubt(Intent(), T0) is None
