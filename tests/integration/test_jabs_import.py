"""`jaxmba-service import_jabs` from a JABS-shaped database built here, on SQLite and
PostgreSQL (the source on the same backend as ours): users with their old passwords, devices
as enclosures, the session history with each device's outcome; a dry run; run twice."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import URL

from controlsvc.config.settings import Settings
from controlsvc.mqtt.publisher import PUBLISHER_KEY
from controlsvc.ops.app import create_app
from controlsvc.store.db import Database
from controlsvc.store.models.enclosures import Enclosure
from controlsvc.store.models.sessions import RecordingSession
from controlsvc.store.models.users import User
from tests.integration.test_cli import db_env, entry, invoke, workdir  # noqa: F401 (fixtures)
from tests.support.postgres import create_database, drop_database

SALT = "6fa459ea-ee8a-11e9-9ad8-0242ac120002"
OLD_PASSWORD = "jabs-era-pass-77"

ENUMS_PG = """
CREATE TYPE state AS ENUM ('IDLE', 'BUSY', 'DOWN');
CREATE TYPE session_state AS ENUM ('IN_PROGRESS', 'COMPLETE', 'CANCELED');
CREATE TYPE device_session_state AS ENUM ('PENDING', 'RECORDING', 'COMPLETE', 'FAILED', 'CANCELED');
"""
SCHEMA = """
CREATE TABLE "user" (id INTEGER PRIMARY KEY, email_address VARCHAR NOT NULL UNIQUE,
    email_address_lowercase VARCHAR NOT NULL UNIQUE, admin BOOLEAN NOT NULL);
CREATE TABLE simple_auth (uid INTEGER PRIMARY KEY REFERENCES "user"(id), salt VARCHAR NOT NULL,
    password_hash VARCHAR NOT NULL, password_reset_token VARCHAR,
    password_reset_token_expiration TIMESTAMP WITH TIME ZONE);
CREATE TABLE recording_session (id INTEGER PRIMARY KEY, name VARCHAR NOT NULL,
    status {session_state} NOT NULL, creation_time TIMESTAMP WITH TIME ZONE NOT NULL,
    archived BOOLEAN NOT NULL, duration INTEGER NOT NULL, file_prefix VARCHAR,
    fragment_hourly BOOLEAN NOT NULL, apply_filter BOOLEAN NOT NULL, target_fps INTEGER NOT NULL);
CREATE TABLE device (id INTEGER PRIMARY KEY, name VARCHAR NOT NULL UNIQUE, location VARCHAR,
    state {state} NOT NULL, last_update TIMESTAMP WITH TIME ZONE NOT NULL,
    session_id INTEGER REFERENCES recording_session(id), release VARCHAR, load FLOAT,
    total_ram BIGINT, free_ram BIGINT, uptime BIGINT, free_disk BIGINT, total_disk BIGINT,
    sensor_status JSON);
CREATE TABLE session_device_status (device_id INTEGER REFERENCES device(id),
    session_id INTEGER REFERENCES recording_session(id) ON DELETE CASCADE, file_prefix VARCHAR,
    status {device_session_state} NOT NULL, recording_time INTEGER, message VARCHAR,
    PRIMARY KEY (device_id, session_id));
"""
DATA = """
INSERT INTO "user" VALUES (1, 'Admin@Lab.org', 'admin@lab.org', {true});
INSERT INTO "user" VALUES (2, 'tech@lab.org', 'tech@lab.org', {false});
INSERT INTO simple_auth VALUES (1, '{salt}', '{hash}', NULL, NULL);
INSERT INTO simple_auth VALUES (2, 'other-salt', '{other}', NULL, NULL);
INSERT INTO recording_session VALUES (7, 'cohort A', 'COMPLETE', '2026-01-05 10:00:00+00', {false},
    7200, NULL, {true}, {true}, 30);
INSERT INTO recording_session VALUES (8, 'old run', 'CANCELED', '2025-12-01 09:00:00+00', {true},
    600, NULL, {false}, {false}, 15);
INSERT INTO recording_session VALUES (9, 'running', 'IN_PROGRESS', '2026-01-06 08:00:00+00',
    {false}, 86400, NULL, {true}, {true}, 30);
INSERT INTO device VALUES (1, 'Box-01', 'rack A', 'IDLE', '2026-01-06 08:00:00+00', NULL,
    'r', 0.1, 2, 1, 5, 1, 2, NULL);
INSERT INTO device VALUES (2, 'box_01', NULL, 'DOWN', '2026-01-06 08:00:00+00', NULL,
    'r', 0.1, 2, 1, 5, 1, 2, NULL);
INSERT INTO device VALUES (3, 'LTM 3', 'rack B', 'BUSY', '2026-01-06 08:00:00+00', 9,
    'r', 0.1, 2, 1, 5, 1, 2, NULL);
INSERT INTO session_device_status VALUES (1, 7, 'mouse_a', 'COMPLETE', 7200, NULL);
INSERT INTO session_device_status VALUES (2, 7, NULL, 'FAILED', 1800, 'camera error');
INSERT INTO session_device_status VALUES (1, 8, NULL, 'CANCELED', 60, NULL);
INSERT INTO session_device_status VALUES (3, 9, 'long', 'RECORDING', 3600, NULL);
"""


def _sha512(password: str, salt: str) -> str:
    return hashlib.sha512((password + salt).encode()).hexdigest()


def _build(url: str, postgres: bool) -> None:
    engine = create_engine(url)
    words = (
        {"state": "state", "session_state": "session_state",
         "device_session_state": "device_session_state"}
        if postgres
        else {"state": "VARCHAR", "session_state": "VARCHAR", "device_session_state": "VARCHAR"}
    )  # fmt: skip
    script = (
        (ENUMS_PG if postgres else "")
        + SCHEMA.format(**words)
        + DATA.format(
            true="TRUE" if postgres else "1",
            false="FALSE" if postgres else "0",
            salt=SALT,
            hash=_sha512(OLD_PASSWORD, SALT),
            other=_sha512("something-else-1", "other-salt"),
        )
    )
    with engine.begin() as conn:
        for statement in script.split(";"):
            if statement.strip():
                conn.execute(text(statement))
    engine.dispose()


@pytest.fixture
def jabs_url(db_url: URL, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A JABS database on the same backend as this test's."""
    if db_url.get_backend_name() == "sqlite":
        url = f"sqlite:///{tmp_path}/jabs.sqlite"
        _build(url, postgres=False)
        yield url
        return
    server = request.getfixturevalue("pg_server")
    created = create_database(server)
    try:
        url = created.render_as_string(hide_password=False)
        _build(url, postgres=True)
        yield url.replace("postgresql+psycopg2://", "postgres://")  # as JABS's config wrote it
    finally:
        drop_database(created)


@pytest.fixture
def app(settings: Settings, database: Database) -> Iterator[Flask]:
    jabs = settings.jabs.model_copy(update={"enabled": True})
    app = create_app(settings.model_copy(update={"jabs": jabs}), database=database)
    yield app
    app.extensions[PUBLISHER_KEY].close()


def _counts(database: Database) -> tuple[int, int, int]:
    with database.session() as session:
        return (
            len(list(session.scalars(select(User.id)))),
            len(list(session.scalars(select(Enclosure.id)))),
            len(list(session.scalars(select(RecordingSession.id)))),
        )


def test_import_jabs(runner, db_env, jabs_url: str, database: Database, app: Flask) -> None:
    dry = invoke(runner, ["import_jabs", "--database-url", jabs_url, "--dry-run"], env=db_env)
    assert dry.exit_code == 0, dry.output
    assert "would import: 3 devices imported, 3 sessions imported, 2 users imported" in dry.output
    assert "device LTM 3 (id 3) -> enclosure ltm-3" in dry.output
    assert _counts(database) == (0, 0, 0)

    result = invoke(runner, ["import_jabs", "--database-url", jabs_url], env=db_env)
    assert result.exit_code == 0, result.output
    assert "device Box-01 (id 1) -> enclosure box-01 (legacy device)" in result.output
    assert "device box_01 (id 2) -> enclosure box-01-2 (legacy device)" in result.output
    assert "was IN_PROGRESS: imported canceled" in result.output
    assert _counts(database) == (2, 3, 3)
    with database.session() as session:
        users = {u.email: u for u in session.scalars(select(User))}
        assert users["admin@lab.org"].role == "admin"
        assert users["tech@lab.org"].role == "operator"
        encs = {e.id: e for e in session.scalars(select(Enclosure))}
        assert encs["box-01"].name == "Box-01"
        assert encs["box-01"].location == "rack A"
        assert encs["ltm-3"].name == "LTM 3"

    # Idempotent: a second run changes nothing.
    again = invoke(runner, ["import_jabs", "--database-url", jabs_url], env=db_env)
    assert again.exit_code == 0, again.output
    assert "imported: 3 devices kept, 3 sessions kept, 2 users kept" in again.output
    assert _counts(database) == (2, 3, 3)

    # The old password works, once, and is then an argon2id hash.
    client = app.test_client()
    login = client.post(
        "/jabs/auth/login", json={"email_address": "ADMIN@lab.org", "password": OLD_PASSWORD}
    )
    assert login.status_code == 200, login.get_json()
    with database.session() as session:
        admin = session.scalar(select(User).where(User.email == "admin@lab.org"))
        assert admin is not None
        assert admin.password_hash.startswith("$argon2id$")
    wrong = client.post(
        "/jabs/auth/login", json={"email_address": "tech@lab.org", "password": OLD_PASSWORD}
    )
    assert wrong.status_code == 401

    # The history as the original UI sees it: the same ids, outcomes and seconds.
    headers = {"Authorization": f"Bearer {login.get_json()['access']}"}
    devices = {d["id"]: d for d in client.get("/jabs/device", headers=headers).get_json()}
    assert {i: d["name"] for i, d in devices.items()} == {1: "Box-01", 2: "box_01", 3: "LTM 3"}
    listed: list[dict[str, Any]] = client.get("/jabs/recording-session", headers=headers).get_json()
    assert [s["id"] for s in listed] == [9, 7]  # archived 8 left out, newest first
    cohort = listed[1]
    assert cohort["status"] == "COMPLETE"
    assert cohort["creation_time"] == "2026-01-05T10:00:00+00:00"
    assert (cohort["duration"], cohort["target_fps"], cohort["fragment_hourly"]) == (7200, 30, True)
    outcome = {d["device"]["name"]: (d["status"], d["recording_time"], d["message"])
               for d in cohort["device_statuses"]}  # fmt: skip
    assert outcome == {
        "Box-01": ("COMPLETE", 7200, None),
        "box_01": ("FAILED", 1800, "camera error"),
    }
    running = listed[0]
    assert running["status"] == "CANCELED"
    assert running["device_statuses"][0]["status"] == "CANCELED"
    assert running["device_statuses"][0]["recording_time"] == 3600
    # New sessions and devices get ids after the imported ones.
    with database.session() as session:
        from controlsvc.compat.jabs import ids

        session.add(Enclosure(id="enc-new", name="enc-new", state="offline"))
        session.flush()
        assert ids.enclosure_ids(session, ["enc-new"])["enc-new"] > 3


def test_import_refuses_what_is_not_a_jabs_database(runner, db_env, tmp_path: Path) -> None:
    result = invoke(
        runner, ["import_jabs", "--database-url", f"sqlite:///{tmp_path}/empty.db"], env=db_env
    )
    assert result.exit_code == 2
    assert "not a readable JABS database" in result.output
    result = invoke(runner, ["import_jabs", "--database-url", "mysql://x@y/z"], env=db_env)
    assert result.exit_code == 2
    assert "PostgreSQL or SQLite" in result.output
