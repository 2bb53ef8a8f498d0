"""The agent on a real Mosquitto: birth, clean shutdown, and every command kind."""

# ruff: noqa: F811 (pytest fixtures are imported by name, then requested as parameters)

from __future__ import annotations

import base64
import io
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import av
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from enclosure_agent.agent import ExitReason
from schemas.enums import AckResult, Lifecycle
from schemas.messages import ServiceState
from tests.integration.test_agent_harness import (  # noqa: F401 (fixtures)
    agent_config,
    broker_enclosure,
    mosquitto,
    mqtt_client,
    run_agent,
    service_for,
)
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.mosquitto, pytest.mark.slow]  # real agents, every command kind

START = {"session_id": "s1", "file_prefix": "cage1", "duration_s": 60}


@pytest.fixture
def setup(tmp_path, mosquitto, broker_enclosure, service_for, run_agent):
    """A service client subscribed before a fresh agent starts."""
    eid = broker_enclosure.username
    service = service_for(mosquitto, eid)
    config = agent_config(tmp_path, mosquitto, eid, broker_enclosure.password)
    return service, lambda **kw: run_agent(config, **kw), config


def test_birth_then_clean_shutdown(setup, mosquitto, mqtt_client) -> None:
    service, start, _ = setup
    run = start()
    boot_id = run.agent.boot_id
    wait_for(lambda: any(s.state is Lifecycle.READY for s in service.states()))
    birth = [(m.topic.rsplit("/", 1)[1], json.loads(m.payload)) for m in service.client.received()][
        :3
    ]
    assert [(channel, doc.get("state")) for channel, doc in birth] == [
        ("state", "init"),
        ("status", None),
        ("state", "ready"),
    ]
    assert all(doc["boot_id"] == boot_id for _, doc in birth)
    assert birth[1][1]["seq"] == 0
    status = service.status(lambda s: s.seq >= 2)
    assert status.camera.connected
    assert status.camera.source == "testpattern"
    assert status.system.disk_total_bytes > 0
    seqs = [s.seq for s in service.statuses()]
    assert seqs == list(range(len(seqs)))

    assert run.stop() is ExitReason.STOPPED
    wait_for(lambda: service.states()[-1].state is Lifecycle.DISCONNECTED)
    late = mqtt_client(mosquitto, "jaxmba_service")
    late.subscribe(service.topic("state"))
    retained = late.expect(service.topic("state"))
    assert retained.retain
    assert json.loads(retained.payload)["state"] == "disconnected"


def test_ping_rebirth_and_set_config(setup) -> None:
    service, start, _ = setup
    run = start()
    ack = service.ack(service.command("ping"))
    assert ack.result is AckResult.SUCCEEDED
    assert ack.data is not None
    assert ack.data["pong"] is True

    ready_before = sum(1 for s in service.states() if s.state is Lifecycle.READY)
    assert service.ack(service.command("rebirth")).result is AckResult.SUCCEEDED
    wait_for(lambda: sum(1 for s in service.states() if s.state is Lifecycle.READY) > ready_before)

    ack = service.ack(service.command("set_config", {"crf": 23, "preview_width": 200}))
    assert ack.result is AckResult.SUCCEEDED
    assert run.agent.config.recording.crf == 23
    assert run.agent.config.preview.width == 200
    bad = service.ack(service.command("set_config", {"crf": 99}))
    assert bad.result is AckResult.REJECTED
    assert bad.detail is not None
    assert "params.crf" in bad.detail


def test_recording_commands_and_their_refusals(setup) -> None:
    service, start, config = setup
    run = start()
    start_id = service.command("start_recording", START)
    assert service.ack(start_id).result is AckResult.SUCCEEDED
    started = service.event("recording_started")
    assert started.session_id == "s1"
    other = service.ack(service.command("start_recording", {**START, "session_id": "s2"}))
    assert other.result is AckResult.REJECTED
    assert other.detail == "already recording session 's1'; stop it before starting 's2'"

    assert service.ack(service.command("stop_recording")).result is AckResult.SUCCEEDED
    stopped = service.event("recording_stopped")
    assert stopped.data["reason"] == "stop_recording command"
    closed = service.event("segment_closed")
    assert Path(closed.data["path"]).is_file()
    idle = service.ack(service.command("stop_recording"))
    assert (idle.result, idle.detail) == (AckResult.REJECTED, "not recording")

    # the same command id again (a QoS 1 redelivery): answered again, not executed again
    service.command("start_recording", START, command_id=start_id)
    wait_for(lambda: len(service.acks(start_id)) == 2)
    assert service.ack(service.command("ping")).result is AckResult.SUCCEEDED
    assert run.agent.current_session() is None
    assert len(service.events("recording_started")) == 1


def test_expired_unknown_and_malformed_commands(setup) -> None:
    service, start, _ = setup
    run = start()
    expired = service.ack(service.command("start_recording", START, expires_in_s=-5))
    assert expired.result is AckResult.EXPIRED
    assert run.agent.current_session() is None

    unknown = service.ack(service.command("self_destruct"))
    assert unknown.result is AckResult.REJECTED
    assert unknown.detail is not None
    assert "cmd.kind" in unknown.detail

    cid = uuid.uuid4()
    service.command("", raw=json.dumps({"id": str(cid), "kind": "ping"}).encode())
    malformed = service.ack(cid)
    assert malformed.result is AckResult.REJECTED
    assert malformed.detail is not None
    assert "expires_at" in malformed.detail

    service.command("", raw=b"\x00\xff garbage")
    marker = service.command("ping")
    assert service.ack(marker).result is AckResult.SUCCEEDED
    ids = {
        json.loads(m.payload)["command_id"] for m in service.client.received(service.topic("ack"))
    }
    assert ids == {str(expired.command_id), str(unknown.command_id), str(cid), str(marker)}
    assert run.agent.loop.failures == 0


def test_response_topic_and_correlation_data(setup) -> None:
    service, start, _ = setup
    start()
    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = service.topic("ack")
    props.CorrelationData = b"corr-123"
    props.MessageExpiryInterval = 30
    cid = service.command("ping", properties=props)
    service.ack(cid)
    (msg,) = [
        m
        for m in service.client.received(service.topic("ack"))
        if json.loads(m.payload)["command_id"] == str(cid)
    ]
    assert msg.correlation_data == b"corr-123"


def test_snapshot_and_live_view(setup) -> None:
    service, start, _ = setup
    start()
    ack = service.ack(service.command("snapshot"))
    assert ack.result is AckResult.SUCCEEDED
    assert ack.data is not None
    jpeg = base64.b64decode(ack.data["jpeg_base64"])
    with av.open(io.BytesIO(jpeg)) as container:
        (frame,) = list(container.decode(video=0))
    assert frame.width == 160

    live = service.ack(service.command("start_live_view", {"duration_s": 2}))
    assert live.result is AckResult.SUCCEEDED
    wait_for(lambda: len(service.client.received(service.topic("preview"))) >= 3)
    previews = service.client.received(service.topic("preview"))
    assert all(p.payload[:2] == b"\xff\xd8" and p.qos == 0 for p in previews)
    # it stops by itself when the time runs out
    service.status(lambda s: not s.live_view.active and s.seq > 3, timeout=10)
    count = len(service.client.received(service.topic("preview")))
    service.client.expect_none(service.topic("preview") + "/never", timeout=0.5)
    assert len(service.client.received(service.topic("preview"))) <= count + 1

    assert service.ack(service.command("start_live_view", {"duration_s": 60})).result is (
        AckResult.SUCCEEDED
    )
    service.status(lambda s: s.live_view.active)
    assert service.ack(service.command("stop_live_view")).result is AckResult.SUCCEEDED
    service.status(lambda s: not s.live_view.active)


def test_live_view_from_desired_without_recording(setup) -> None:
    service, start, _ = setup
    start()
    service.desired(1, live_view_until=datetime.now(UTC) + timedelta(seconds=2))
    wait_for(lambda: len(service.client.received(service.topic("preview"))) >= 2)
    status = service.status(lambda s: s.live_view.active)
    assert status.recording is None


def test_restart_agent_answers_then_exits(setup) -> None:
    service, start, _ = setup
    run = start()
    ack = service.ack(service.command("restart_agent"))
    assert ack.result is AckResult.SUCCEEDED
    assert run.wait(30) is ExitReason.RESTART
    wait_for(lambda: service.states()[-1].state is Lifecycle.DISCONNECTED)


def test_commands_sent_while_the_agent_is_away_arrive(setup) -> None:
    service, start, _ = setup
    start().stop()
    # the broker keeps the agent's session: commands wait for it (unless they expire)
    ping = service.command("ping")
    stale = service.command("start_recording", START, expires_in_s=-1)
    run = start()
    assert service.ack(ping).result is AckResult.SUCCEEDED
    assert service.ack(stale).result is AckResult.EXPIRED
    assert run.agent.current_session() is None


def test_clock_skew_against_the_service(setup) -> None:
    service, start, _ = setup
    start()
    state = ServiceState(online=True, version="test", at=datetime.now(UTC) - timedelta(seconds=30))
    topic = "jaxmba/v1/service/state"
    assert service.client.publish(topic, state.model_dump_json(), retain=False) == 0
    skew = service.event("clock_skew")
    assert 25 < skew.data["offset_s"] < 35
    assert skew.data["threshold_s"] == 2.0
    status = service.status(lambda s: s.clock.skewed)
    assert status.clock.offset_s is not None
    assert status.clock.offset_s > 25


def test_service_state_queued_while_away_is_no_clock_sample(setup) -> None:
    """Heartbeats that waited in the agent's broker session while it was away arrive late at
    its next start: they must not read as clock skew."""
    service, start, _ = setup
    start().stop()
    topic = "jaxmba/v1/service/state"
    for age_s in (45, 30, 15):  # as if published every 15 s while the agent was down
        queued = ServiceState(
            online=True, version="test", at=datetime.now(UTC) - timedelta(seconds=age_s)
        )
        assert service.client.publish(topic, queued.model_dump_json(), retain=False) == 0
    start()
    fresh = ServiceState(online=True, version="test", at=datetime.now(UTC))
    assert service.client.publish(topic, fresh.model_dump_json(), retain=False) == 0
    status = service.status(lambda s: s.clock.offset_s is not None)
    assert status.clock.offset_s is not None
    assert abs(status.clock.offset_s) < 2.0
    assert not status.clock.skewed
    assert service.events("clock_skew") == []
