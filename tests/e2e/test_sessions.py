"""The six scenarios of recording sessions (issue 6), with everything real: agents as child
processes (``python -m enclosure_agent run``) with the test-pattern camera writing real video,
Mosquitto, PostgreSQL, the bridge (in-process, or a child process to kill -9), the API through
the Flask test client, and an SMTP sink (aiosmtpd) for the alert mail.

PostgreSQL only: each scenario records for 10-20 s of wall time, and running them on SQLite as
well would double a long runtime for no new coverage (the API and bridge logic run on both
backends in ``tests/integration/test_sessions_api.py``). Frames are small (160x120 at 10 fps).
"""

# ruff: noqa: F811 (pytest fixtures are imported by name, then requested as parameters)

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from flask import Flask
from sqlalchemy import func, select

from controlsvc.bridge import Bridge
from controlsvc.broker import LocalBroker, find_free_port
from controlsvc.config.settings import Settings
from controlsvc.mqtt.publisher import PUBLISHER_KEY
from controlsvc.ops.app import create_app
from controlsvc.store.db import Database
from controlsvc.store.models.enclosures import AgentEvent
from controlsvc.store.models.users import User
from enclosure_agent.recorder import SidecarRow, read_sidecar, sidecar_path_for
from tests.integration.bridge_fixtures import bridge_settings
from tests.integration.test_agent_harness import decode_times, segments
from tests.support.auth import Auth
from tests.support.broker import default_accounts, mosquitto_factory  # noqa: F401
from tests.support.stack import Agents, ServiceProcess, service_env
from tests.support.waiting import wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.mosquitto,
    pytest.mark.parametrize("db_url", ["postgres"], indirect=True),
]

FPS = 10
EIDS = ("enc-a", "enc-b", "enc-c")
START_TIMEOUT_S = 10.0
LOST_GRACE_S = 15.0  # a restarted agent on a loaded CI machine takes up to ~10 s


# -- an SMTP sink ---------------------------------------------------------------------------------


class Sink:
    def __init__(self) -> None:
        self.messages: list[Any] = []
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        with self._lock:
            self.messages.append(envelope)
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Sink, int]]:
    sink = Sink()
    port = find_free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield sink, port
    finally:
        controller.stop()


# -- the stack ------------------------------------------------------------------------------------


@pytest.fixture
def broker(mosquitto_factory) -> LocalBroker:
    return mosquitto_factory(default_accounts(EIDS))


@pytest.fixture
def settings(settings: Settings, broker: LocalBroker, smtp) -> Settings:
    base = bridge_settings(
        settings,
        broker,
        session_start_timeout_s=START_TIMEOUT_S,
        session_lost_grace_s=LOST_GRACE_S,
        status_interval_s=1.0,
    )
    mail = base.mail.model_copy(update={"backend": "smtp", "host": "127.0.0.1", "port": smtp[1]})
    return base.model_copy(update={"mail": mail})


@pytest.fixture
def app(settings: Settings, database: Database) -> Iterator[Flask]:
    app = create_app(settings, database=database)
    yield app
    app.extensions[PUBLISHER_KEY].close()


@pytest.fixture
def operator(auth: Auth, app: Flask, database: Database) -> dict[str, str]:
    account = auth.create("op@example.com", role="operator")
    with database.session() as session:
        user = session.get(User, account.id)
        assert user is not None
        user.alert_emails = True
    return auth.headers(account)


@pytest.fixture
def agents(tmp_path: Path, broker: LocalBroker) -> Iterator[Agents]:
    made = Agents(tmp_path, broker, width=160, height=120, fps=FPS, segment_seconds=5)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def bridge(settings: Settings, database: Database) -> Iterator[Bridge]:
    bridge = Bridge(settings, database)
    bridge.start()
    assert bridge.wait_ready(10)
    try:
        yield bridge
    finally:
        bridge.stop()


def bridge_process(settings: Settings, broker: LocalBroker, log_file: Path) -> ServiceProcess:
    """``python -m controlsvc bridge`` as a child process (to kill -9)."""
    env = service_env(
        settings.database.url,
        broker,
        client_id=settings.mqtt.client_id,
        status_interval_s=1,
        session_start_timeout_s=START_TIMEOUT_S,
        session_lost_grace_s=LOST_GRACE_S,
    )
    return ServiceProcess(["bridge"], env, log_file)


# -- helpers --------------------------------------------------------------------------------------


def wait_idle(client, headers, eids, timeout=30.0) -> None:
    def idle() -> bool:
        states = {}
        for eid in eids:
            r = client.get(f"/api/enclosures/{eid}", headers=headers)
            states[eid] = r.get_json().get("state") if r.status_code == 200 else None
        return all(s == "idle" for s in states.values())

    wait_for(idle, timeout, message="enclosures not idle")


def create(client, headers, eids, duration_s, **body) -> dict[str, Any]:
    body = {
        "name": "e2e",
        "enclosures": [{"id": e, "file_prefix": f"cage-{e}"} for e in eids],
        "duration_s": duration_s,
        "target_fps": FPS,
        **body,
    }
    response = client.post("/api/sessions", json=body, headers=headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def get(client, headers, sid) -> dict[str, Any]:
    response = client.get(f"/api/sessions/{sid}", headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def enc(body, eid) -> dict[str, Any]:
    return next(e for e in body["enclosures"] if e["enclosure_id"] == eid)


def wait_status(client, headers, sid, statuses, timeout) -> dict[str, Any]:
    return wait_for(
        lambda: (b := get(client, headers, sid))["status"] in statuses and b,
        timeout,
        message=lambda: f"session: {get(client, headers, sid)}",
    )


def wait_enc(client, headers, sid, eid, states, timeout=30.0) -> dict[str, Any]:
    return wait_for(
        lambda: (e := enc(get(client, headers, sid), eid))["state"] in states and e,
        timeout,
        message=lambda: f"{eid}: {enc(get(client, headers, sid), eid)}",
    )


def frames_in_files(root: Path, sid: str) -> list[SidecarRow]:
    """The sidecar rows of every frame the session's files decode to, in order."""
    rows: list[SidecarRow] = []
    for path in segments(root, sid):
        decoded = len(decode_times(path))
        listed = read_sidecar(sidecar_path_for(path))
        assert len(listed) >= decoded, f"{path}: {decoded} frames, {len(listed)} sidecar rows"
        rows.extend(listed[:decoded])
    return rows


def agent_events(database: Database, eid: str, sid: str, kind: str) -> list[AgentEvent]:
    with database.sessionmaker() as session:
        return list(
            session.scalars(
                select(AgentEvent).where(
                    AgentEvent.enclosure_id == eid,
                    AgentEvent.session_id == sid,
                    AgentEvent.kind == kind,
                )
            )
        )


def no_event_twice(database: Database) -> None:
    with database.sessionmaker() as session:
        dupes = session.execute(
            select(AgentEvent.enclosure_id, AgentEvent.event_id, func.count())
            .group_by(AgentEvent.enclosure_id, AgentEvent.event_id)
            .having(func.count() > 1)
        ).all()
    assert dupes == []


# -- the scenarios --------------------------------------------------------------------------------


def test_1_three_enclosures_complete_with_the_frames_asked_for(
    client, operator, bridge, agents, database
) -> None:
    """Each enclosure records its window to the end with no frame lost (the source's frame
    numbers run on without a gap across every file), and the API reports exactly the frames
    the files decode to. How many frames a loaded machine manages is for bench/, not here."""
    for eid in EIDS:
        agents.start(eid)
    wait_idle(client, operator, EIDS)
    duration = 20
    start_at = datetime.now(UTC) + timedelta(seconds=2)
    body = create(client, operator, EIDS, duration, start_at=start_at.isoformat())
    sid = body["id"]
    assert body["status"] == "scheduled"
    wait_status(client, operator, sid, {"running"}, 10)
    done = wait_status(client, operator, sid, {"completed"}, duration + 30)
    for eid in EIDS:
        rows = frames_in_files(agents.roots[eid], sid)
        assert rows, eid
        numbers = [row.source_index for row in rows]
        assert numbers == list(range(numbers[0], numbers[0] + len(rows))), f"{eid}: frame lost"
        assert enc(done, eid)["frames"] == len(rows)
        (stopped,) = agent_events(database, eid, sid, "recording_stopped")
        assert stopped.data["reason"] == "end reached", (eid, stopped.data)
        assert enc(done, eid)["segments"] == len(segments(agents.roots[eid], sid))
    recordings = client.get(f"/api/sessions/{sid}/recordings?limit=500", headers=operator)
    items = recordings.get_json()["items"]
    assert sum(i["frames"] for i in items) == done["totals"]["frames"]
    assert all(len(i["sha256"]) == 64 for i in items)


def test_2_agent_killed_and_restarted_resumes_with_the_gap_reported(
    client, operator, bridge, agents, database
) -> None:
    for eid in EIDS[:2]:
        agents.start(eid)
    wait_idle(client, operator, EIDS[:2])
    duration = 20
    sid = create(client, operator, EIDS[:2], duration)["id"]
    wait_enc(client, operator, sid, "enc-a", {"recording"})
    # kill -9 once enc-a has footage on disk (its first 5 s segment is closed and reported)
    wait_for(
        lambda: enc(get(client, operator, sid), "enc-a")["segments"] >= 1,
        15,
        message="enc-a closed no segment",
    )
    agents.kill("enc-a")
    killed_at = datetime.now(UTC)
    # restart once the service has seen it go (its Will): a real outage, not a blip
    wait_for(
        lambda: client.get("/api/enclosures/enc-a", headers=operator).get_json()["state"] == "lost",
        15,
        message="enc-a never became lost",
    )
    restarted_at = datetime.now(UTC)
    agents.start("enc-a")
    done = wait_status(client, operator, sid, {"completed"}, duration + 40)
    a = enc(done, "enc-a")
    assert a["state"] == "completed"
    assert a["gaps"], a
    (gap,) = [g for g in a["gaps"] if g["cause"] == "agent_restart"]
    # the gap spans the outage: from a frame before the kill to one after the restart
    assert datetime.fromisoformat(gap["started_at"]) <= killed_at, (gap, killed_at)
    assert restarted_at <= datetime.fromisoformat(gap["ended_at"]), (gap, restarted_at)
    assert a["gap_s"] > 0, a
    assert enc(done, "enc-b")["gap_s"] == 0
    no_event_twice(database)


def test_3_agent_killed_for_good_times_out_and_alerts_by_mail(
    client, operator, bridge, agents, smtp
) -> None:
    """The order of what the service recorded proves the grace: the kill, then the enclosure
    lost (its Will), then the session's time-out no sooner than the grace after it."""
    sink, _port = smtp
    for eid in EIDS:
        agents.start(eid)
    wait_idle(client, operator, EIDS)
    duration = 20
    sid = create(client, operator, EIDS, duration)["id"]
    wait_enc(client, operator, sid, "enc-c", {"recording"})
    killing_at = datetime.now(UTC)
    agents.kill("enc-c")
    out = wait_enc(client, operator, sid, "enc-c", {"timed_out", "failed"}, LOST_GRACE_S + 60)
    assert out["state"] == "timed_out", out
    assert "lost" in out["message"]
    transitions = client.get("/api/enclosures/enc-c/transitions", headers=operator).get_json()
    lost_at = max(
        datetime.fromisoformat(t["at"]) for t in transitions["items"] if t["to_state"] == "lost"
    )
    timed_out_at = datetime.fromisoformat(out["state_changed_at"])
    assert killing_at <= lost_at, (killing_at, lost_at)
    assert timed_out_at - lost_at >= timedelta(seconds=LOST_GRACE_S), (lost_at, timed_out_at)
    wait_for(
        lambda: any(b"enc-c" in m.content for m in sink.messages),
        15,
        message="no alert mail",
    )
    assert any("op@example.com" in m.rcpt_tos for m in sink.messages)
    done = wait_status(client, operator, sid, {"completed_with_failures"}, duration + 40)
    assert enc(done, "enc-a")["state"] == enc(done, "enc-b")["state"] == "completed"
    assert enc(done, "enc-c")["gap_s"] > 0


def test_4_bridge_killed_mid_session_and_restarted(
    client, operator, settings, broker, agents, database, tmp_path
) -> None:
    bridge = bridge_process(settings, broker, tmp_path / "bridge-1.log")
    try:
        for eid in EIDS[:2]:
            agents.start(eid)
        wait_idle(client, operator, EIDS[:2])
        duration = 15
        sid = create(client, operator, EIDS[:2], duration)["id"]
        wait_enc(client, operator, sid, "enc-a", {"recording"})
        wait_enc(client, operator, sid, "enc-b", {"recording"})
        bridge.kill()
        bridge.close()
        bridge = bridge_process(settings, broker, tmp_path / "bridge-2.log")
        done = wait_status(client, operator, sid, {"completed"}, duration + 40)
        for eid in EIDS[:2]:
            assert enc(done, eid)["segments"] == len(segments(agents.roots[eid], sid))
        no_event_twice(database)
    finally:
        bridge.close()


def test_5_broker_restarted_mid_session(client, operator, bridge, agents, broker) -> None:
    for eid in EIDS[:2]:
        agents.start(eid)
    wait_idle(client, operator, EIDS[:2])
    duration = 15
    sid = create(client, operator, EIDS[:2], duration)["id"]
    wait_enc(client, operator, sid, "enc-a", {"recording"})
    wait_enc(client, operator, sid, "enc-b", {"recording"})
    broker.restart()
    done = wait_status(client, operator, sid, {"completed"}, duration + 40)
    for eid in EIDS[:2]:
        assert enc(done, eid)["segments"] == len(segments(agents.roots[eid], sid))


def test_6_scheduled_start_on_time_and_one_enclosure_canceled(
    client, operator, bridge, agents
) -> None:
    for eid in EIDS[:2]:
        agents.start(eid)
    wait_idle(client, operator, EIDS[:2])
    start_at = datetime.now(UTC) + timedelta(seconds=5)
    duration = 15
    sid = create(client, operator, EIDS[:2], duration, start_at=start_at.isoformat())["id"]
    assert {e["state"] for e in get(client, operator, sid)["enclosures"]} == {"pending"}
    a = wait_enc(client, operator, sid, "enc-a", {"recording"}, 20)
    assert a["confirmed_at"] is not None
    confirmed = datetime.fromisoformat(a["confirmed_at"])
    assert start_at <= confirmed, (start_at, confirmed)  # not a moment before the window
    wait_enc(client, operator, sid, "enc-b", {"recording"}, 20)
    r = client.post(f"/api/sessions/{sid}/enclosures/enc-b/cancel", headers=operator)
    assert r.status_code == 200
    # enc-b's agent stops; enc-a goes on to the end
    wait_for(
        lambda: client.get("/api/enclosures/enc-b", headers=operator).get_json()["state"] == "idle",
        15,
    )
    assert enc(get(client, operator, sid), "enc-a")["state"] in {"recording", "completed"}
    done = wait_status(client, operator, sid, {"completed"}, duration + 30)
    assert enc(done, "enc-a")["state"] == "completed"
    assert enc(done, "enc-b")["state"] == "canceled"
    frames_a = enc(done, "enc-a")["frames"]
    frames_b = enc(done, "enc-b")["frames"]
    assert frames_b < frames_a
