"""An agent whose clock runs 10 minutes ahead (a real shifted clock: libfaketime) still records
the service's recording window, answers commands, and says so while it cannot judge."""

# ruff: noqa: F811 (pytest fixtures are imported by name, then requested as parameters)

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from schemas.enums import AckResult, Lifecycle
from schemas.messages import ServiceState
from tests.integration.test_agent_harness import (  # noqa: F401 (fixtures)
    AgentProcess,
    agent_data,
    broker_enclosure,
    decode_times,
    mosquitto,
    mqtt_client,
    plan,
    segments,
    service_for,
    write_toml,
)
from tests.support import faketime
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.mosquitto]

AHEAD_S = 600


def shifted_clock(seconds: int) -> dict[str, str]:
    try:
        return faketime.shifted_clock(seconds)
    except LookupError as exc:
        pytest.skip(str(exc))


def heartbeat(service) -> None:
    """One live service/state copy, as the bridge sends every 15 s."""
    state = ServiceState(online=True, version="test", at=datetime.now(UTC))
    topic = "jaxmba/v1/service/state"
    assert service.client.publish(topic, state.model_dump_json(), retain=False) == 0


@pytest.mark.slow  # an agent records real video
def test_agent_ten_minutes_ahead_records_the_service_window(
    tmp_path, mosquitto, broker_enclosure, service_for
) -> None:
    eid = broker_enclosure.username
    service = service_for(mosquitto, eid)
    data = agent_data(tmp_path, mosquitto, eid, broker_enclosure.password)
    root = Path(data["recording"]["root"])
    config_file = write_toml(tmp_path / "agent.toml", data)
    agent = AgentProcess(config_file, tmp_path / "agent.log", env=shifted_clock(AHEAD_S))
    again = None
    try:
        wait_for(lambda: any(s.state is Lifecycle.READY for s in service.states()), 30)
        assert service.states()[0].at > datetime.now(UTC) + timedelta(seconds=AHEAD_S - 60)

        # No offset measured yet: by its own clock the window is over. It says why, naming
        # the clock, instead of staying silent.
        window = plan("s-ahead", start_in_s=0, duration_s=120)
        service.desired(1, window)
        doubt = service.status(lambda s: "enclosure's clock" in (s.last_error or ""))
        assert "s-ahead" in (doubt.last_error or "")
        assert service.events("recording_started") == []

        # The service's heartbeat gives the offset: the window is judged by the service's
        # clock, and the recording starts.
        heartbeat(service)
        started = service.event("recording_started", timeout=30)
        assert started.session_id == "s-ahead"
        assert datetime.fromisoformat(started.data["end_at"]) == window.end_at
        status = service.status(lambda s: s.clock.skewed and s.recording is not None)
        assert status.clock.offset_s is not None
        assert AHEAD_S - 5 < status.clock.offset_s < AHEAD_S + 5
        assert status.last_error is None
        skew = service.event("clock_skew")
        assert AHEAD_S - 5 < skew.data["offset_s"] < AHEAD_S + 5

        # A command with a 30 s expiry is not "expired" by the agent's own clock.
        ping = service.ack(service.command("ping"))
        assert ping.result is AckResult.SUCCEEDED
        stale = service.ack(service.command("ping", expires_in_s=-1))
        assert stale.result is AckResult.EXPIRED
        assert "by the service's clock" in (stale.detail or "")

        # Frames are written (a second's worth); then the agent restarts mid-session. Until
        # its first heartbeat it assumes the offset it measured before: it resumes the
        # recording instead of ending it as over by its own clock.
        service.status(lambda s: s.camera.frames_written >= 30, timeout=30)
        assert agent.terminate() == 0
        again = AgentProcess(config_file, tmp_path / "agent-2.log", env=shifted_clock(AHEAD_S))
        resumed = service.event("recording_resumed", timeout=30)
        assert resumed.session_id == "s-ahead"
        assert not [e for e in service.events("recording_stopped") if e.session_id == "s-ahead"]

        # The service ends the recording.
        service.desired(2, None)
        stopped = service.event("recording_stopped", timeout=30)
        assert stopped.data["reason"] == "desired"
        assert again.terminate() == 0
    finally:
        agent.close()
        if again is not None:
            again.close()
    assert "Traceback" not in agent.log() + (again.log() if again else "")
    closed = {e.data["path"]: e.data["frames"] for e in service.events("segment_closed")}
    files = segments(root, "s-ahead")
    assert {str(f) for f in files} == set(closed)
    for path in files:
        assert len(decode_times(path)) == closed[str(path)]
    assert sum(closed.values()) >= 30
