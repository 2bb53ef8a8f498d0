"""Health figures, clock skew detection, the journal and the event loop."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from enclosure_agent import journal as journal_module
from enclosure_agent.health import (
    OFFSET_SAMPLES,
    ClockMonitor,
    disk_space,
    ntp_synchronized,
    system_status,
)
from enclosure_agent.journal import Journal, RecordingMark
from enclosure_agent.loop import EventLoop
from enclosure_agent.reconciler import Intent, IntentSource
from enclosure_agent.recovery import last_frame_time
from schemas.enums import AckResult

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_system_status_of_a_missing_recording_root(tmp_path: Path) -> None:
    status = system_status(tmp_path / "not" / "yet")
    assert status.disk_total_bytes >= status.disk_free_bytes > 0
    assert status.ram_total_bytes >= status.ram_free_bytes > 0
    assert status.uptime_s > 0
    assert status.hostname
    assert abs(disk_space(tmp_path).free_bytes - status.disk_free_bytes) < 1024**3


def test_ntp_answer_is_a_bool_or_unknown() -> None:
    assert ntp_synchronized(fresh=True) in (True, False, None)


def test_clock_skew_is_reported_once_per_excursion() -> None:
    clock = ClockMonitor(threshold_s=2.0)
    assert clock.offset_s is None
    assert clock.sample(T0, T0 + timedelta(seconds=0.1)) is None
    # a larger offset is believed once no less delayed sample is left in the window
    reported = [clock.sample(T0, T0 + timedelta(seconds=5)) for _ in range(OFFSET_SAMPLES)]
    assert reported == [None] * (OFFSET_SAMPLES - 1) + [5.0]
    assert clock.skewed
    assert clock.sample(T0, T0 + timedelta(seconds=0.2)) is None
    assert not clock.skewed
    assert clock.offset_s == 0.2
    later = [clock.sample(T0, T0 - timedelta(seconds=4)) for _ in range(9)]
    assert [r for r in later if r is not None] == [-4.0]


def test_a_sample_delivered_late_does_not_change_the_offset() -> None:
    """Queued while the agent was away, or held by a stalled link: only the delay grows."""
    clock = ClockMonitor(threshold_s=2.0)
    clock.sample(T0, T0 + timedelta(seconds=0.05))
    assert clock.offset_s == pytest.approx(0.05)
    late = T0 + timedelta(seconds=15)
    assert clock.sample(late, late + timedelta(seconds=17)) is None
    assert clock.sample(late, late + timedelta(seconds=17.01)) is None
    assert clock.offset_s == pytest.approx(0.05)
    assert not clock.skewed


def test_a_local_clock_step_drops_the_older_samples() -> None:
    clock = ClockMonitor(threshold_s=2.0)
    clock.sample(T0, T0 + timedelta(seconds=0.05), received_monotonic=100.0)
    # 15 s later by the monotonic clock, but the wall clock jumped 10 minutes ahead
    at = T0 + timedelta(seconds=15)
    assert clock.sample(at, at + timedelta(seconds=600), received_monotonic=115.0) == 600.0
    assert clock.skewed


def test_service_now_follows_the_measured_offset() -> None:
    clock = ClockMonitor(threshold_s=2.0)
    local = T0 + timedelta(seconds=600)
    assert clock.service_now(local) == local  # nothing measured: its own clock
    clock.sample(T0, T0 + timedelta(seconds=600))
    assert clock.known
    assert clock.service_now(local) == T0


def test_an_offset_assumed_from_the_last_run_until_a_sample(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.json")
    assert journal.clock_offset_s is None
    journal.set_clock_offset(600.0)
    assumed = Journal(tmp_path / "journal.json").clock_offset_s
    assert assumed == 600.0
    clock = ClockMonitor(threshold_s=2.0)
    clock.assume(assumed)
    assert clock.known
    assert clock.service_now(T0 + timedelta(seconds=600)) == T0
    assert not clock.skewed  # flagged only once measured
    clock.sample(T0, T0 + timedelta(seconds=0.1))  # the clock was fixed meanwhile
    assert clock.offset_s == 0.1


def test_journal_round_trip_and_recent_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal_module, "RECENT_COMMANDS", 5)
    path = tmp_path / "journal.json"
    journal = Journal(path)
    journal.set_intent(Intent(version=3, source=IntentSource.DESIRED))
    journal.set_recording(RecordingMark(session_id="s1", file_prefix="p", started_at=T0))
    journal.touch_recording("/r/s1/a.mkv", T0 + timedelta(seconds=9))
    journal.segment_reported("/r/s1/a.mkv")
    for i in range(8):
        journal.remember_command(f"id-{i}", AckResult.SUCCEEDED, None)
    assert path.stat().st_mode & 0o777 == 0o600
    again = Journal(path)
    assert again.intent.version == 3
    assert again.recording is not None
    assert again.recording.closed == ["/r/s1/a.mkv"]
    assert again.command("id-7") is not None
    assert again.command("id-0") is None  # only the recent ones are kept
    assert last_frame_time(again.recording) == T0 + timedelta(seconds=9)


def test_a_corrupt_journal_is_kept_aside(tmp_path: Path) -> None:
    path = tmp_path / "journal.json"
    path.write_text("{not json")
    journal = Journal(path)
    assert journal.recording is None
    assert (tmp_path / "journal.corrupt").exists()


def test_loop_runs_tasks_and_timers_in_order() -> None:
    loop = EventLoop()
    seen: list[str] = []
    loop.call_soon(lambda: seen.append("soon"))
    loop.call_soon(lambda: loop.call_later(0.02, lambda: seen.append("late")))
    loop.call_soon(lambda: loop.call_later(0.01, lambda: seen.append("early")))
    loop.call_soon(lambda: loop.call_later(0.05, loop.stop))
    cancelled = []
    loop.call_soon(lambda: cancelled.append(loop.call_later(0.01, lambda: seen.append("no"))))
    loop.call_soon(lambda: cancelled[0].cancel())
    loop.call_soon(lambda: 1 / 0)
    thread = threading.Thread(target=loop.run)
    thread.start()
    thread.join(5)
    assert seen == ["soon", "early", "late"]
    assert loop.failures == 1
