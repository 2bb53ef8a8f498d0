"""``GET /api/enclosures/summary``: the whole fleet in one compact response (SQLite and
PostgreSQL), its validator (ETag / 304), gzip, and the number of SQL statements it takes."""

from __future__ import annotations

from datetime import datetime

import pytest

from controlsvc.bridge.inbound import Inbound
from controlsvc.bridge.stats import BridgeStats
from controlsvc.bridge.writer import Writer
from controlsvc.db import Database, utcnow
from controlsvc.enclosures import Liveness
from controlsvc.fleet_summary import FIELDS
from controlsvc.models.enclosures import Enclosure
from controlsvc.models.sessions import Alert
from schemas.topics import Topics
from tests.integration.bridge_fixtures import PREFIX, state_payload, status_payload

SUMMARY = "/api/enclosures/summary"
# What the dashboard asks for: the whole fleet, each enclosure in at most this many bytes.
BYTES_PER_ENCLOSURE = 250


@pytest.fixture
def viewer(auth) -> dict[str, str]:
    return auth.headers(auth.create("viewer@example.com", role="viewer"))


@pytest.fixture
def admin(auth) -> dict[str, str]:
    return auth.headers(auth.admin())


def ingest(database: Database, *messages: tuple[str, str, bytes]) -> None:
    """Write messages the way the bridge does (no broker needed)."""
    writer = Writer(database, Topics(PREFIX), Liveness(), BridgeStats())
    batch = [Inbound(f"{PREFIX}/enc/{eid}/{ch}", p, 1, False, utcnow()) for eid, ch, p in messages]
    writer.write(writer.parse(batch))


def add_alert(database: Database, eid: str, kind: str, *, acked: bool = False) -> None:
    with database.session() as session:
        session.add(
            Alert(
                alert_id=f"{kind}:{eid}",
                kind=kind,
                severity="warning",
                enclosure_id=eid,
                message=f"{kind} on {eid}",
                acked_at=utcnow() if acked else None,
            )
        )
        session.commit()


def as_dicts(body: dict) -> dict[str, dict]:
    return {row[0]: dict(zip(body["fields"], row, strict=True)) for row in body["rows"]}


def parse_utc(text: str) -> datetime:
    assert text.endswith("Z"), text
    return datetime.fromisoformat(text)


def test_summary_shape(client, viewer, admin, database):
    with database.session() as session:  # registered, never connected
        session.add(
            Enclosure(
                id="enc-reg",
                name="Registered",
                location="Room 2/Rack A",
                registered=True,
                registered_at=utcnow(),
                state="offline",
            )
        )
        session.commit()
    ingest(
        database,
        ("enc-idle", "state", state_payload("ready", "b1")),
        ("enc-idle", "status", status_payload("b1", 0, clock={"offset_s": 0.25, "skewed": False})),
        ("enc-rec", "state", state_payload("ready", "b2")),
        ("enc-rec", "status", status_payload("b2", 7, recording="s-123")),
        ("enc-err", "state", state_payload("ready", "b3")),
        ("enc-err", "status", status_payload("b3", 1, connected=False, error="disk full " * 20)),
        ("enc-gone", "state", state_payload("ready", "b4")),
        ("enc-gone", "status", status_payload("b4", 1)),
        ("enc-gone", "state", state_payload("disconnected", "b4")),
    )
    add_alert(database, "enc-err", "disk_low")
    add_alert(database, "enc-err", "camera_stalled")
    add_alert(database, "enc-err", "clock_skew", acked=True)

    response = client.get(SUMMARY, headers=viewer)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert list(body) == ["as_of", "count", "fields", "rows"]
    assert body["fields"] == list(FIELDS)
    assert abs((parse_utc(body["as_of"]) - utcnow()).total_seconds()) < 3600
    assert body["count"] == 5
    assert [row[0] for row in body["rows"]] == [
        "enc-err",
        "enc-gone",
        "enc-idle",
        "enc-rec",
        "enc-reg",
    ]
    rows = as_dicts(body)
    listed = {
        e["id"]: e
        for e in client.get("/api/enclosures?limit=10", headers=viewer).get_json()["items"]
    }
    for eid, row in rows.items():  # the state and since as the full API shows them
        assert row["state"] == listed[eid]["state"]
        assert row["name"] == listed[eid]["name"]
        assert row["location"] == listed[eid]["location"]
        since = listed[eid]["state_changed_at"] or listed[eid]["registered_at"]
        assert abs((parse_utc(row["since"]) - datetime.fromisoformat(since)).total_seconds()) < 1

    reg = rows["enc-reg"]
    assert reg["state"] == "offline"
    assert reg["location"] == "Room 2/Rack A"
    assert reg["last_seen_at"] is None
    assert [reg[f] for f in FIELDS[6:13]] == [None] * 7
    assert reg["open_alerts"] == 0

    idle = rows["enc-idle"]
    assert idle["state"] == "idle"
    assert parse_utc(idle["last_seen_at"])
    assert (idle["session_id"], idle["recorded_s"], idle["frames"]) == (None, None, None)
    assert idle["disk_free_pct"] == 50.0
    assert idle["clock_offset_s"] == 0.25
    assert idle["fps"] == 30.0
    assert idle["error"] is None

    rec = rows["enc-rec"]
    assert rec["state"] == "recording"
    assert rec["session_id"] == "s-123"
    assert isinstance(rec["recorded_s"], float)
    assert rec["frames"] == 7
    assert rec["fps"] == 30.0

    err = rows["enc-err"]
    assert err["state"] == "error"
    assert err["fps"] is None  # the camera is not connected
    assert err["error"].startswith("disk full disk full")
    assert len(err["error"]) <= 80
    assert err["open_alerts"] == 2  # the acknowledged one is not counted

    gone = rows["enc-gone"]
    assert gone["state"] == "offline"
    assert gone["session_id"] is None
    assert gone["disk_free_pct"] == 50.0  # its latest status, from before it shut down


def test_summary_leaves_out_retired_enclosures(client, viewer, admin, database, app):
    ingest(database, *[(f"enc-{i}", "state", state_payload("ready", f"b{i}")) for i in range(3)])
    with database.session() as session:
        session.get(Enclosure, "enc-1").retired_at = utcnow()
        session.commit()
    body = client.get(SUMMARY, headers=viewer).get_json()
    assert [row[0] for row in body["rows"]] == ["enc-0", "enc-2"]
    assert body["count"] == 2


def test_summary_needs_a_token(client):
    response = client.get(SUMMARY)
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"


def test_summary_is_documented(client):
    spec = client.get("/swagger.json").get_json()
    operation = spec["paths"][SUMMARY]["get"]
    assert operation["security"] == [{"jwt": []}]
    assert "401" in operation["responses"]
    assert "200" in operation["responses"]
    schema = spec["components"]["schemas"]["FleetSummary"]
    assert "room/rack" in schema["properties"]["fields"]["description"]
    location = spec["components"]["schemas"]["EnclosureOut"]["properties"]["location"]
    assert "room/rack" in str(location)


def test_summary_stays_within_its_byte_budget(client, viewer, database):
    """200 enclosures with realistic names and locations, recording, with alerts open."""
    messages = []
    for i in range(200):
        eid = f"enc-{i:04d}"
        messages.append((eid, "state", state_payload("ready", f"boot-{i:04d}")))
        messages.append(
            (eid, "status", status_payload(f"boot-{i:04d}", 12345, recording="s-20261203-1"))
        )
    ingest(database, *messages)
    with database.session() as session:
        for enc in session.query(Enclosure):
            n = int(enc.id.split("-")[1])
            enc.name = f"Enclosure {n:04d}"
            enc.location = f"Room {n // 100}/Rack {n % 10}"
        session.commit()
    for i in range(0, 200, 7):
        add_alert(database, f"enc-{i:04d}", "disk_low")
    response = client.get(SUMMARY, headers=viewer)
    assert response.get_json()["count"] == 200
    assert len(response.data) <= 200 * BYTES_PER_ENCLOSURE, len(response.data) / 200
