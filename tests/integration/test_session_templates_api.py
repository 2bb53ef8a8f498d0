"""Session templates and clones through the REST API: save, list, read, delete, start a session
from a template or like an earlier one (the same enclosures, prefixes, duration, settings),
refused as any session creation is."""

from __future__ import annotations

import pytest

from tests.integration.bridge_fixtures import (  # noqa: F401 (fixtures)
    agents,
    broker,
    make_bridge,
    mosquitto_factory,
)
from tests.integration.test_sessions_api import (  # noqa: F401 (fixtures)
    app,
    bridge,
    create,
    online,
    operator,
    settings,
    viewer,
)

pytestmark = pytest.mark.mosquitto

TEMPLATE = {
    "name": "Night cage 7",
    "enclosures": [
        {"id": "enc-b", "file_prefix": "cage7-b"},
        {"id": "enc-a", "file_prefix": "cage7-a"},
    ],
    "duration_s": 3600,
    "segment_minutes": 10,
    "target_fps": 15,
    "notes": "lights off at 19:00",
}


def same_recording(session: dict, like: dict) -> None:
    assert [(e["enclosure_id"], e["file_prefix"]) for e in session["enclosures"]] == sorted(
        (e["id"], e["file_prefix"]) for e in like["enclosures"]
    )
    for key in ("duration_s", "segment_minutes", "target_fps", "notes"):
        assert session[key] == like[key], key


def test_templates_save_list_start_delete(client, operator, viewer, online):
    saved = client.post("/api/session-templates", json=TEMPLATE, headers=operator)
    assert saved.status_code == 201, saved.get_json()
    tpl = saved.get_json()
    assert tpl["created_by"] == "op@example.com"
    assert tpl["enclosures"] == TEMPLATE["enclosures"]
    again = client.post("/api/session-templates", json=TEMPLATE, headers=operator)
    assert again.status_code == 409
    assert again.get_json()["errors"][0]["field"] == "name"
    listed = client.get("/api/session-templates", headers=viewer).get_json()
    assert [t["name"] for t in listed["items"]] == ["Night cage 7"]
    assert client.get(f"/api/session-templates/{tpl['id']}", headers=viewer).get_json() == tpl

    # Viewers read only; bad bodies name the field.
    assert client.post("/api/session-templates", json=TEMPLATE, headers=viewer).status_code == 403
    bad = client.post(
        "/api/session-templates", json={**TEMPLATE, "name": "x", "duration_s": 0}, headers=operator
    )
    assert bad.status_code == 422
    assert {e["field"] for e in bad.get_json()["errors"]} == {"duration_s"}

    started = client.post(f"/api/session-templates/{tpl['id']}/sessions", json={}, headers=operator)
    assert started.status_code == 201, started.get_json()
    session = started.get_json()
    assert session["name"] == "Night cage 7"
    assert session["status"] == "running"
    same_recording(session, TEMPLATE)
    # Its enclosures are busy now: refused as POST /api/sessions refuses.
    busy = client.post(
        f"/api/session-templates/{tpl['id']}/sessions", json={"name": "twice"}, headers=operator
    )
    assert busy.status_code == 409
    assert "already in an active session" in busy.get_json()["detail"]
    client.post(f"/api/sessions/{session['id']}/cancel", headers=operator)

    assert client.delete(f"/api/session-templates/{tpl['id']}", headers=operator).status_code == 204
    assert client.get(f"/api/session-templates/{tpl['id']}", headers=viewer).status_code == 404
    missing = client.post("/api/session-templates/999/sessions", json={}, headers=operator)
    assert missing.status_code == 404


def test_clone_starts_the_same_session_again(client, operator, viewer, online):
    first = create(client, operator, eids=("enc-a", "enc-b"), segment_minutes=5, notes="n")
    assert first.status_code == 201, first.get_json()
    original = first.get_json()
    client.post(f"/api/sessions/{original['id']}/cancel", headers=operator)
    clone = client.post(
        f"/api/sessions/{original['id']}/clone", json={"name": "again"}, headers=operator
    )
    assert clone.status_code == 201, clone.get_json()
    copy = clone.get_json()
    assert copy["id"] != original["id"]
    assert copy["name"] == "again"
    for key in ("duration_s", "segment_minutes", "target_fps", "notes", "fragment_hourly"):
        assert copy[key] == original[key], key
    assert [(e["enclosure_id"], e["file_prefix"]) for e in copy["enclosures"]] == [
        (e["enclosure_id"], e["file_prefix"]) for e in original["enclosures"]
    ]
    assert client.post("/api/sessions/nope/clone", json={}, headers=operator).status_code == 404
    assert (
        client.post(f"/api/sessions/{original['id']}/clone", json={}, headers=viewer).status_code
        == 403
    )
    late = client.post(
        f"/api/sessions/{original['id']}/clone",
        json={"start_at": "2000-01-01T00:00:00Z"},
        headers=operator,
    )
    assert late.status_code == 422
    assert late.get_json()["errors"][0]["field"] == "start_at"
