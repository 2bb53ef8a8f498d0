"""Recording driven by desired and commands: real video, proof events, disk and camera faults."""

# ruff: noqa: F811 (pytest fixtures are imported by name, then requested as parameters)

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from enclosure_agent.recorder import StallableSource, TestPatternSource, read_sidecar
from schemas.enums import AckResult
from tests.integration.test_agent_harness import (  # noqa: F401 (fixtures)
    FPS,
    HEIGHT,
    WIDTH,
    agent_config,
    broker_enclosure,
    decode_times,
    mosquitto,
    mqtt_client,
    plan,
    run_agent,
    segments,
    service_for,
)
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.mosquitto, pytest.mark.slow]  # agents record real video

DURATION_S = 10.0


@pytest.fixture
def eid(broker_enclosure):
    return broker_enclosure.username


def test_desired_records_real_video(
    tmp_path, mosquitto, broker_enclosure, eid, service_for, run_agent
) -> None:
    service = service_for(mosquitto, eid)
    config = agent_config(
        tmp_path, mosquitto, eid, broker_enclosure.password, recording={"segment_seconds": 4}
    )
    run = run_agent(config)
    wanted = plan("s-video", start_in_s=1.5, duration_s=DURATION_S)
    service.desired(5, wanted)
    started = service.event("recording_started")
    assert started.session_id == "s-video"
    assert started.data["end_at"] is not None
    status = service.status(lambda s: s.recording is not None and s.camera.frames_written > 0)
    assert status.camera.recording
    assert status.recording is not None
    assert status.recording.session_id == "s-video"

    service.desired(4, None)  # an older version is ignored: the recording goes on
    stopped = service.event("recording_stopped", timeout=DURATION_S + 15)
    assert stopped.data["reason"] == "end reached"
    assert run.agent.current_session() is None

    files = segments(config.recording.root, "s-video")
    assert len(files) >= 3  # cut every 4 s
    closed = {e.data["path"]: e for e in service.events("segment_closed")}
    assert set(closed) == {str(f) for f in files}
    total = 0
    numbers: list[int] = []  # the test pattern's own frame numbers, across every file
    for path in files:
        times = decode_times(path)
        assert times == sorted(times)
        rows = read_sidecar(Path(closed[str(path)].data["sidecar_path"]))
        assert len(rows) == len(times) == closed[str(path)].data["frames"]
        assert [round(r.pts_ms / 1000, 3) for r in rows] == [round(t, 3) for t in times]
        assert closed[str(path)].data["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert closed[str(path)].data["bytes"] == path.stat().st_size
        capture_times = [r.capture_utc for r in rows]
        assert capture_times == sorted(capture_times)
        numbers += [r.source_index for r in rows]
        total += len(times)
    # no frame lost, at a cut or anywhere: the source's numbers run on without a gap
    assert numbers == list(range(numbers[0], numbers[0] + total))
    assert stopped.data["segments"] == len(files)


def test_stop_by_desired_and_replace_by_another_session(
    tmp_path, mosquitto, broker_enclosure, eid, service_for, run_agent
) -> None:
    service = service_for(mosquitto, eid)
    run_agent(agent_config(tmp_path, mosquitto, eid, broker_enclosure.password))
    service.desired(1, plan("s-a", start_in_s=0, duration_s=60))
    service.event("recording_started", lambda e: e.session_id == "s-a")
    service.desired(2, plan("s-b", start_in_s=0, duration_s=60))
    stopped = service.event("recording_stopped", lambda e: e.session_id == "s-a")
    assert stopped.data["reason"] == "replaced by another session"
    service.event("recording_started", lambda e: e.session_id == "s-b")
    service.desired(3, None)
    stopped = service.event("recording_stopped", lambda e: e.session_id == "s-b")
    assert stopped.data["reason"] == "desired"
    kinds = [e.kind.value for e in service.events() if e.session_id == "s-a"]
    assert kinds == ["recording_started", "segment_closed", "recording_stopped"]
    # the old session winds down while the new one starts: no frame is lost in between
    end_a = service.event("segment_closed", lambda e: e.session_id == "s-a").data["ended_at"]
    start_b = service.event("segment_closed", lambda e: e.session_id == "s-b").data["started_at"]
    gap = datetime.fromisoformat(start_b) - datetime.fromisoformat(end_a)
    assert gap.total_seconds() < 2.5 / FPS


def test_disk_reserve_refuses_a_start(
    tmp_path, mosquitto, broker_enclosure, eid, service_for, run_agent
) -> None:
    service = service_for(mosquitto, eid)
    huge = 1 << 60  # far more than any disk
    run = run_agent(
        agent_config(
            tmp_path,
            mosquitto,
            eid,
            broker_enclosure.password,
            recording={"disk_reserve_bytes": huge},
        )
    )
    ack = service.ack(
        service.command(
            "start_recording", {"session_id": "s1", "file_prefix": "p", "duration_s": 5}
        )
    )
    assert ack.result is AckResult.REJECTED
    assert ack.detail is not None
    assert "bytes free" in ack.detail
    assert f"reserve {huge} bytes" in ack.detail

    service.desired(1, plan("s-disk", start_in_s=0, duration_s=30))
    low = service.event("disk_low")
    assert low.data["reserve_bytes"] == huge
    failed = service.event("recording_failed", lambda e: e.session_id == "s-disk")
    assert "disk below reserve" in failed.data["reason"]
    status = service.status(lambda s: s.last_error is not None and "s-disk" in s.last_error)
    assert status.recording is None
    assert run.agent.current_session() is None
    assert not (tmp_path / "recordings" / "s-disk").exists()


def test_disk_running_low_stops_the_recording(
    tmp_path, mosquitto, broker_enclosure, eid, service_for, run_agent
) -> None:
    service = service_for(mosquitto, eid)
    run = run_agent(agent_config(tmp_path, mosquitto, eid, broker_enclosure.password))
    service.desired(1, plan("s-low", start_in_s=0, duration_s=60))
    service.event("recording_started")
    # the disk "fills": the reserve is raised above the free space at run time
    ack = service.ack(service.command("set_config", {"disk_reserve_bytes": 1 << 60}))
    assert ack.result is AckResult.SUCCEEDED
    service.event("disk_low")
    failed = service.event("recording_failed", lambda e: e.session_id == "s-low")
    assert "disk below reserve" in failed.data["reason"]
    closed = service.event("segment_closed")
    assert Path(closed.data["path"]).is_file()
    assert not service.events("recording_stopped")
    assert run.agent.current_session() is None


def test_a_stalled_camera_is_reported_and_recovers(
    tmp_path, mosquitto, broker_enclosure, eid, service_for, run_agent
) -> None:
    service = service_for(mosquitto, eid)
    source = StallableSource(TestPatternSource(WIDTH, HEIGHT, FPS))
    run_agent(agent_config(tmp_path, mosquitto, eid, broker_enclosure.password), source=source)
    service.desired(1, plan("s-stall", start_in_s=0, duration_s=60))
    service.event("recording_started")
    source.stall()
    stalled = service.event("camera_stalled")
    assert stalled.data["source"] == "testpattern"
    service.status(lambda s: s.last_error is not None and "stalled" in s.last_error)
    source.recover()
    recovered = service.event("camera_recovered")
    assert recovered.data["stalled_s"] > 0.5
    service.status(lambda s: s.camera.connected and s.last_error is None)
    service.desired(2, None)
    service.event("recording_stopped")
    assert len(service.events("segment_closed")) >= 2  # a stall closes the segment


def test_target_fps_reopens_the_camera(
    tmp_path, mosquitto, broker_enclosure, eid, service_for, run_agent
) -> None:
    service = service_for(mosquitto, eid)
    config = agent_config(tmp_path, mosquitto, eid, broker_enclosure.password)
    run_agent(config)
    start = datetime.now(UTC) + timedelta(seconds=1)
    service.desired(
        1,
        plan("s-fps", start_in_s=1, duration_s=4, target_fps=10, apply_filter=True).model_copy(
            update={"start_at": start, "end_at": start + timedelta(seconds=4)}
        ),
    )
    service.event("recording_stopped", timeout=20)
    (path,) = segments(config.recording.root, "s-fps")
    frames = len(decode_times(path))
    assert abs(frames - 40) <= 2, frames


def test_a_restart_resumes_or_ends_the_interrupted_recording(
    tmp_path, mosquitto, broker_enclosure, eid, service_for, run_agent
) -> None:
    service = service_for(mosquitto, eid)
    config = agent_config(tmp_path, mosquitto, eid, broker_enclosure.password)
    first = run_agent(config)
    wanted = plan("s-restart", start_in_s=0, duration_s=4)
    service.desired(1, wanted)
    service.event("recording_started")
    first.stop()  # a clean shutdown closes the segment but keeps the recording for the next start
    closed = service.event("segment_closed")
    assert not service.events("recording_stopped")

    second = run_agent(config)
    resumed = service.event("recording_resumed")
    assert resumed.data["gap_started_at"] <= resumed.data["gap_ended_at"]
    assert resumed.data["gap_started_at"] >= closed.data["ended_at"]
    second.stop()

    # the session ends while the agent is away: the next start only closes the books
    wait_for(lambda: datetime.now(UTC) > wanted.end_at, 10)
    run_agent(config)
    stopped = service.event("recording_stopped")
    assert stopped.session_id == "s-restart"
    assert stopped.data["reason"] == "interrupted by an agent restart; no longer wanted"
    assert len(service.events("recording_resumed")) == 1
