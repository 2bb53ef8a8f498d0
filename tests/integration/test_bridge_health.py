"""A dead bridge is visible in ``/api/health``: real bridges on a real broker and database."""

# ruff: noqa: F811 (pytest fixtures are imported by name, then requested as parameters)

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from flask import Flask

from controlsvc.config.settings import Settings
from controlsvc.ops.app import create_app
from controlsvc.store import bridge_health
from controlsvc.store.db import Database, utcnow
from tests.integration.bridge_fixtures import (  # noqa: F401 (fixtures)
    bridge_settings,
    broker,
    make_bridge,
    mosquitto_factory,
)
from tests.support.waiting import wait_for

pytestmark = pytest.mark.mosquitto


@pytest.fixture
def settings(settings: Settings, broker) -> Settings:
    return bridge_settings(settings, broker)


@pytest.fixture
def app(settings: Settings, database: Database) -> Flask:
    return create_app(settings, database=database)


def bridge_of(client) -> dict:
    response = client.get("/api/health")
    assert response.status_code == 200
    return response.get_json()["bridge"]


def test_no_bridge_yet_is_reported_down(client) -> None:
    body = client.get("/api/health").get_json()
    assert body["bridge"] == {
        "ok": False,
        "since": None,
        "running": 0,
        "detail": "no bridge has run yet",
    }
    assert body["status"] == "degraded"


def test_a_running_bridge_is_up_and_a_stopped_one_down_since_it_stopped(
    client, settings, make_bridge
) -> None:
    before = utcnow()
    bridge = make_bridge(settings)
    up = wait_for(lambda: (b := bridge_of(client))["ok"] and b, message="no heartbeat")
    assert up["running"] == 1
    assert before - timedelta(seconds=1) <= _at(up["since"]) <= utcnow()
    bridge.stop()
    stopped_at = utcnow()
    down = bridge_of(client)
    assert down["ok"] is False
    assert down["detail"] == "the bridge was stopped"
    assert _at(up["since"]) <= _at(down["since"]) <= stopped_at


@pytest.mark.slow  # waits for a heartbeat to go stale
def test_a_killed_bridge_is_down_once_its_heartbeat_is_stale(
    client, settings, make_bridge, database
) -> None:
    bridge = make_bridge(settings)
    wait_for(lambda: bridge_of(client)["ok"], message="no heartbeat")
    bridge.kill()  # no clean stop: only the missing heartbeat tells
    with database.sessionmaker() as session:
        view = bridge_health.bridge_view(
            session, utcnow() + timedelta(seconds=bridge_health.DOWN_AFTER_S + 1)
        )
    assert view.ok is False
    assert view.detail == f"no bridge heartbeat for more than {bridge_health.DOWN_AFTER_S:g} s"
    assert view.since is not None
    assert view.since <= utcnow()
    # a new bridge is up again at once
    make_bridge(settings)
    wait_for(lambda: bridge_of(client)["ok"], message="the new bridge has no heartbeat")


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)
