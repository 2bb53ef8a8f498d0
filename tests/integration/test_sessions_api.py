"""Sessions through the REST API, a real broker, a real bridge and fake agents (both backends).

The fake agents (``bridge_fixtures.Agent``) publish what a real agent would: state, status,
events. The real agent is in ``tests/e2e/test_sessions.py``.
"""

# ruff: noqa: F811 (pytest fixtures are imported by name, then requested as parameters)

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from controlsvc.config.settings import Settings
from controlsvc.mqtt.publisher import PUBLISHER_KEY
from controlsvc.ops.app import create_app
from controlsvc.store.db import Database
from controlsvc.store.models.enclosures import AgentEvent
from controlsvc.store.models.sessions import Alert, DesiredVersion
from tests.integration.bridge_fixtures import (  # noqa: F401 (fixtures)
    PREFIX,
    Agent,
    agents,
    bridge_settings,
    broker,
    make_bridge,
    mosquitto_factory,
    status_payload,
    wait_state,
)
from tests.support.auth import Auth
from tests.support.broker import mqtt_client  # noqa: F401 (fixture)
from tests.support.waiting import wait_for

pytestmark = pytest.mark.mosquitto


@pytest.fixture
def settings(settings: Settings, broker) -> Settings:
    return bridge_settings(settings, broker, session_start_timeout_s=3.0, session_lost_grace_s=3.0)


@pytest.fixture
def app(settings: Settings, database: Database) -> Iterator[Flask]:
    app = create_app(settings, database=database)
    yield app
    app.extensions[PUBLISHER_KEY].close()


@pytest.fixture
def operator(auth: Auth) -> dict[str, str]:
    return auth.headers(auth.create("op@example.com", role="operator"))


@pytest.fixture
def viewer(auth: Auth) -> dict[str, str]:
    return auth.headers(auth.create("viewer@example.com", role="viewer"))


@pytest.fixture
def bridge(settings, make_bridge):
    return make_bridge(settings)


@pytest.fixture
def online(bridge, agents, database):
    """enc-a and enc-b online and idle."""
    out = []
    for eid in ("enc-a", "enc-b"):
        agent = agents(eid, interval=1.0)
        agent.online()
        wait_state(database, eid, "idle")
        out.append(agent)
    return out


def event(
    agent: Agent, kind: str, sid: str | None, *, at: datetime | None = None, **data: Any
) -> str:
    event_id = str(uuid.uuid4())
    body = {
        "v": 1,
        "at": (at or datetime.now(UTC)).isoformat(),
        "event_id": event_id,
        "kind": kind,
        "session_id": sid,
        "data": data,
    }
    agent.publish(f"{PREFIX}/enc/{agent.eid}/events", json.dumps(body).encode())
    return event_id


def create(client, headers, eids=("enc-a",), **body):
    body.setdefault("name", "test session")
    body.setdefault("duration_s", 60)
    body.setdefault("target_fps", 10)
    body.setdefault("enclosures", [{"id": e, "file_prefix": f"p-{e}"} for e in eids])
    return client.post("/api/sessions", json=body, headers=headers)


def get(client, headers, sid):
    response = client.get(f"/api/sessions/{sid}", headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def enclosure_of(body, eid):
    return next(e for e in body["enclosures"] if e["enclosure_id"] == eid)


def wait_enc_state(client, headers, sid, eid, state, timeout=10.0):
    return wait_for(
        lambda: enclosure_of(get(client, headers, sid), eid)["state"] == state,
        timeout,
        message=lambda: f"{eid}: {enclosure_of(get(client, headers, sid), eid)}",
    )


def fields(response) -> set[str]:
    return {e["field"] for e in response.get_json().get("errors", [])}


# -- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"duration_s": 0}, "duration_s"),
        ({"duration_s": -5}, "duration_s"),
        ({"duration_s": 31 * 24 * 3600 + 1}, "duration_s"),
        ({"duration_s": "long"}, "duration_s"),
        ({"target_fps": 0}, "target_fps"),
        ({"target_fps": 121}, "target_fps"),
        ({"name": ""}, "name"),
        ({"enclosures": []}, "enclosures"),
        ({"enclosures": [{"id": "Bad/Id", "file_prefix": "x"}]}, "enclosures.0.id"),
        ({"enclosures": [{"id": "enc-a", "file_prefix": "../x"}]}, "enclosures.0.file_prefix"),
        ({"enclosures": [{"id": "enc-a"}]}, "enclosures.0.file_prefix"),
        ({"segment_minutes": 0}, "segment_minutes"),
        ({"start_at": "tomorrow"}, "start_at"),
        ({"start_at": "2030-01-01T00:00:00"}, "start_at"),  # no offset
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_input_names_the_field(client, operator, change, field):
    response = create(client, operator, **change)
    assert response.status_code == 422, response.get_json()
    assert response.mimetype == "application/problem+json"
    assert field in fields(response), response.get_json()


def test_cross_field_and_domain_refusals(client, operator, online):
    both = create(client, operator, fragment_hourly=True, segment_minutes=5)
    assert both.status_code == 422
    twice = create(client, operator, eids=("enc-a", "enc-a"))
    assert twice.status_code == 422
    assert "enc-a" in twice.get_json()["errors"][0]["message"]
    unknown = create(client, operator, eids=("enc-a", "enc-zz", "enc-yy"))
    assert unknown.status_code == 422
    assert "enc-yy, enc-zz" in unknown.get_json()["detail"]
    past = create(client, operator, start_at=(datetime.now(UTC) - timedelta(minutes=1)).isoformat())
    assert past.status_code == 422
    assert fields(past) == {"start_at"}


def test_roles(client, viewer, operator, online):
    assert create(client, viewer).status_code == 403
    assert client.get("/api/sessions").status_code == 401
    sid = create(client, operator).get_json()["id"]
    assert client.get(f"/api/sessions/{sid}", headers=viewer).status_code == 200
    assert client.post(f"/api/sessions/{sid}/cancel", headers=viewer).status_code == 403


def test_unknown_ids_are_404(client, operator, viewer, online):
    assert client.get("/api/sessions/nope-1", headers=viewer).status_code == 404
    assert client.post("/api/sessions/nope-1/cancel", headers=operator).status_code == 404
    assert client.get("/api/sessions/nope-1/recordings", headers=viewer).status_code == 404
    assert client.get("/api/sessions/bad%20id", headers=viewer).status_code in (404, 422)
    sid = create(client, operator).get_json()["id"]
    response = client.post(f"/api/sessions/{sid}/enclosures/enc-b/cancel", headers=operator)
    assert response.status_code == 404
    assert "not part of session" in response.get_json()["detail"]
    response = client.post(f"/api/sessions/{sid}/enclosures/enc-zz/cancel", headers=operator)
    assert response.status_code == 404


def test_busy_and_offline_enclosures_are_refused(client, operator, online, agents, database):
    first = create(client, operator, name="first")
    assert first.status_code == 201
    busy = create(client, operator, eids=("enc-b", "enc-a"))
    assert busy.status_code == 409
    assert first.get_json()["id"] in busy.get_json()["detail"]
    assert "enc-a" in busy.get_json()["detail"]
    online[1].drop()  # enc-b's Will: lost
    wait_state(database, "enc-b", "lost")
    refused = create(client, operator, eids=("enc-b",))
    assert refused.status_code == 409
    assert "allow_offline" in refused.get_json()["detail"]
    accepted = create(client, operator, eids=("enc-b",), allow_offline=True)
    assert accepted.status_code == 201


# -- the life of a session -----------------------------------------------------------------------


def test_desired_is_the_command_and_events_drive_the_states(
    client, operator, viewer, online, broker, mqtt_client, database
):
    watcher = mqtt_client(broker, "jaxmba_operator")
    watcher.subscribe(f"{PREFIX}/enc/+/desired")
    response = create(client, operator, eids=("enc-a", "enc-b"), duration_s=2)
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    sid = body["id"]
    assert body["status"] == "running"
    assert {e["state"] for e in body["enclosures"]} == {"starting"}
    assert enclosure_of(body, "enc-a")["file_prefix"] == "p-enc-a"
    docs = {}
    for _ in range(2):
        msg = watcher.expect(f"{PREFIX}/enc/+/desired")
        assert msg.retain is False or msg.retain is True
        docs[msg.topic.split("/")[-2]] = json.loads(msg.payload)
    assert docs["enc-a"]["recording"]["session_id"] == sid
    assert docs["enc-a"]["recording"]["file_prefix"] == "p-enc-a"
    assert docs["enc-a"]["recording"]["target_fps"] == 10
    first_version = docs["enc-a"]["version"]
    with database.sessionmaker() as s:
        row = s.get(DesiredVersion, "enc-a")
        assert row is not None
        assert row.published_version == row.version == first_version

    a, b = online
    event(a, "recording_started", sid, file="/rec/a.mkv", target_fps=10)
    wait_enc_state(client, viewer, sid, "enc-a", "recording")
    a.status(recording=sid)
    now = datetime.now(UTC)
    seg_id = event(
        a,
        "segment_closed",
        sid,
        path=f"/rec/{sid}/p-enc-a-0.mkv",
        session_id=sid,
        started_at=(now - timedelta(seconds=2)).isoformat(),
        ended_at=now.isoformat(),
        frames=20,
        bytes=12345,
        sha256="a" * 64,
        sidecar_path=f"/rec/{sid}/p-enc-a-0.csv",
    )
    wait_for(lambda: enclosure_of(get(client, viewer, sid), "enc-a")["segments"] == 1)
    # the same event again (QoS 1 redelivery): stored once, counted once
    a.publish(
        f"{PREFIX}/enc/enc-a/events",
        json.dumps(
            {
                "v": 1,
                "at": now.isoformat(),
                "event_id": seg_id,
                "kind": "segment_closed",
                "session_id": sid,
                "data": {
                    "path": f"/rec/{sid}/p-enc-a-0.mkv",
                    "session_id": sid,
                    "started_at": (now - timedelta(seconds=2)).isoformat(),
                    "ended_at": now.isoformat(),
                    "frames": 20,
                    "bytes": 12345,
                    "sha256": "a" * 64,
                },
            }
        ).encode(),
    )
    event(b, "recording_failed", sid, reason="camera unplugged")
    wait_enc_state(client, viewer, sid, "enc-b", "failed")
    assert enclosure_of(get(client, viewer, sid), "enc-b")["message"] == "camera unplugged"
    wait_for(lambda: datetime.now(UTC) > now + timedelta(seconds=1))  # the end passed
    event(a, "recording_stopped", sid, reason="end reached", recorded_s=2.0, segments=1)
    wait_enc_state(client, viewer, sid, "enc-a", "completed")
    final = wait_for(
        lambda: (s := get(client, viewer, sid))["status"] == "completed_with_failures" and s
    )
    a_out = enclosure_of(final, "enc-a")
    assert (a_out["segments"], a_out["frames"], a_out["bytes"]) == (1, 20, 12345)
    assert final["totals"]["frames"] == 20
    with database.sessionmaker() as s:
        n = s.scalar(
            select(func.count()).select_from(AgentEvent).where(AgentEvent.event_id == seg_id)
        )
    assert n == 1
    recordings = client.get(f"/api/sessions/{sid}/recordings", headers=viewer).get_json()
    assert [r["sha256"] for r in recordings["items"]] == ["a" * 64]
    assert recordings["items"][0]["enclosure_id"] == "enc-a"
    # ... and in the inventory across sessions, with its session
    across = client.get("/api/recordings?enclosure_id=enc-a", headers=viewer).get_json()
    assert [(r["session_id"], r["sha256"], r["frames"]) for r in across["items"]] == [
        (sid, "a" * 64, 20)
    ]
    timeline = client.get("/api/enclosures/enc-a/timeline", headers=viewer).get_json()
    assert [(s["kind"], s["session_id"], s["frames"]) for s in timeline["spans"]] == [
        ("recorded", sid, 20)
    ]
    # desired cleared with a higher version
    cleared = wait_for(
        lambda: next(
            (
                json.loads(m.payload)
                for m in watcher.received(f"{PREFIX}/enc/enc-a/desired")
                if json.loads(m.payload)["recording"] is None
            ),
            None,
        )
    )
    assert cleared["version"] > first_version
    # finished: cancel is a 409 and changes nothing; archive works and is idempotent
    assert client.post(f"/api/sessions/{sid}/cancel", headers=operator).status_code == 409
    assert get(client, viewer, sid)["status"] == "completed_with_failures"
    for _ in range(2):
        archived = client.post(f"/api/sessions/{sid}/archive", headers=operator)
        assert archived.status_code == 200
        assert archived.get_json()["archived"] is True
    listed = client.get("/api/sessions", headers=viewer).get_json()
    assert sid not in [s["id"] for s in listed["items"]]
    listed = client.get("/api/sessions?archived=true", headers=viewer).get_json()
    assert [s["id"] for s in listed["items"]] == [sid]
    assert listed["items"][0]["enclosure_states"] == {"completed": 1, "failed": 1}


@pytest.mark.slow  # waits for the start time-out
def test_start_time_out_names_the_cause(client, operator, viewer, online):
    """An enclosure that does not start says why in its status; the time-out message says it."""
    sid = create(client, operator, eids=("enc-a", "enc-b")).get_json()["id"]
    a, b = online
    a.status(clock={"offset_s": 600.0, "skewed": True})
    b.status(error="not recording: by this enclosure's clock its window is over")
    for eid in ("enc-a", "enc-b"):
        wait_enc_state(client, viewer, sid, eid, "timed_out", timeout=10)
    doc = get(client, viewer, sid)
    assert "clock is +600.0 s off the service's" in enclosure_of(doc, "enc-a")["message"]
    assert "by this enclosure's clock" in enclosure_of(doc, "enc-b")["message"]


def test_an_early_stop_of_a_skewed_agent_is_not_taken_for_the_end(client, operator, viewer, online):
    """An agent 10 minutes ahead dates its events 10 minutes late; a stop 1 s into a 60 s
    session is a failure, whatever its own clock says."""
    sid = create(client, operator, eids=("enc-a",)).get_json()["id"]
    a, _ = online
    a.status(clock={"offset_s": 600.0, "skewed": True})
    ahead = datetime.now(UTC) + timedelta(minutes=10)
    event(a, "recording_started", sid, at=ahead, file="/r/a.mkv", target_fps=10.0)
    wait_enc_state(client, viewer, sid, "enc-a", "recording")
    event(a, "recording_stopped", sid, at=ahead, reason="camera unplugged", recorded_s=1.0)
    wait_enc_state(client, viewer, sid, "enc-a", "failed")
    assert "camera unplugged" in enclosure_of(get(client, viewer, sid), "enc-a")["message"]


@pytest.mark.slow  # waits for the time-outs
def test_cancel_one_then_all_and_time_outs(client, operator, viewer, online, database):
    sid = create(client, operator, eids=("enc-a", "enc-b")).get_json()["id"]
    a, b = online
    event(a, "recording_started", sid)
    wait_enc_state(client, viewer, sid, "enc-a", "recording")
    # enc-b never confirms: timed_out after the 3 s start timeout
    wait_enc_state(client, viewer, sid, "enc-b", "timed_out", timeout=10)
    assert "not recording" in enclosure_of(get(client, viewer, sid), "enc-b")["message"]
    for _ in range(2):  # idempotent
        r = client.post(f"/api/sessions/{sid}/enclosures/enc-a/cancel", headers=operator)
        assert r.status_code == 200, r.get_json()
        assert enclosure_of(r.get_json(), "enc-a")["state"] == "canceled"
    assert get(client, viewer, sid)["status"] == "running"  # enc-b may still come back
    for _ in range(2):
        r = client.post(f"/api/sessions/{sid}/cancel", headers=operator)
        assert r.status_code == 200
        assert r.get_json()["status"] == "canceled"
    filtered = client.get("/api/sessions?status=canceled", headers=viewer).get_json()
    assert [s["id"] for s in filtered["items"]] == [sid]


@pytest.mark.slow  # waits for the grace to pass
def test_lost_enclosure_times_out_and_alerts(
    client, operator, viewer, online, auth, broker, mqtt_client, database
):
    auth.create("watcher@example.com", role="viewer")
    watcher = mqtt_client(broker, "jaxmba_operator")
    watcher.subscribe(f"{PREFIX}/service/alerts")
    sid = create(client, operator, eids=("enc-a",)).get_json()["id"]
    a = online[0]
    event(a, "recording_started", sid)
    wait_enc_state(client, viewer, sid, "enc-a", "recording")
    a.drop()
    wait_state(database, "enc-a", "lost")
    alert = json.loads(watcher.expect(f"{PREFIX}/service/alerts", timeout=10).payload)
    assert alert["kind"] == "enclosure_lost"
    assert alert["enclosure_id"] == "enc-a"
    assert alert["session_id"] == sid
    # A sentence for lab staff: the session by its name, no MQTT words.
    assert alert["message"] == "enc-a lost its connection during session “test session”"
    wait_enc_state(client, viewer, sid, "enc-a", "timed_out", timeout=10)
    assert "lost for more than 3 s" in enclosure_of(get(client, viewer, sid), "enc-a")["message"]


def test_frames_again_recover_an_open_recording_alert(client, operator, viewer, online, database):
    response = create(client, operator, eids=("enc-a",), duration_s=600)
    assert response.status_code == 201, response.get_json()
    sid = response.get_json()["id"]
    a = online[0]
    with database.session() as s:  # as if the start had timed out earlier
        s.add(
            Alert(
                alert_id=f"recording_timed_out:enc-a:{uuid.uuid4().hex[:8]}",
                kind="recording_timed_out",
                severity="critical",
                enclosure_id="enc-a",
                session_id=sid,
                message="enc-a did not confirm recording",
            )
        )
    event(a, "recording_started", sid, file="/rec/a.mkv", target_fps=10)
    wait_enc_state(client, viewer, sid, "enc-a", "recording")

    def recovered() -> bool:
        with database.sessionmaker() as s:
            alert = s.scalar(select(Alert).where(Alert.enclosure_id == "enc-a"))
            return alert is not None and alert.recovered_at is not None

    wait_for(recovered)


def recording_status(agent: Agent, sid: str, *, started: datetime, frames: int, seconds: float):
    """A status of an agent writing ``frames`` frames over ``seconds`` into its first file."""
    body = json.loads(status_payload(agent.boot_id, agent.seq, recording=sid))
    agent.seq += 1
    body["camera"].update(
        frames_written=frames,
        last_frame_at=(started + timedelta(seconds=seconds)).isoformat(),
    )
    body["recording"].update(
        segment_started_at=started.isoformat(), recorded_s=seconds, segment_frames=frames
    )
    agent.publish(f"{PREFIX}/enc/{agent.eid}/status", json.dumps(body).encode(), retain=True)


@pytest.mark.slow  # waits for the lost grace to pass
def test_one_truth_for_progress_and_lost(client, operator, viewer, online, database):
    """The session, the enclosure and the session's totals give the same figures, labelled
    live while recording; a lost enclosure shows as lost at once, with the time it fails."""
    sid = create(client, operator, eids=("enc-a",)).get_json()["id"]
    a = online[0]
    event(a, "recording_started", sid)
    wait_enc_state(client, viewer, sid, "enc-a", "recording")
    started = datetime.now(UTC) - timedelta(seconds=10)
    recording_status(a, sid, started=started, frames=40, seconds=4.0)
    wait_for(
        lambda: enclosure_of(get(client, viewer, sid), "enc-a")["progress"]["frames"] == 40,
        10,
        message=lambda: str(enclosure_of(get(client, viewer, sid), "enc-a")),
    )
    body = get(client, viewer, sid)
    part = enclosure_of(body, "enc-a")
    assert part["progress"] == {
        "basis": "live",
        "recorded_s": 4.0,
        "frames": 40,
        "bytes": 0,
        "segments": 0,
        "last_frame_at": part["progress"]["last_frame_at"],
    }
    assert body["totals"]["basis"] == "live"
    assert (body["totals"]["recorded_s"], body["totals"]["frames"]) == (4.0, 40)
    enc = client.get("/api/enclosures/enc-a", headers=viewer).get_json()
    assert enc["session"]["session_id"] == sid
    assert enc["session"]["session_name"] == "test session"
    assert enc["session"]["progress"] == part["progress"]
    assert enc["session"]["lost"] is False
    listed = client.get("/api/enclosures", headers=viewer).get_json()["items"]
    assert next(e for e in listed if e["id"] == "enc-a")["session"] == enc["session"]
    assert next(e for e in listed if e["id"] == "enc-b")["session"] is None

    a.drop()
    wait_state(database, "enc-a", "lost")
    # At once: no waiting for the session timer; the figures stay as last reported.
    part = enclosure_of(get(client, viewer, sid), "enc-a")
    assert part["state"] == "recording"  # until the grace period ends
    assert part["lost"] is True
    assert part["lost_since"] is not None
    since = datetime.fromisoformat(part["lost_since"])
    assert datetime.fromisoformat(part["fails_at"]) == since + timedelta(seconds=3)
    enc = client.get("/api/enclosures/enc-a", headers=viewer).get_json()
    assert enc["session"]["lost"] is True
    assert enc["session"]["fails_at"] == part["fails_at"]
    # Timed out, then canceled: done with the session, so the evidence (no file was closed
    # yet), labelled so; no longer lost in it.
    wait_enc_state(client, viewer, sid, "enc-a", "timed_out", timeout=10)
    assert client.post(f"/api/sessions/{sid}/cancel", headers=operator).status_code == 200
    body = get(client, viewer, sid)
    part = enclosure_of(body, "enc-a")
    assert part["progress"]["basis"] == "evidence"
    assert (part["progress"]["frames"], part["progress"]["recorded_s"]) == (0, 0.0)
    assert part["lost"] is False
    assert part["fails_at"] is None
    assert client.get("/api/enclosures/enc-a", headers=viewer).get_json()["session"] is None
    # Its alerts: sentences naming the session once; the session's status as it is now.
    found = client.get("/api/alerts?enclosure_id=enc-a", headers=viewer).get_json()["items"]
    by_kind = {a["kind"]: a for a in found}
    lost = by_kind["enclosure_lost"]
    assert lost["message"] == "enc-a lost its connection during session “test session”"
    assert (lost["session_name"], lost["session_status"]) == ("test session", "canceled")
    assert lost["enclosure_name"] == "enc-a"
    assert by_kind["recording_timed_out"]["message"] == (
        "enc-a counts as failed in session “test session”: lost for more than 3 s"
    )
    one = client.get(f"/api/alerts/{lost['alert_id']}", headers=viewer).get_json()
    assert one["session_status"] == "canceled"


def test_an_expected_online_alert_that_came_first_names_the_session(
    client, operator, settings, make_bridge, agents, database
):
    """An enclosure expected online and recording in a session is lost: whichever timer sees it
    first, the one alert open names the session (the expected-online watch getting there first
    used to leave an alert that never mentioned it)."""
    bridge = make_bridge(settings, housekeeping=False)  # no timers: this test runs them, in order
    a = agents("enc-a", interval=1.0)
    a.online()
    wait_state(database, "enc-a", "idle")
    r = client.patch("/api/enclosures/enc-a", json={"expected_online": True}, headers=operator)
    assert r.status_code == 200, r.get_json()
    sid = create(client, operator, eids=("enc-a",)).get_json()["id"]
    event(a, "recording_started", sid)
    wait_enc_state(client, operator, sid, "enc-a", "recording")
    a.drop()
    wait_state(database, "enc-a", "lost")
    assert bridge.sessions.watch_expected_online() == 1  # first: the plain alert
    bridge.sessions.advance()
    with database.sessionmaker() as session:
        (alert,) = session.scalars(select(Alert).where(Alert.recovered_at.is_(None))).all()
    assert alert.session_id == sid
    assert alert.message == "enc-a lost its connection during session “test session”"
