"""One JABS UI, two kinds of enclosure: legacy device clients (the simulator, heartbeating on
their own schedule in threads) and real agents (child processes recording real video) in the
same sessions, driven only through the JABS layer: a session to the end with a per-device stop
of each kind, and a session canceled while recording. PostgreSQL, real Mosquitto, the bridge."""

# ruff: noqa: F811 (pytest fixtures are imported by name, then requested as parameters)

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from controlsvc.compat.jabs import legacy
from controlsvc.config.settings import Settings
from controlsvc.store.db import Database
from tests.e2e.test_sessions import (  # noqa: F401 (fixtures)
    FPS,
    agent_events,
    agents,
    app,
    bridge,
    broker,
    frames_in_files,
    smtp,
)
from tests.e2e.test_sessions import settings as e2e_settings  # noqa: F401
from tests.support.auth import PASSWORD, Auth
from tests.support.broker import mosquitto_factory  # noqa: F401 (fixture)
from tests.support.jabs_device import LegacyDevice, flask_post
from tests.support.jabs_ui import JabsUi, check_session, flask_send
from tests.support.waiting import wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.mosquitto,
    pytest.mark.parametrize("db_url", ["postgres"], indirect=True),
]

LEGACY = ("box-1", "box-2", "box-3")
INTERVAL_S = 2.0  # the devices' update_interval (10 in the original's template)


@pytest.fixture
def settings(e2e_settings: Settings) -> Settings:
    jabs = e2e_settings.jabs.model_copy(
        update={"enabled": True, "heartbeat_networks": "127.0.0.1/32"}
    )
    return e2e_settings.model_copy(update={"jabs": jabs})


class Fleet:
    """Legacy devices, each beating in its own thread with its own test client, as the
    original client does: ``interval`` between heartbeats, 1 s after a command."""

    def __init__(self, app: Flask) -> None:
        self.devices: dict[str, LegacyDevice] = {}
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._app = app

    def start(self, name: str) -> LegacyDevice:
        device = LegacyDevice(name, flask_post(self._app.test_client()), interval=INTERVAL_S)
        self.devices[name] = device
        thread = threading.Thread(target=self._run, args=(device,), name=f"legacy-{name}")
        self._threads.append(thread)
        thread.start()
        return device

    def _run(self, device: LegacyDevice) -> None:
        delay = 0.0
        while not self._stop.wait(delay):
            try:
                with self._lock:
                    _command, delay = device.beat()
            except BaseException as exc:  # a crash of the real client: the test fails
                self.errors.append(exc)
                return

    def state(self, name: str) -> tuple[int | None, bool]:
        with self._lock:
            device = self.devices[name]
            return device.session_id, device.recording

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)


@pytest.fixture
def fleet(app: Flask) -> Iterator[Fleet]:
    made = Fleet(app)
    try:
        yield made
    finally:
        made.close()


def _ui(app: Flask) -> JabsUi:
    return JabsUi(flask_send(app.test_client()), api="/jabs/")


def _session(ui: JabsUi, jid: int) -> dict[str, Any]:
    status, sessions = ui.retry("GET", "recording-session")
    assert status == 200
    found = next(s for s in sessions if s["id"] == jid)
    check_session(found)
    return found


def _rows(ui: JabsUi, jid: int) -> dict[str, str]:
    return {r["device"]["name"]: r["status"] for r in _session(ui, jid)["device_statuses"]}


def _wait_rows(ui: JabsUi, jid: int, wanted: dict[str, str], timeout: float) -> None:
    wait_for(
        lambda: all(_rows(ui, jid).get(k) == v for k, v in wanted.items()),
        timeout,
        message=lambda: f"rows: {_rows(ui, jid)}",
    )


def test_mixed_session_legacy_devices_and_agents(
    app: Flask, auth: Auth, database: Database, bridge, agents, fleet: Fleet
) -> None:
    for name in LEGACY:
        with database.session() as session:
            legacy.register_legacy(session, name, with_token=False)
        fleet.start(name)
    for eid in ("enc-a", "enc-b"):
        agents.start(eid)
    auth.create("op@lab.org", role="operator")
    ui = _ui(app)
    assert ui.login("op@lab.org", PASSWORD)[0] == 200

    def states() -> dict[str, str]:
        status, devices = ui.retry("GET", "device")
        assert status == 200
        return {d["name"]: d["state"] for d in devices}

    wait_for(
        lambda: set(states().values()) == {"IDLE"} and len(states()) == 5,
        30,
        message=lambda: f"devices: {states()}",
    )
    status, devices = ui.retry("GET", "device")
    ids = {d["name"]: d["id"] for d in devices}

    # Session 1, to the end: a per-device stop of a legacy device and of an agent.
    duration = 15
    names = ("box-1", "box-2", "enc-a", "enc-b")
    status, created = ui.retry(
        "POST",
        "recording-session",
        {
            "name": "mixed",
            "duration": duration,
            "target_fps": FPS,
            "fragment_hourly": False,
            "device_spec": [{"device_id": ids[n], "filename_prefix": f"m_{n}"} for n in names],
        },
    )
    assert status == 200, created
    jid = created["id"]
    _wait_rows(ui, jid, dict.fromkeys(names, "RECORDING"), 30)
    for name in ("box-2", "enc-b"):
        path = f"recording-session/{jid}/device-status/{ids[name]}"
        assert ui.request("DELETE", path)[0] == 204
    _wait_rows(ui, jid, {"box-2": "CANCELED", "enc-b": "CANCELED"}, 10)
    # The stopped legacy device gets STOP, then COMPLETE: it drops the session.
    wait_for(lambda: fleet.state("box-2") == (None, False), 20, message="box-2 kept its session")
    done = wait_for(
        lambda: (s := _session(ui, jid))["status"] == "COMPLETE" and s,
        duration + 40,
        message=lambda: f"session: {_session(ui, jid)}",
    )
    outcome = {r["device"]["name"]: r["status"] for r in done["device_statuses"]}
    assert outcome == {
        "box-1": "COMPLETE",
        "box-2": "CANCELED",
        "enc-a": "COMPLETE",
        "enc-b": "CANCELED",
    }
    times = {r["device"]["name"]: r["recording_time"] for r in done["device_statuses"]}
    assert times["box-1"] >= duration - 3
    assert times["enc-a"] >= duration - 3
    wait_for(lambda: fleet.state("box-1") == (None, False), 20, message="box-1 kept its session")
    # The agent recorded real video for it.
    from controlsvc.store.models.jabs import JabsSession

    with database.session() as session:
        row = session.get(JabsSession, jid)
        assert row is not None
        sid = row.session_id
    # to the end of the session, with no frame lost: the source's numbers run on without a gap
    rows = frames_in_files(agents.roots["enc-a"], sid)
    assert rows
    numbers = [row.source_index for row in rows]
    assert numbers == list(range(numbers[0], numbers[0] + len(rows))), "a frame was lost"
    (stopped,) = agent_events(database, "enc-a", sid, "recording_stopped")
    assert stopped.data["reason"] == "end reached", stopped.data

    # Session 2: canceled while a legacy device and an agent record.
    status, second = ui.retry(
        "POST",
        "recording-session",
        {
            "name": "to cancel",
            "duration": 600,
            "device_spec": [{"device_id": ids["box-3"]}, {"device_id": ids["enc-a"]}],
        },
    )
    assert status == 200
    jid2 = second["id"]
    _wait_rows(ui, jid2, {"box-3": "RECORDING", "enc-a": "RECORDING"}, 30)
    assert ui.request("DELETE", f"recording-session/{jid2}")[0] == 204
    canceled = _session(ui, jid2)
    assert canceled["status"] == "CANCELED"
    assert set(_rows(ui, jid2).values()) == {"CANCELED"}
    wait_for(lambda: fleet.state("box-3") == (None, False), 20, message="box-3 kept its session")
    wait_for(
        lambda: set(states().values()) == {"IDLE"},
        30,
        message=lambda: f"devices: {states()}",
    )
    assert fleet.errors == []
