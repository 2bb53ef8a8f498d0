"""The JABS layer through HTTP, over a real broker and bridge (both backends): the original
UI's calls, errors, tokens and CORS, and legacy devices' heartbeats driving sessions."""

# ruff: noqa: F811 (pytest fixtures are imported by name, then requested as parameters)

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask_jwt_extended import create_access_token

from controlsvc.compat.jabs import legacy
from controlsvc.config.settings import Settings
from controlsvc.mqtt.publisher import PUBLISHER_KEY
from controlsvc.ops.app import create_app
from controlsvc.store.db import Database
from tests.integration.bridge_fixtures import PREFIX as PREFIX_TOPICS
from tests.integration.bridge_fixtures import (  # noqa: F401 (fixtures)
    agents,
    bridge_settings,
    broker,
    make_bridge,
    mosquitto_factory,
)
from tests.support.auth import PASSWORD, Auth
from tests.support.jabs_device import LegacyDevice, flask_post
from tests.support.waiting import wait_for

pytestmark = pytest.mark.mosquitto

PREFIX = "/jabs"


@pytest.fixture
def settings(settings: Settings, broker) -> Settings:
    base = bridge_settings(settings, broker, session_start_timeout_s=5.0)
    jabs = base.jabs.model_copy(update={"enabled": True, "heartbeat_networks": "127.0.0.0/8"})
    return base.model_copy(update={"jabs": jabs})


@pytest.fixture
def app(settings: Settings, database: Database) -> Iterator[Flask]:
    app = create_app(settings, database=database)
    yield app
    app.extensions[PUBLISHER_KEY].close()


@pytest.fixture
def bridge(settings, make_bridge):
    return make_bridge(settings)


def claims(token: str) -> dict[str, Any]:
    """A JWT's payload decoded without verifying it, as the UI does."""
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def login(client: FlaskClient, email: str, password: str = PASSWORD) -> dict[str, str]:
    response = client.post(
        f"{PREFIX}/auth/login", json={"email_address": email, "password": password}
    )
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def register(database: Database, name: str, *, token: bool = False) -> legacy.LegacyDevice:
    with database.session() as session:
        return legacy.register_legacy(session, name, with_token=token)


# -- disabled by default ------------------------------------------------------------------------


def test_layer_is_off_by_default(settings: Settings, database: Database) -> None:
    off = settings.model_copy(update={"jabs": settings.jabs.model_copy(update={"enabled": False})})
    app = create_app(off, database=database)
    try:
        client = app.test_client()
        response = client.post(f"{PREFIX}/auth/login", json={"email_address": "a", "password": "b"})
        assert response.status_code == 404
        assert client.post(f"{PREFIX}/device/heartbeat", json={}).status_code == 404
    finally:
        app.extensions[PUBLISHER_KEY].close()


# -- auth -------------------------------------------------------------------------------------


def test_login_tokens_carry_the_identity_the_ui_reads(client: FlaskClient, auth: Auth) -> None:
    admin = auth.admin("Admin@Example.com")
    tokens = login(client, "ADMIN@example.com")  # the email matches case-insensitively
    assert set(tokens) == {"access", "refresh"}
    access, refresh = claims(tokens["access"]), claims(tokens["refresh"])
    assert access["identity"] == {
        "uid": admin.id,
        "email_address": "admin@example.com",
        "admin": True,
    }
    now = time.time()
    assert now < access["exp"] <= now + 15 * 60 + 5
    assert now + 29 * 24 * 3600 < refresh["exp"]

    operator = auth.create("op@example.com", role="operator")
    assert claims(login(client, operator.email)["access"])["identity"]["admin"] is False


def test_bad_login_is_401_with_message(client: FlaskClient, auth: Auth) -> None:
    auth.admin()
    response = client.post(
        f"{PREFIX}/auth/login", json={"email_address": "admin@example.com", "password": "nope"}
    )
    assert response.status_code == 401
    assert response.mimetype == "application/json"
    assert response.get_json() == {"message": "unable to authenticate user"}
    response = client.post(f"{PREFIX}/auth/login", json={"email_address": "x@example.com"})
    assert response.status_code == 400
    body = response.get_json()
    assert "password" in body["message"]
    assert body["errors"]["password"]


def test_missing_and_expired_tokens_are_401_then_refresh_gives_access(
    app: Flask, client: FlaskClient, auth: Auth
) -> None:
    admin = auth.admin()
    response = client.get(f"{PREFIX}/device")
    assert response.status_code == 401
    assert isinstance(response.get_json()["message"], str)
    with app.test_request_context():
        expired = create_access_token(str(admin.id), expires_delta=timedelta(seconds=-60))
    response = client.get(f"{PREFIX}/device", headers=bearer(expired))
    assert response.status_code == 401
    assert "expired" in response.get_json()["message"]

    tokens = login(client, admin.email)
    response = client.post(f"{PREFIX}/auth/refresh", headers=bearer(tokens["refresh"]))
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {"access"}
    assert claims(body["access"])["identity"]["uid"] == admin.id
    # The new access token belongs to the refresh token's login, so revoking it reaches it.
    assert claims(body["access"])["fam"] == claims(tokens["refresh"])["fam"]
    assert client.get(f"{PREFIX}/device", headers=bearer(body["access"])).status_code == 200
    # An access token does not refresh.
    assert client.post(f"{PREFIX}/auth/refresh", headers=bearer(body["access"])).status_code == 401


def test_cors_preflight_and_headers(client: FlaskClient) -> None:
    response = client.options(
        f"{PREFIX}/recording-session",
        headers={
            "Origin": "http://ui.example.org",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    for method in ("GET", "POST", "PUT", "DELETE"):
        assert method in response.headers["Access-Control-Allow-Methods"]
    allowed = response.headers["Access-Control-Allow-Headers"].lower()
    assert "authorization" in allowed
    assert "content-type" in allowed
    response = client.get(f"{PREFIX}/device", headers={"Origin": "http://ui.example.org"})
    assert response.status_code == 401
    assert response.headers["Access-Control-Allow-Origin"] == "*"


# -- users ------------------------------------------------------------------------------------


def test_invite_reset_and_change_password(client: FlaskClient, auth: Auth) -> None:
    admin = auth.admin()
    admin_token = login(client, admin.email)["access"]
    operator = auth.create("op@example.com", role="operator")
    op_token = login(client, operator.email)["access"]
    url = "http://evil.example.org/password-reset"  # the client's url is never used

    response = client.post(
        f"{PREFIX}/user/invite",
        json={"email": "new@example.com", "admin": False, "url": url},
        headers=bearer(op_token),
    )
    assert response.status_code == 403
    assert response.get_json()["message"] == "You are unauthorized to perform this action"

    response = client.post(
        f"{PREFIX}/user/invite",
        json={"email": "new@example.com", "admin": False, "url": url},
        headers=bearer(admin_token),
    )
    assert response.status_code == 204, response.get_json()
    mail = auth.mails()[-1]
    assert mail.to == "new@example.com"
    assert "evil" not in mail.text
    link = next(w for w in mail.text.split() if "/password-reset/" in w)
    uid, token = link.split("/password-reset/")[1].split("/")
    assert link.startswith("http://testserver/password-reset/")
    short = client.post(f"{PREFIX}/user/{uid}/reset_password/{token}", json={"password": "short"})
    assert short.status_code == 400
    assert "8" in short.get_json()["message"]
    wrong_user = client.post(
        f"{PREFIX}/user/{admin.id}/reset_password/{token}", json={"password": "fresh-pass-918"}
    )
    assert wrong_user.status_code == 401
    assert client.post(
        f"{PREFIX}/user/999999/reset_password/{token}", json={"password": "fresh-pass-918"}
    ).get_json() == {"message": "user not found"}
    response = client.post(
        f"{PREFIX}/user/{uid}/reset_password/{token}", json={"password": "fresh-pass-918"}
    )
    assert response.status_code == 204
    new = login(client, "new@example.com", "fresh-pass-918")
    assert claims(new["access"])["identity"]["admin"] is False
    used = client.post(
        f"{PREFIX}/user/{uid}/reset_password/{token}", json={"password": "fresh-pass-918"}
    )
    assert used.status_code == 401
    assert isinstance(used.get_json()["message"], str)

    # Forgot password: 202 whatever the address, a link only for a real account.
    count = len(auth.mails())
    for email in ("nobody@example.com", "new@example.com"):
        response = client.post(f"{PREFIX}/user/send_pw_reset", json={"email": email, "url": url})
        assert response.status_code == 202
    mails = auth.mails()
    assert len(mails) == count + 1
    assert mails[-1].to == "new@example.com"
    link = next(w for w in mails[-1].text.split() if "/password-reset/" in w)
    uid, token = link.split("/password-reset/")[1].split("/")
    response = client.post(
        f"{PREFIX}/user/{uid}/reset_password/{token}", json={"password": "other-pass-527"}
    )
    assert response.status_code == 204

    # Change password: own uid only; the UI shows `message`.
    new = login(client, "new@example.com", "other-pass-527")
    response = client.put(
        f"{PREFIX}/user/{admin.id}/change_password",
        json={"old_password": "other-pass-527", "new_password": "third-pass-341"},
        headers=bearer(new["access"]),
    )
    assert response.status_code == 403
    response = client.put(
        f"{PREFIX}/user/{uid}/change_password",
        json={"old_password": "wrong-one-000", "new_password": "third-pass-341"},
        headers=bearer(new["access"]),
    )
    assert response.status_code == 400
    assert "current password" in response.get_json()["message"]
    response = client.put(
        f"{PREFIX}/user/{uid}/change_password",
        json={"old_password": "other-pass-527", "new_password": "third-pass-341"},
        headers=bearer(new["access"]),
    )
    assert response.status_code == 204
    login(client, "new@example.com", "third-pass-341")


# -- heartbeats -------------------------------------------------------------------------------


def test_heartbeats_need_registration_and_a_network_or_token(
    client: FlaskClient, settings: Settings, database: Database, auth: Auth
) -> None:
    stranger = LegacyDevice("stranger-host", flask_post(client))
    status, body = stranger.post(stranger.path, stranger.heartbeat())
    assert status == 403
    assert "not registered" in body["message"]

    device = register(database, "Box-07")  # networks only (the test client is 127.0.0.1)
    assert device.enclosure_id == "box-07"
    assert device.token is None
    box = LegacyDevice("Box-07", flask_post(client))
    assert box.beat() == (None, box.interval)
    assert box.log[-1] == (204, None)

    # From an untrusted address: only with the device's token.
    with_token = register(database, "box-08", token=True)
    assert with_token.token
    far = LegacyDevice("box-08", flask_post(client))
    environ = {"REMOTE_ADDR": "10.9.9.9"}
    response = client.post(far.path, json=far.heartbeat(), environ_base=environ)
    assert response.status_code == 403
    assert "heartbeat_networks" in response.get_json()["message"]
    tokened = f"{PREFIX}/device-token/{with_token.token}/device/heartbeat"
    response = client.post(tokened, json=far.heartbeat(), environ_base=environ)
    assert response.status_code == 204
    wrong = f"{PREFIX}/device-token/not-the-token/device/heartbeat"
    response = client.post(wrong, json=far.heartbeat(), environ_base=environ)
    assert response.status_code == 403

    # What the UI reads of a device.
    admin = auth.admin()
    devices = client.get(f"{PREFIX}/device", headers=auth.headers(admin)).get_json()
    assert isinstance(devices, list)
    shown = {d["name"]: d for d in devices}
    box07 = shown["Box-07"]
    assert isinstance(box07["id"], int)
    assert box07["state"] == "IDLE"
    assert box07["location"] == "room 1"
    assert box07["sensor_status"]["camera"] == {"recording": False}
    assert box07["system_info"] == {
        "release": "Ubuntu 16.04",
        "uptime": 12345,
        "load": 0.5,
        "total_ram": 8_000_000,
        "free_ram": 4_000_000,
        "total_disk": 900_000,
        "free_disk": 500_000,
    }
    assert box07["last_update"].endswith("+00:00")

    # A retired enclosure's device is refused (and gone from the list).
    from controlsvc.store.models.enclosures import Enclosure

    with database.session() as session:
        enc = session.get(Enclosure, "box-07")
        assert enc is not None
        enc.retired_at = enc.registered_at
    status, body = box.post(box.path, box.heartbeat())
    assert status == 403
    assert "retired" in body["message"]
    listed = client.get(f"{PREFIX}/device", headers=auth.headers(admin)).get_json()
    assert "Box-07" not in {d["name"] for d in listed}


def test_bad_heartbeats_get_a_clear_400_never_a_crash(
    client: FlaskClient, database: Database
) -> None:
    register(database, "box-09")
    good = LegacyDevice("box-09", flask_post(client)).heartbeat()
    cases = [
        ({**good, "sensor_status": {"camera": {}}}, "sensor_status.camera.recording"),
        ({**good, "timestamp": "yesterday"}, "timestamp"),
        ({**good, "system_info": {**good["system_info"], "uptime": "long"}}, "system_info.uptime"),
        ({**good, "session_id": "7"}, "session_id"),
    ]
    for body, field in cases:
        response = client.post(f"{PREFIX}/device/heartbeat", json=body)
        assert response.status_code == 400, body
        answer = response.get_json()
        assert field in answer["errors"], answer
        assert all(isinstance(v, str) for v in answer["errors"].values())
    response = client.post(
        f"{PREFIX}/device/heartbeat", data="not json", content_type="application/json"
    )
    assert response.status_code == 400
    assert isinstance(response.get_json()["message"], str)
    # Unknown fields are accepted, 'Z' with 7 fractional digits is parsed; the device's clock
    # offset lands in the status.
    an_hour_ago = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.1234567Z")
    extra = {**good, "timestamp": an_hour_ago, "firmware": {"x": 1}}
    assert client.post(f"{PREFIX}/device/heartbeat", json=extra).status_code == 204
    from controlsvc.store.models.enclosures import Enclosure

    with database.session() as session:
        enc = session.get(Enclosure, "box-09")
        assert enc is not None
        assert enc.status is not None
        clock = enc.status["clock"]
    assert clock["skewed"] is True
    assert -3610 < clock["offset_s"] < -3590


# -- sessions: legacy devices and an MQTT agent together -----------------------------------------


def our_session_id(database: Database, jid: int) -> str:
    from controlsvc.store.models.jabs import JabsSession

    with database.session() as session:
        row = session.get(JabsSession, jid)
        assert row is not None
        return row.session_id


def agent_event(agent, kind: str, sid: str, **data: Any) -> None:
    agent.publish(
        f"{PREFIX_TOPICS}/enc/{agent.eid}/events",
        json.dumps(
            {
                "v": 1,
                "at": datetime.now(UTC).isoformat(),
                "event_id": uuid.uuid4().hex,
                "kind": kind,
                "session_id": sid,
                "data": data,
            }
        ).encode(),
    )


def rows_of(client: FlaskClient, headers: dict[str, str], jid: int) -> dict[str, Any] | None:
    listed = client.get(f"{PREFIX}/recording-session", headers=headers)
    assert listed.status_code == 200
    found = [s for s in listed.get_json() if s["id"] == jid]
    return found[0] if found else None


def statuses(found: dict[str, Any] | None) -> dict[str, str]:
    assert found is not None
    return {d["device"]["name"]: d["status"] for d in found["device_statuses"]}


@pytest.mark.slow  # legacy devices and an agent through a whole session
def test_mixed_session_with_a_per_device_stop_then_a_cancel(
    client: FlaskClient, database: Database, auth: Auth, bridge, agents
) -> None:
    agent = agents("enc-a", interval=1.0)
    agent.online()
    wait_for(lambda: agent_state(database, "enc-a") == "idle")
    register(database, "box-1")
    register(database, "box-2")
    box1, box2 = (
        LegacyDevice("box-1", flask_post(client)),
        LegacyDevice("box-2", flask_post(client)),
    )
    box1.beat()
    box2.beat()
    operator = auth.create("op@example.com", role="operator")
    headers = bearer(login(client, operator.email)["access"])

    devices = {d["name"]: d for d in client.get(f"{PREFIX}/device", headers=headers).get_json()}
    assert {devices[n]["state"] for n in ("box-1", "box-2", "enc-a")} == {"IDLE"}
    spec = [{"device_id": devices[n]["id"]} for n in ("box-1", "box-2", "enc-a")]
    response = client.post(
        f"{PREFIX}/recording-session",
        json={"name": "mixed", "duration": 4, "device_spec": spec, "target_fps": 15},
        headers=headers,
    )
    assert response.status_code == 200, response.get_json()
    created = response.get_json()
    jid = created["id"]
    assert isinstance(jid, int)
    assert created["status"] == "IN_PROGRESS"
    assert created["creation_time"].endswith("+00:00")
    assert statuses(created) == {"box-1": "PENDING", "box-2": "PENDING", "enc-a": "PENDING"}
    sid = our_session_id(database, jid)

    # Busy devices cannot be given another session; unknown ids are named.
    again = client.post(
        f"{PREFIX}/recording-session",
        json={"name": "again", "duration": 4, "device_spec": spec[:1]},
        headers=headers,
    )
    assert again.status_code == 409
    assert "box-1" in again.get_json()["message"]
    unknown = client.post(
        f"{PREFIX}/recording-session",
        json={"name": "x", "duration": 4, "device_spec": [{"device_id": 99999}]},
        headers=headers,
    )
    assert unknown.get_json() == {"message": "Invalid device IDs: [99999]"}

    # START carries its parameters as a JSON string; the device re-polls after 1 s.
    assert box1.beat() == ("START", 1.0)
    assert box1.parameters is not None
    assert box1.parameters["session_id"] == jid
    assert box1.parameters["target_fps"] == 15
    assert 1 <= box1.parameters["duration"] <= 4
    assert box1.parameters["file_prefix"] == "video_recording"
    assert box2.beat() == ("START", 1.0)
    agent_event(agent, "recording_started", sid)
    assert box1.beat() == (None, box1.interval)
    assert box2.beat() == (None, box2.interval)
    wait_for(
        lambda: set(statuses(rows_of(client, headers, jid)).values()) == {"RECORDING"},
        message=lambda: str(rows_of(client, headers, jid)),
    )
    devices = {d["name"]: d for d in client.get(f"{PREFIX}/device", headers=headers).get_json()}
    assert devices["box-1"]["state"] == "BUSY"
    assert devices["box-1"]["sensor_status"]["camera"]["recording"] is True

    # Live view: the keep-alive makes the next heartbeat STREAM; none: streaming stops.
    assert (
        client.get(f"{PREFIX}/device/stream/{devices['box-1']['id']}", headers=headers).get_json()
        is None
    )
    assert box1.beat() == ("STREAM", box1.interval)
    assert box1.streaming
    idle_stream = client.get(f"{PREFIX}/device/stream/{devices['enc-a']['id']}", headers=headers)
    assert idle_stream.status_code == 503
    assert idle_stream.get_json()["message"]
    assert client.get(f"{PREFIX}/device/stream/99999", headers=headers).status_code == 404

    # A per-device stop: STOP, then COMPLETE drops the session; the others go on.
    stop = f"{PREFIX}/recording-session/{jid}/device-status/{devices['box-2']['id']}"
    assert client.delete(stop, headers=headers).status_code == 204
    assert client.delete(stop, headers=headers).status_code == 204  # idempotent
    assert box2.beat() == ("STOP", 1.0)
    assert not box2.recording
    assert box2.beat() == ("COMPLETE", 1.0)
    assert box2.session_id is None
    assert box2.beat() == (None, box2.interval)
    assert statuses(rows_of(client, headers, jid))["box-2"] == "CANCELED"

    # To the end: box-1 stops by itself, reports, gets COMPLETE; the agent reports its end.
    wait_for(lambda: box1.beat()[0] == "COMPLETE", timeout=15, interval=0.2)
    agent_event(agent, "recording_stopped", sid, reason="end reached", recorded_s=4.0)
    done = wait_for(
        lambda: (
            (found := rows_of(client, headers, jid)) and found["status"] == "COMPLETE" and found
        ),
        message=lambda: str(rows_of(client, headers, jid)),
    )
    assert statuses(done) == {"box-1": "COMPLETE", "box-2": "CANCELED", "enc-a": "COMPLETE"}
    times = {d["device"]["name"]: d["recording_time"] for d in done["device_statuses"]}
    assert times["box-1"] >= 3

    # Delete (archive): gone from the list the UI polls.
    archive = client.delete(f"{PREFIX}/recording-session/{jid}?archive=true", headers=headers)
    assert archive.status_code == 204
    assert rows_of(client, headers, jid) is None

    # A second session, canceled while recording.
    response = client.post(
        f"{PREFIX}/recording-session",
        json={"name": "canceled", "duration": 600, "device_spec": spec[:1]},
        headers=headers,
    )
    jid2 = response.get_json()["id"]
    assert jid2 != jid
    assert box1.beat()[0] == "START"
    box1.beat()
    wait_for(lambda: statuses(rows_of(client, headers, jid2)) == {"box-1": "RECORDING"})
    assert client.delete(f"{PREFIX}/recording-session/{jid2}", headers=headers).status_code == 204
    found = rows_of(client, headers, jid2)
    assert found is not None
    assert found["status"] == "CANCELED"
    assert statuses(found) == {"box-1": "CANCELED"}
    assert box1.beat() == ("STOP", 1.0)
    assert box1.beat() == ("COMPLETE", 1.0)
    assert box1.beat() == (None, box1.interval)
    assert client.delete(f"{PREFIX}/recording-session/{jid2}", headers=headers).status_code == 204
    assert client.delete(f"{PREFIX}/recording-session/99999", headers=headers).status_code == 404


def agent_state(database: Database, eid: str) -> str | None:
    from controlsvc.store.models.enclosures import Enclosure

    with database.session() as session:
        enc = session.get(Enclosure, eid)
        return enc.state if enc else None


def test_a_legacy_device_moved_to_the_agent_keeps_its_id_and_history(
    client: FlaskClient, database: Database, auth: Auth, bridge, agents
) -> None:
    """docs/jabs-migration.md, step 8: the old client stops, the agent takes its enclosure."""
    with database.session() as session:
        device = legacy.register_legacy(session, "LTM-7", enclosure_id="enc-c", with_token=False)
    old = LegacyDevice("LTM-7", flask_post(client))
    old.beat()
    headers = bearer(login(client, auth.admin().email)["access"])
    before = {d["name"]: d for d in client.get(f"{PREFIX}/device", headers=headers).get_json()}
    assert before["LTM-7"]["id"] == device.jabs_id
    assert before["LTM-7"]["state"] == "IDLE"

    with database.session() as session:
        legacy.unregister_legacy(session, "LTM-7")
    status, answer = old.post(old.path, old.heartbeat())
    assert status == 403
    assert "not registered" in answer["message"]
    agent = agents("enc-c", interval=1.0)
    agent.online()

    def shown() -> dict[str, Any]:
        listed = client.get(f"{PREFIX}/device", headers=headers).get_json()
        return next(d for d in listed if d["name"] == "LTM-7")

    moved = wait_for(
        lambda: (
            (d := shown())["state"] == "IDLE"
            and d["system_info"]["release"] != "Ubuntu 16.04"
            and d
        )
    )
    assert moved["id"] == device.jabs_id


def test_x_real_ip_counts_only_from_trusted_proxies(settings: Settings, database: Database) -> None:
    register(database, "box-5")
    for proxies, address, expected in (
        ("", "10.9.9.9", 204),  # the header is not trusted: the peer (127.0.0.1) counts
        ("127.0.0.1/32", "10.9.9.9", 403),  # a trusted proxy names a foreign address
        ("127.0.0.1/32", "127.0.0.5", 204),
    ):
        jabs = settings.jabs.model_copy(update={"trusted_proxies": proxies})
        app = create_app(settings.model_copy(update={"jabs": jabs}), database=database)
        try:
            box = LegacyDevice("box-5", flask_post(app.test_client()))
            response = app.test_client().post(
                box.path, json=box.heartbeat(), headers={"X-Real-IP": address}
            )
            assert response.status_code == expected, (proxies, address, response.get_json())
        finally:
            app.extensions[PUBLISHER_KEY].close()


def test_cors_with_a_list_of_origins(settings: Settings, database: Database) -> None:
    jabs = settings.jabs.model_copy(update={"cors_origins": "https://ui.lab.org, http://dev:4200"})
    app = create_app(settings.model_copy(update={"jabs": jabs}), database=database)
    try:
        client = app.test_client()
        for origin, allowed in (("http://dev:4200", True), ("https://evil.example", False)):
            response = client.options(
                f"{PREFIX}/device",
                headers={"Origin": origin, "Access-Control-Request-Method": "GET"},
            )
            assert response.headers.get("Access-Control-Allow-Origin") == (
                origin if allowed else None
            )
            if allowed:
                assert "Origin" in response.headers["Vary"]
    finally:
        app.extensions[PUBLISHER_KEY].close()


@pytest.mark.slow  # waits for down_after_s to pass
def test_a_silent_legacy_device_goes_down_and_comes_back(
    settings: Settings, database: Database, auth: Auth, bridge
) -> None:
    """DOWN after [JABS] down_after_s of silence (the bridge's liveness timer), IDLE again at
    the next heartbeat."""
    jabs = settings.jabs.model_copy(update={"down_after_s": 2.0})
    app = create_app(settings.model_copy(update={"jabs": jabs}), database=database)
    try:
        client = app.test_client()
        register(database, "box-6")
        box = LegacyDevice("box-6", flask_post(client))
        box.beat()
        headers = auth.headers(auth.admin())

        def state() -> str:
            listed = client.get(f"{PREFIX}/device", headers=headers).get_json()
            return str(next(d["state"] for d in listed if d["name"] == "box-6"))

        assert state() == "IDLE"
        wait_for(lambda: state() == "DOWN", timeout=20, message=lambda: state())
        box.beat()
        assert state() == "IDLE"
    finally:
        app.extensions[PUBLISHER_KEY].close()
