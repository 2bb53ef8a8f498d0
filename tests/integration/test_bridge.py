"""The bridge against a real Mosquitto and a real database: registry, liveness, telemetry."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from controlsvc.mqtt.loop_stop import stop_loop
from controlsvc.store import eventlog
from controlsvc.store.models.enclosures import AgentEvent, StatusRecord
from controlsvc.store.models.events import EventRecord
from controlsvc.store.models.sessions import Alert
from tests.integration.bridge_fixtures import (  # noqa: F401 (fixtures)
    PREFIX,
    agents,
    bridge_settings,
    broker,
    enclosure,
    enclosure_attr,
    history_count,
    make_bridge,
    mosquitto_factory,
    now,
    status_payload,
    transitions,
    wait_state,
)
from tests.support.mqtt import MqttTestClient
from tests.support.waiting import wait_for

pytestmark = pytest.mark.mosquitto


def events_of(database, kind):
    with database.sessionmaker() as session:
        return list(
            session.scalars(
                select(EventRecord).where(EventRecord.kind == kind).order_by(EventRecord.id)
            )
        )


def test_enclosure_appears_on_first_message_and_follows_its_status(
    settings, database, broker, make_bridge, agents
):
    bridge = make_bridge(bridge_settings(settings, broker))
    agent = agents("enc-a")
    agent.online()
    wait_for(lambda: enclosure_attr(database, "enc-a", "lifecycle") == "ready")
    enc = wait_state(database, "enc-a", "idle")
    assert enc.boot_id == agent.boot_id
    assert enc.agent_version == "test-1.0"
    assert enc.registered is False
    assert enc.name == "enc-a"

    agent.status(recording="s-1")
    wait_state(database, "enc-a", "recording")
    agent.status(error="camera unplugged")
    enc = wait_state(database, "enc-a", "error")
    assert enc.state_reason == "camera unplugged"
    agent.status()
    wait_state(database, "enc-a", "idle")

    assert transitions(database, "enc-a") == [
        ("offline", "idle"),
        ("idle", "recording"),
        ("recording", "error"),
        ("error", "idle"),
    ]
    states = [e.data["state"] for e in events_of(database, "enclosure.state")]
    assert states == ["idle", "recording", "error", "idle"]
    assert events_of(database, "enclosure.status"), "status changes are in the event log"
    assert bridge.stats.snapshot()["written"]["status"] == 4


def test_will_marks_lost_at_once_and_clean_shutdown_offline(
    settings, database, broker, make_bridge, agents
):
    make_bridge(bridge_settings(settings, broker))
    agent = agents("enc-a")
    agent.online()
    wait_state(database, "enc-a", "idle")

    agent.drop()  # no DISCONNECT: the broker publishes the Will (state lost)
    started = time.monotonic()
    enc = wait_state(database, "enc-a", "lost", timeout=7.5)  # 1.5 x keepalive (5 s)
    took = time.monotonic() - started
    assert enc.state_reason == "connection lost"  # the Will: lab staff read no MQTT words
    print(f"lost detected {took * 1000:.0f} ms after the socket died")

    again = agents("enc-a", boot_id="second-boot")
    again.online()
    wait_state(database, "enc-a", "idle")
    again.disconnect()
    enc = wait_state(database, "enc-a", "offline")
    assert enc.state_reason == "clean shutdown"
    assert enc.silent_after is None


def test_silence_marks_lost_and_a_message_revives(settings, database, broker, make_bridge, agents):
    # 0.2 s heartbeat x 3 intervals: lost after 0.6 s of silence.
    config = bridge_settings(settings, broker, status_interval_s=0.2, lost_after_intervals=3)
    make_bridge(config)
    # One timer thread for housekeeping and sessions, so no two timers race for the same rows.
    timers = [t.name for t in threading.enumerate() if t.name.startswith("jaxmba-bridge-")]
    assert sorted(n for n in timers if "worker" not in n) == ["jaxmba-bridge-ticker"]
    agent = agents("enc-a", interval=0.2)
    agent.online()
    wait_state(database, "enc-a", "idle")
    # The agent is connected but says nothing any more.
    enc = wait_state(database, "enc-a", "lost", timeout=5)
    assert "no message for 0.6 s" in (enc.state_reason or "")
    agent.status()
    wait_state(database, "enc-a", "idle")
    assert transitions(database, "enc-a")[-2:] == [("idle", "lost"), ("lost", "idle")]


def test_stale_duplicate_and_out_of_order_status_ignored(
    settings, database, broker, make_bridge, agents
):
    # each status judged on its own: none coalesced, even if the machine stalls the bridge
    bridge = make_bridge(bridge_settings(settings, broker), status_behind_s=None)
    agent = agents("enc-a", boot_id="boot-1")
    agent.state("ready")
    t = now()
    agent.status(seq=5, at=t)
    agent.status(seq=3, at=t - timedelta(seconds=10))  # out of order
    agent.status(seq=5, at=t)  # duplicate
    agent.status(seq=6, at=t + timedelta(seconds=1), recording="late-boot-1")
    wait_for(lambda: bridge.stats.snapshot()["ignored"].get("stale") == 1)
    wait_for(lambda: enclosure_attr(database, "enc-a", "status_seq") == 6)
    # A message of the previous boot arriving after the new boot's is ignored.
    new_boot = agents("enc-b", boot_id="boot-2")  # another enclosure, same broker
    new_boot.state("ready")
    agent.boot_id = "boot-2"
    agent.status(seq=0, at=t + timedelta(seconds=2))
    agent.boot_id = "boot-1"
    agent.status(seq=7, at=t + timedelta(seconds=1.5))  # older boot, older time
    wait_for(lambda: bridge.stats.snapshot()["ignored"].get("stale") == 2)
    enc = enclosure(database, "enc-a")
    assert (enc.status_boot_id, enc.status_seq) == ("boot-2", 0)
    stats = bridge.stats.snapshot()
    assert stats["ignored"]["duplicate"] == 1
    # History keeps each (boot, seq) once, out-of-order ones included.
    with database.sessionmaker() as session:
        seqs = sorted(
            (r.boot_id, r.seq)
            for r in session.scalars(
                select(StatusRecord).where(StatusRecord.enclosure_id == "enc-a")
            )
        )
    assert seqs == [("boot-1", 3), ("boot-1", 5), ("boot-1", 6), ("boot-1", 7), ("boot-2", 0)]


def test_retained_state_and_status_are_read_on_start(
    settings, database, broker, make_bridge, agents
):
    agent = agents("enc-a")
    agent.online()
    agent.status(recording="s-9")
    # The bridge starts after the fact, with an empty database.
    make_bridge(bridge_settings(settings, broker))
    enc = wait_state(database, "enc-a", "recording")
    assert enc.status_seq == 1
    assert enc.boot_id == agent.boot_id


def test_duplicate_event_id_is_stored_once(settings, database, broker, make_bridge, agents):
    bridge = make_bridge(bridge_settings(settings, broker))
    agent = agents("enc-a")
    event_id = str(uuid.uuid4())
    agent.event(event_id)
    agent.event(event_id)
    agent.event(str(uuid.uuid4()), kind="clock_skew", offset_s=2.5)
    wait_for(lambda: bridge.stats.snapshot()["written"].get("events") == 2)
    wait_for(lambda: bridge.stats.snapshot()["ignored"].get("duplicate") == 1)
    with database.sessionmaker() as session:
        rows = list(session.scalars(select(AgentEvent).order_by(AgentEvent.id)))
    assert [(r.kind, r.event_id == event_id) for r in rows] == [
        ("disk_low", True),
        ("clock_skew", False),
    ]
    assert rows[0].data == {"free_bytes": 10, "reserve_bytes": 100}


@pytest.mark.slow  # a flood of 10,000 malformed messages
def test_malformed_flood_then_valid_messages(settings, database, broker, make_bridge, agents):
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    from controlsvc.broker import SERVICE_USER

    # every one of the statuses after the flood is counted in the history: none may be
    # coalesced while the bridge works through the flood
    bridge = make_bridge(bridge_settings(settings, broker), status_behind_s=None)
    agent = agents("enc-a")
    agent.state("ready")
    # 10,000 bad messages from the service account (which may publish anywhere).
    flood = paho.Client(CallbackAPIVersion.VERSION2, client_id="flood", protocol=paho.MQTTv5)
    flood.username_pw_set(SERVICE_USER, broker.accounts[SERVICE_USER])
    flood.max_inflight_messages_set(1000)
    flood.max_queued_messages_set(0)
    flood.connect(broker.host, broker.service_port)
    flood.loop_start()
    big = b'{"v":1,"x":"' + b"a" * (256 * 1024) + b'"}'
    kinds = [
        (f"{PREFIX}/enc/enc-a/status", b"{not json"),
        (f"{PREFIX}/enc/enc-a/status", b'{"v":1,"seq":-1}'),
        (f"{PREFIX}/enc/enc-a/ack", b'{"v":1,"command_id":"x","result":"ok"}'),
        (f"{PREFIX}/enc/enc-a/events", b"\xff\xfe\x00"),
        (f"{PREFIX}/enc/BAD_ID/status", b"{}"),
        (f"{PREFIX}/enc/enc-a/state", b'{"state":"flying"}'),
    ]
    infos = []
    for i in range(10_000):
        topic, payload = kinds[i % len(kinds)]
        if i % 1000 == 999:
            payload = big  # a few oversized ones
        infos.append(flood.publish(topic, payload, qos=1))
    for info in infos:
        info.wait_for_publish(120)
    # every one reached the broker (a flood cut short would make the counts below wrong)
    assert all(info.is_published() for info in infos)
    flood.disconnect()
    stop_loop(flood)
    for _ in range(20):
        agent.status()
    wait_for(
        lambda: enclosure_attr(database, "enc-a", "status_seq") == 19,
        timeout=60,
        message=lambda: f"stats: {bridge.stats.snapshot()}",
    )
    assert history_count(database, "enc-a") == 20
    # The bad messages are judged in several lanes (by enclosure); the valid statuses of enc-a
    # may be stored before the other lanes have judged all of theirs: wait for the count.
    wait_for(
        lambda: sum(bridge.stats.snapshot()["invalid"].values()) >= 10_000,
        timeout=60,
        message=lambda: f"invalid: {bridge.stats.snapshot()['invalid']}",
    )
    invalid = bridge.stats.snapshot()["invalid"]
    assert sum(invalid.values()) == 10_000, invalid
    assert invalid["topic"] >= 1000
    assert invalid["too_large"] == 10
    assert invalid["invalid_json"] >= 1000
    assert invalid["not_utf8"] >= 1000
    assert invalid["schema"] >= 3000


def test_bridge_restart_while_messages_are_in_flight(
    settings, database, broker, make_bridge, agents
):
    """Statuses and acks published while the bridge is down (cleanly stopped, then killed)
    arrive after it restarts: nothing lost, nothing stored twice."""
    from controlsvc.store import commands as command_domain
    from schemas.enums import CommandKind

    config = bridge_settings(settings, broker)
    whole = {"status_behind_s": None}  # every status counted: none coalesced on catching up
    bridge = make_bridge(config, **whole)
    agent = agents("enc-a", policy=None)
    agent.online()
    wait_state(database, "enc-a", "idle")
    with database.session() as session:
        cmd = command_domain.create_command(session, "enc-a", CommandKind.PING, {}, 60)
        command_id = cmd.id

    for _ in range(50):
        agent.status()
    bridge.stop()  # clean: drains and acknowledges what it has
    for _ in range(50):
        agent.status()  # queued by the broker for the bridge's session
    agent.publish(f"{PREFIX}/enc/enc-a/ack", _ack(command_id, "succeeded"))

    bridge = make_bridge(config, **whole)  # same client id: the session resumes
    wait_for(lambda: history_count(database, "enc-a") == 101, timeout=20)
    wait_for(lambda: _command_state(database, command_id) == "succeeded")

    for _ in range(30):
        agent.status()
    bridge.kill()  # a crash: no DISCONNECT, unacknowledged messages stay with the broker
    for _ in range(30):
        agent.status()
    make_bridge(config, **whole)
    wait_for(lambda: history_count(database, "enc-a") == 161, timeout=20)
    enc = enclosure(database, "enc-a")
    assert enc.status_seq == 160
    with database.sessionmaker() as session:
        seqs = [r.seq for r in session.scalars(select(StatusRecord).order_by(StatusRecord.seq))]
    assert seqs == list(range(161)), "every status once"


@pytest.mark.slow  # waits for a keepalive to expire
def test_service_state_is_online_and_will_says_offline(settings, database, broker, make_bridge):
    config = bridge_settings(settings, broker)
    bridge = make_bridge(config)
    with MqttTestClient.for_broker(broker, "jaxmba_operator") as watcher:
        watcher.subscribe(f"{PREFIX}/service/state")
        first = watcher.expect(f"{PREFIX}/service/state")
        assert first.retain
        assert b'"online":true' in first.payload
        bridge.kill()
        gone = watcher.expect(f"{PREFIX}/service/state", timeout=10)
        assert b'"online":false' in gone.payload


def test_events_notification_published_after_commit(
    settings, database, broker, make_bridge, agents
):
    make_bridge(bridge_settings(settings, broker))
    with MqttTestClient.for_broker(broker, "jaxmba_operator") as watcher:
        watcher.subscribe(eventlog.notification_topic(PREFIX))
        agent = agents("enc-a")
        agent.online()
        note = watcher.expect(eventlog.notification_topic(PREFIX))
        last_id = eventlog.parse_notification(note.payload)
        assert last_id is not None
        with database.sessionmaker() as session:
            assert session.get(EventRecord, last_id) is not None


def _ack(command_id, result):
    from tests.integration.bridge_fixtures import ack_payload

    return ack_payload(str(command_id), result)


def _command_state(database, command_id):
    from tests.integration.bridge_fixtures import command_row

    row = command_row(database, command_id)
    return row.state if row else None


def test_bad_credentials_stop_the_bridge_with_a_clear_reason(
    settings, database, broker, make_bridge, caplog
):
    from pydantic import SecretStr

    from controlsvc.bridge import BrokerRefused
    from controlsvc.bridge.service import run

    config = bridge_settings(settings, broker)
    config = config.model_copy(
        update={"mqtt": config.mqtt.model_copy(update={"password": SecretStr("wrong")})}
    )
    bridge = make_bridge(config, ready=False)
    wait_for(lambda: bridge.fatal is not None)
    assert isinstance(bridge.fatal, BrokerRefused)
    assert bridge.fatal.reason_code in (0x86, 0x87)
    assert "username and password" in str(bridge.fatal)
    assert not bridge.wait_ready(0.5)
    with pytest.raises(BrokerRefused):
        run(config)  # the entry point gives up instead of retrying forever


def clock_alerts(database, eid):
    with database.sessionmaker() as session:
        return list(
            session.scalars(
                select(Alert)
                .where(Alert.enclosure_id == eid, Alert.kind == "clock_skew")
                .order_by(Alert.id)
            )
        )


def test_clock_skew_raises_an_alert_naming_the_enclosure_then_recovers(
    settings, database, broker, make_bridge, agents
):
    make_bridge(bridge_settings(settings, broker))
    agent = agents("enc-a")
    agent.online()
    wait_state(database, "enc-a", "idle")
    skewed = {"offset_s": 600.2, "skewed": True, "ntp_synchronized": False}
    agent.status(clock=skewed)
    (alert,) = wait_for(lambda: clock_alerts(database, "enc-a"))
    assert alert.severity == "warning"
    # A sentence: which clock, how far and which way, what to check.
    assert alert.message.startswith("The clock of enc-a is 600.2 s ahead of the service's")
    assert "NTP" in alert.message
    assert alert.recovered_at is None
    agent.status(clock=skewed)  # still skewed: the same alert, not another
    agent.status(clock={"offset_s": 0.1, "skewed": False})
    (alert,) = wait_for(
        lambda: [a for a in clock_alerts(database, "enc-a") if a.recovered_at is not None]
    )
    assert alert.occurrences == 1
    assert len(clock_alerts(database, "enc-a")) == 1


@pytest.mark.slow  # waits for a silence deadline twice
def test_a_status_from_the_future_does_not_wedge_the_enclosure(
    settings, database, broker, make_bridge, agents
):
    """One valid status dated 2099 (a clock gone wild, or forged): stored as it came, but it
    counts as sent when it arrived, so the agent's next boot takes over again."""
    make_bridge(bridge_settings(settings, broker))
    agent = agents("enc-a", interval=1.0)
    agent.online()
    wait_state(database, "enc-a", "idle")
    future = datetime(2099, 1, 1, tzinfo=UTC)
    agent.publish(f"{PREFIX}/enc/enc-a/status", status_payload("b-2099", 0, at=future), retain=True)
    enc = wait_for(
        lambda: (e := enclosure(database, "enc-a")) is not None and e.boot_id == "b-2099" and e
    )
    assert enc.status["at"].startswith("2099")  # what arrived is kept
    assert enc.status_at < now() + timedelta(seconds=60)  # ordered by when it arrived
    # restart_agent: a new boot, whose messages must not be judged older than 2099
    agent.boot_id, agent.seq = "b-restarted", 0
    agent.online()

    def recovered():
        agent.status()  # an agent repeats its status every interval
        enc = enclosure(database, "enc-a")
        return enc is not None and enc.boot_id == "b-restarted" and enc.state == "idle"

    wait_for(recovered, 20, interval=0.5)
    assert enclosure_attr(database, "enc-a", "lifecycle") == "ready"


@pytest.mark.parametrize(("every_s", "events"), [(0.0, 3), (3600.0, 0)])
def test_unchanged_statuses_reach_the_live_feed_as_often_as_the_setting_says(
    settings, database, broker, make_bridge, agents, every_s, events
):
    """``[SERVICE] status_event_every_s``: a status that changes nothing a user sees is an
    ``enclosure.status`` event at most once per enclosure per that many seconds (0: each)."""
    make_bridge(bridge_settings(settings, broker, status_event_every_s=every_s))
    agent = agents("enc-a")
    agent.online()
    wait_state(database, "enc-a", "idle")
    seq = agent.status()  # the first once ready: it may show what the last one did not
    wait_for(lambda: enclosure_attr(database, "enc-a", "status_seq") == seq)
    before = len(events_of(database, "enclosure.status"))
    for _ in range(3):
        seq = agent.status()
    wait_for(lambda: enclosure_attr(database, "enc-a", "status_seq") == seq)
    assert len(events_of(database, "enclosure.status")) - before == events
