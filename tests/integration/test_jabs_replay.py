"""A replay of the original JABS UI: every call it makes (jabs-compat.md §2, §4), in the order
a lab member's day makes them, through the UI's interceptor behaviour (bearer tokens, one
refresh and replay on 401, logout when that fails, retry(3)), checking every field it reads.
Legacy devices (the simulator) make the sessions progress; both backends."""

# ruff: noqa: F811 (pytest fixtures are imported by name, then requested as parameters)

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask_jwt_extended import create_access_token

from controlsvc.compat.jabs import legacy
from controlsvc.store.db import Database
from tests.integration.bridge_fixtures import (  # noqa: F401 (fixtures)
    agents,
    broker,
    make_bridge,
    mosquitto_factory,
)
from tests.integration.test_jabs_api import app, bridge, settings  # noqa: F401
from tests.support.auth import PASSWORD, Auth
from tests.support.jabs_device import LegacyDevice, flask_post
from tests.support.jabs_ui import JabsUi, check_device, check_session, flask_send
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.mosquitto, pytest.mark.slow]  # a whole day with device simulators

API = "/jabs/"


def session_by_id(ui: JabsUi, jid: int) -> dict[str, Any] | None:
    status, sessions = ui.retry("GET", "recording-session")
    assert status == 200
    assert isinstance(sessions, list)
    for session in sessions:
        check_session(session)
    return next((s for s in sessions if s["id"] == jid), None)


def rows(found: dict[str, Any] | None) -> dict[str, str]:
    assert found is not None
    return {r["device"]["name"]: r["status"] for r in found["device_statuses"]}


def test_replay_of_the_original_ui(
    app: Flask, client: FlaskClient, database: Database, auth: Auth, bridge
) -> None:
    admin = auth.admin("admin@lab.org")
    auth.create("tech@lab.org", role="operator")
    for name in ("box-1", "box-2"):
        with database.session() as session:
            legacy.register_legacy(session, name, with_token=False)
    box1, box2 = (
        LegacyDevice("box-1", flask_post(client)),
        LegacyDevice("box-2", flask_post(client)),
    )
    box1.beat()
    box2.beat()
    ui = JabsUi(flask_send(client), api=API)

    # /login: a wrong password shows `message`; then both tokens, and the identity.
    status, answer = ui.login(admin.email, "not-the-password")
    assert status == 401
    assert answer["message"] == "unable to authenticate user"
    assert ui.login("ADMIN@lab.org", PASSWORD)[0] == 200
    assert ui.logged_in()
    identity = ui.identity()
    assert identity == {"uid": admin.id, "email_address": "admin@lab.org", "admin": True}

    # /dashboard: devices every 5 s, sessions every 10 s.
    status, devices = ui.retry("GET", "device")
    assert status == 200
    for device in devices:
        check_device(device)
    ids = {d["name"]: d["id"] for d in devices}
    assert {d["state"] for d in devices} == {"IDLE"}
    assert ui.retry("GET", "recording-session") == (200, [])
    # The live-stream dialog of an idle device: unavailable.
    assert ui.request("GET", f"device/stream/{ids['box-1']}")[0] == 503

    # /new-session: the device list once, then the POST with what the form sends.
    assert ui.retry("GET", "device")[0] == 200
    body = {
        "name": "replay",
        "duration": 3,
        "fragment_hourly": True,
        "target_fps": 30,
        "apply_filter": True,
        "device_spec": [
            {"device_id": ids["box-1"], "filename_prefix": "video_recording"},
            {"device_id": ids["box-2"], "filename_prefix": "cage_2"},
        ],
    }
    status, created = ui.retry("POST", "recording-session", body)
    assert status == 200
    check_session(created)
    jid = created["id"]
    # A failing POST is sent four times: the answer is the same each time.
    before = len(ui.calls)
    status, answer = ui.retry("POST", "recording-session", body)
    assert status == 409
    assert "box-1" in answer["message"]
    repeated = ui.calls[before:]
    assert [(c.method, c.status) for c in repeated] == [("POST", 409)] * 4

    # The session table while the devices start, record and stream.
    assert rows(session_by_id(ui, jid)) == {"box-1": "PENDING", "box-2": "PENDING"}
    assert box1.beat()[0] == "START"
    assert box2.beat()[0] == "START"
    assert box2.parameters is not None
    assert box2.parameters["file_prefix"] == "cage_2"
    box1.beat()
    box2.beat()
    found = session_by_id(ui, jid)
    assert found is not None
    assert found["status"] == "IN_PROGRESS"
    assert rows(found) == {"box-1": "RECORDING", "box-2": "RECORDING"}
    status, devices = ui.retry("GET", "device")
    assert {d["name"]: d["state"] for d in devices} == {"box-1": "BUSY", "box-2": "BUSY"}
    assert ui.request("GET", f"device/stream/{ids['box-1']}")[0] == 200
    assert box1.beat()[0] == "STREAM"

    # The access token expires: one refresh, one replay, the dashboard goes on.
    with app.test_request_context():
        ui.storage["access_token"] = create_access_token(
            str(admin.id), expires_delta=timedelta(seconds=-5)
        )
    before = len(ui.calls)
    assert session_by_id(ui, jid) is not None
    assert [(c.method, c.path, c.status) for c in ui.calls[before:]] == [
        ("GET", "recording-session", 401),
        ("POST", "auth/refresh", 200),
        ("GET", "recording-session", 200),
    ]

    # Stop one device (offered on RECORDING rows); the other records to the end.
    assert ui.request("DELETE", f"recording-session/{jid}/device-status/{ids['box-2']}")[0] == 204
    assert rows(session_by_id(ui, jid))["box-2"] == "CANCELED"
    assert box2.beat()[0] == "STOP"
    assert box2.beat()[0] == "COMPLETE"
    wait_for(lambda: box1.beat()[0] == "COMPLETE", timeout=15, interval=0.2)
    done = wait_for(
        lambda: (s := session_by_id(ui, jid)) and s["status"] == "COMPLETE" and s,
        message=lambda: str(session_by_id(ui, jid)),
    )
    assert rows(done) == {"box-1": "COMPLETE", "box-2": "CANCELED"}
    # Delete (offered when not IN_PROGRESS): it must drop out of the list.
    assert ui.request("DELETE", f"recording-session/{jid}?archive=true")[0] == 204
    assert session_by_id(ui, jid) is None

    # A second session, canceled from the table while IN_PROGRESS.
    status, second = ui.retry("POST", "recording-session", {**body, "duration": 600})
    assert status == 200
    assert ui.request("DELETE", f"recording-session/{second['id']}")[0] == 204
    canceled = session_by_id(ui, second["id"])
    assert canceled is not None
    assert canceled["status"] == "CANCELED"
    assert set(rows(canceled).values()) == {"CANCELED"}

    # Admin menu: invite; a non-admin sees the error message.
    status, _ = ui.request(
        "POST",
        "user/invite",
        {"email": "new@lab.org", "admin": False, "url": "https://jabs.lab.org/password-reset"},
    )
    assert status == 204
    tech = JabsUi(flask_send(client), api=API)
    assert tech.login("tech@lab.org", PASSWORD)[0] == 200
    assert tech.identity()["admin"] is False
    status, answer = tech.request(
        "POST", "user/invite", {"email": "x@lab.org", "admin": True, "url": "https://x/y"}
    )
    assert status == 403
    assert answer["message"] == "You are unauthorized to perform this action"

    # The invitation link opens /password-reset/<uid>/<token> (no token sent).
    link = next(w for w in auth.mails()[-1].text.split() if "/password-reset/" in w)
    uid, token = link.split("/password-reset/")[1].split("/")
    assert int(uid) > 0
    anonymous = JabsUi(flask_send(client), api=API)
    status, _ = anonymous.request(
        "POST", f"user/{uid}/reset_password/{token}", {"password": "fresh-pass-918"}
    )
    assert status == 204
    assert anonymous.login("new@lab.org", "fresh-pass-918")[0] == 200

    # /forgot-password (no token sent): "Submitted".
    assert (
        anonymous.request("POST", "user/send_pw_reset", {"email": "x@y.org", "url": "u"})[0] == 202
    )

    # User menu: change password (uid from the identity). Our tokens issued before a password
    # change stop working: the next call's refresh fails and the UI goes to /login.
    status, _ = ui.request(
        "PUT",
        f"user/{identity['uid']}/change_password",
        {"old_password": PASSWORD, "new_password": "changed-pass-572"},
    )
    assert status == 204
    assert ui.request("GET", "device")[0] == 401
    assert not ui.storage
    assert ui.location == "/login?next=/dashboard"
    assert ui.login(admin.email, "changed-pass-572")[0] == 200
