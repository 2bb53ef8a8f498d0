"""Crashes, broker outages and refused credentials: nothing recorded or reported is lost."""

# ruff: noqa: F811 (pytest fixtures are imported by name, then requested as parameters)

from __future__ import annotations

import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
from click.testing import CliRunner

from enclosure_agent import checks
from enclosure_agent.cli import EXIT_REFUSED, cli
from enclosure_agent.config import load_config
from enclosure_agent.outbox import Outbox
from enclosure_agent.recorder import read_sidecar, sidecar_path_for
from schemas.enums import Lifecycle
from schemas.events import Event
from tests.integration.test_agent_harness import (  # noqa: F401 (fixtures)
    FPS,
    REPO,
    AgentProcess,
    agent_config,
    agent_data,
    broker_enclosure,
    decode_times,
    mosquitto,
    mosquitto_factory,
    mqtt_client,
    plan,
    run_agent,
    segments,
    service_for,
    write_toml,
)
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.mosquitto, pytest.mark.slow]

EID = "enc-a"
VIDEO_ON_DISK_BYTES = 16 * 1024  # a segment's header is < 1 KB; clusters follow every 0.25 s


def assert_same_fact_same_id(events: list[Event]) -> None:
    by_id: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        by_id[event.event_id].append(event)
    for copies in by_id.values():
        assert all(
            (c.kind, c.session_id, c.data, c.at) == (copies[0].kind, copies[0].session_id,
                                                     copies[0].data, copies[0].at)
            for c in copies
        )  # fmt: skip


def segment_with_video(root: Path, session_id: str) -> Path | None:
    """The newest segment once encoded video (not only its header) reached the disk, and its
    sidecar lists two seconds of frames (so at least one second of them is in the file)."""
    files = segments(root, session_id)
    if not files or files[-1].stat().st_size < VIDEO_ON_DISK_BYTES:
        return None
    if len(read_sidecar(files[-1].with_name(files[-1].stem + ".frames.csv"))) < 2 * FPS:
        return None
    return files[-1]


def test_kill_9_mid_recording_then_resume(tmp_path, mosquitto_factory, service_for) -> None:
    broker = mosquitto_factory()
    service = service_for(broker, EID)
    data = agent_data(
        tmp_path, broker, EID, broker.accounts[EID], recording={"segment_seconds": 10}
    )
    config_file = write_toml(tmp_path / "agent.toml", data)
    root = Path(data["recording"]["root"])
    first = AgentProcess(config_file, tmp_path / "agent-1.log")
    second = None
    try:
        wait_for(lambda: any(s.state is Lifecycle.READY for s in service.states()), 20)
        service.desired(1, plan("s-crash", start_in_s=0, duration_s=120))
        service.event("recording_started", timeout=20)
        # kill -9 mid-segment, once the segment being written has video on disk
        victim = wait_for(lambda: segment_with_video(root, "s-crash"), 20)
        first.kill()
        wait_for(lambda: service.states()[-1].state is Lifecycle.LOST, 15, message="no Will")
        before = {e.event_id for e in service.events()}
        reported_before = {e.data["path"] for e in service.events("segment_closed")}

        second = AgentProcess(config_file, tmp_path / "agent-2.log")
        resumed = service.event("recording_resumed", timeout=30)
        assert resumed.session_id == "s-crash"
        assert resumed.data["gap_s"] > 0
        assert resumed.data["gap_started_at"] < resumed.data["gap_ended_at"]
        states = [s.state for s in service.states()]
        assert states[-1] is Lifecycle.READY
        assert Lifecycle.INIT in states[states.index(Lifecycle.LOST) :]

        # the segment cut short by the crash is reported by the new run and still decodes
        assert str(victim) not in reported_before
        orphan = service.event("segment_closed", lambda e: e.data["path"] == str(victim))
        assert orphan.event_id not in before
        frames = decode_times(victim)
        assert len(frames) == orphan.data["frames"] >= FPS
        # its sidecar lists only frames the file holds (cut back to them), at the same times
        rows = read_sidecar(sidecar_path_for(victim))
        assert len(rows) <= len(frames)
        assert [r.pts_ms / 1000 for r in rows] == pytest.approx(frames[: len(rows)], abs=1e-3)
        assert orphan.data["ended_at"] <= resumed.data["gap_started_at"]

        service.desired(2, None)
        stopped = service.event("recording_stopped", timeout=20)
        assert stopped.data["reason"] == "desired"
        assert second.terminate() == 0
        wait_for(lambda: service.states()[-1].state is Lifecycle.DISCONNECTED)
    finally:
        first.close()
        if second is not None:
            second.close()
    assert "Traceback" not in first.log() + (second.log() if second else "")

    # every segment file has a segment_closed event, every copy of a fact the same event_id
    events = service.events()
    assert_same_fact_same_id(events)
    closed = {e.data["path"] for e in events if e.kind == "segment_closed"}
    files = segments(root, "s-crash")
    assert closed == {str(f) for f in files}
    for path in files:
        assert decode_times(path)
    outbox = Outbox(tmp_path / f"state-{EID}" / "outbox.sqlite3")
    assert len(outbox) == 0
    outbox.close()


def test_broker_down_30_s_recording_goes_on(
    tmp_path, mosquitto_factory, mqtt_client, service_for, run_agent
) -> None:
    broker = mosquitto_factory()
    # the service keeps a persistent session, so the broker queues events for it while it is away
    session = {"client_id": "observer", "clean_start": False, "session_expiry_s": 600}
    service = service_for(broker, EID, **session)
    config = agent_config(
        tmp_path, broker, EID, broker.accounts[EID], recording={"segment_seconds": 3}
    )
    run = run_agent(config)
    agent = run.agent
    service.desired(1, plan("s-outage", start_in_s=0, duration_s=120))
    service.event("recording_started")
    frames_at_stop = agent.sessions.current.stats().frames_written
    service.client.disconnect()
    broker.stop()
    # the recording goes on for 30 s of frames with the broker away; events pile up in the outbox
    wait_for(
        lambda: agent.sessions.current.stats().frames_written >= frames_at_stop + 30 * FPS * 0.95,
        45,
        interval=0.5,
    )
    queued = [e.event_id for e in agent.outbox.events()]
    assert len(queued) >= 8  # segment_closed every 3 s
    broker.start()
    service = service_for(broker, EID, **session)
    wait_for(lambda: len(agent.outbox) == 0, 30, interval=0.2, message="outbox not flushed")
    wait_for(
        lambda: {e.event_id for e in service.events()} >= set(queued),
        15,
        message=lambda: f"{len(queued)} queued; got {[e.kind.value for e in service.events()]}",
    )
    events = service.events()
    received = [e.event_id for e in events if e.event_id in set(queued)]
    assert list(dict.fromkeys(received)) == queued  # flushed in the order they happened
    assert_same_fact_same_id(events)

    service.desired(2, None)
    service.event("recording_stopped", timeout=20)
    run.stop()
    # no frame lost while the broker was away: the capture times run without a gap
    captured = []
    for path in segments(config.recording.root, "s-outage"):
        rows = read_sidecar(path.with_name(path.stem + ".frames.csv"))
        assert len(decode_times(path)) == len(rows)
        captured.extend(row.capture_utc for row in rows)
    assert len(captured) >= 0.95 * 30 * FPS
    gaps = [(b - a).total_seconds() for a, b in zip(captured, captured[1:], strict=False)]
    assert max(gaps) < 2.5 / FPS


def test_each_connection_registers_its_own_will(tmp_path, mosquitto_factory, service_for) -> None:
    """A Will names the connection it was registered with: the service can tell the Will of
    a connection the agent has already replaced (replayed after a broker restart)."""
    broker = mosquitto_factory()
    data = agent_data(tmp_path, broker, EID, broker.accounts[EID])
    agent = AgentProcess(write_toml(tmp_path / "agent.toml", data), tmp_path / "agent.log")

    def seen(service, state: Lifecycle, connection: int) -> bool:
        return any(s.state is state and s.connection == connection for s in service.states())

    try:
        service = service_for(broker, EID)
        wait_for(lambda: seen(service, Lifecycle.READY, 1), 20)
        broker.restart()
        service = service_for(broker, EID)
        wait_for(lambda: seen(service, Lifecycle.READY, 2), 30, message="no reconnection")
        agent.kill()
        wait_for(lambda: seen(service, Lifecycle.LOST, 2), 15, message="no Will of connection 2")
    finally:
        agent.close()
    assert "Traceback" not in agent.log()


def test_refused_credentials_stop_the_agent(tmp_path, mosquitto) -> None:
    data = agent_data(tmp_path, mosquitto, "enc-b", "wrong-password")
    config_file = write_toml(tmp_path / "agent.toml", data)
    done = subprocess.run(
        [sys.executable, "-m", "enclosure_agent", "run", "--config", str(config_file)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == EXIT_REFUSED, done.stderr
    assert "refused the credentials of enc-b" in done.stderr
    assert "Traceback" not in done.stderr


def test_check_command(tmp_path, mosquitto, broker_enclosure, monkeypatch, run_agent) -> None:
    eid, password = broker_enclosure.username, broker_enclosure.password
    monkeypatch.setattr(checks, "ntp_synchronized", lambda fresh=False: True)
    good = write_toml(
        tmp_path / "good.toml",
        agent_data(tmp_path, mosquitto, eid, password),
    )
    result = CliRunner().invoke(cli, ["check", "--config", str(good)])
    lines = result.output.splitlines()
    assert [line.split(":")[0].split()[-1] for line in lines] == [
        "config", "camera", "disk", "state", "clock", "broker",
    ]  # fmt: skip
    assert all(line.startswith("ok") for line in lines), result.output
    assert result.exit_code == 0

    bad = agent_data(tmp_path, mosquitto, eid, "nope", recording={"disk_reserve_bytes": 1 << 60})
    bad_file = write_toml(tmp_path / "bad.toml", bad)
    bad_file.chmod(0o644)
    result = CliRunner().invoke(cli, ["check", "--config", str(bad_file)])
    assert result.exit_code == 1
    failed = [line for line in result.output.splitlines() if line.startswith("FAIL")]
    assert [line.split()[1] for line in failed] == ["config:", "disk:", "broker:"]
    assert "below the reserve" in failed[1]
    assert "login refused: not authorized" in failed[2]

    camera = CliRunner().invoke(cli, ["check", "--config", str(good), "--camera", "/dev/video99"])
    assert camera.exit_code == 1
    assert "FAIL  camera: /dev/video99: cannot open" in camera.output

    # while the agent runs, it holds the MQTT session: check leaves the broker alone
    run_agent(load_config(good))
    result = CliRunner().invoke(cli, ["check", "--config", str(good)])
    assert result.exit_code == 0, result.output
    assert f"broker: skipped: the agent (pid {os.getpid()})" in result.output
