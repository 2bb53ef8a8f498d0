"""``GET /api/enclosures/summary``: the whole fleet in one compact response (SQLite and
PostgreSQL), its validator (ETag / 304), gzip, and the number of SQL statements it takes."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import event, select

from controlsvc.bridge.inbound import Inbound
from controlsvc.bridge.stats import BridgeStats
from controlsvc.bridge.writer import Writer
from controlsvc.store.db import Database, utcnow
from controlsvc.store.enclosures import Liveness
from controlsvc.store.fleet_summary import FIELDS
from controlsvc.store.models.enclosures import Enclosure
from controlsvc.store.models.sessions import Alert, RecordingSession, SessionEnclosure
from schemas.rest.enclosures import MAX_FLEET_LIMIT
from schemas.topics import Topics
from tests.integration.bridge_fixtures import PREFIX, state_payload, status_payload
from tests.support.sessions import add_session

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
    _session(database, "s-123", ["enc-rec"])
    with database.session() as session:  # its open file, as the bridge follows it
        se = session.scalars(
            select(SessionEnclosure).where(SessionEnclosure.session_id == "s-123")
        ).one()
        se.live_s, se.live_frames = 0.25, 7
        session.commit()

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
    assert rec["recorded_s"] == 0.2  # of its session (one decimal), as the session page shows
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


# -- validator, 304, gzip ---------------------------------------------------------------------


def test_etag_gives_304_until_something_in_the_summary_changes(client, viewer, auth, database):
    operator = auth.headers(auth.create("op@example.com", role="operator"))
    ingest(
        database,
        ("enc-a", "state", state_payload("ready", "b1")),
        ("enc-a", "status", status_payload("b1", 0)),
        ("enc-b", "state", state_payload("ready", "b2")),
    )
    first = client.get(SUMMARY, headers=viewer)
    etag = first.headers["ETag"]
    assert etag.startswith('W/"')
    assert first.headers["Cache-Control"] == "private, no-cache"

    def status_for(tag: str) -> int:
        response = client.get(SUMMARY, headers={**viewer, "If-None-Match": tag})
        if response.status_code == 304:
            assert response.data == b""
            assert response.headers["ETag"] == tag
        return response.status_code

    assert status_for(etag) == 304
    assert status_for('W/"something-else"') == 200
    assert client.get(SUMMARY, headers={"If-None-Match": etag}).status_code == 401

    changes = {
        "a status arrives": lambda: ingest(
            database,
            ("enc-a", "status", status_payload("b1", 1, clock={"offset_s": 0.5, "skewed": False})),
        ),
        **settled_changes(client, database, operator),
    }
    for what, change in changes.items():
        before = client.get(SUMMARY, headers=viewer).get_json()
        change()
        response = client.get(SUMMARY, headers={**viewer, "If-None-Match": etag})
        assert response.status_code == 200, what
        assert response.headers["ETag"] != etag, what
        assert response.get_json()["rows"] != before["rows"], what
        etag = response.headers["ETag"]
        assert status_for(etag) == 304, what


def settled_changes(
    client: FlaskClient, database: Database, operator: dict[str, str]
) -> dict[str, Callable[[], Any]]:
    """Changes to enclosures enc-a (status of boot b1) and enc-b (boot b2) that a user acts on
    or waits for, in an order that works: each one changes the summary."""
    return {
        "a state changes": lambda: ingest(
            database, ("enc-b", "state", state_payload("disconnected", "b2"))
        ),
        "a location is edited": lambda: client.patch(
            "/api/enclosures/enc-b", json={"location": "Room 3/Rack C"}, headers=operator
        ),
        "an alert is raised": lambda: add_alert(database, "enc-a", "disk_low"),
        "an alert is acknowledged": lambda: client.post(
            f"/api/alerts/{_alert_id(database)}/ack", headers=operator
        ),
    }


def _alert_id(database: Database) -> str:
    with database.session() as session:
        return session.query(Alert.alert_id).filter(Alert.acked_at.is_(None)).one()[0]


def test_gzip_when_the_client_accepts_it(client, viewer, database):
    ingest(
        database, *[(f"enc-{i:02d}", "state", state_payload("ready", f"b{i}")) for i in range(30)]
    )
    plain = client.get(SUMMARY, headers=viewer)
    assert "Content-Encoding" not in plain.headers
    assert "Accept-Encoding" in plain.headers["Vary"]
    assert len(plain.data) > 1024
    packed = client.get(SUMMARY, headers={**viewer, "Accept-Encoding": "gzip, deflate"})
    assert packed.headers["Content-Encoding"] == "gzip"
    assert int(packed.headers["Content-Length"]) == len(packed.data) < len(plain.data) / 3
    assert json.loads(gzip.decompress(packed.data))["rows"] == plain.get_json()["rows"]
    assert packed.headers["ETag"] == plain.headers["ETag"]
    refused = client.get(SUMMARY, headers={**viewer, "Accept-Encoding": "gzip;q=0"})
    assert "Content-Encoding" not in refused.headers
    # The other JSON reads too; small bodies stay as they are.
    listed = client.get("/api/enclosures?limit=30", headers={**viewer, "Accept-Encoding": "gzip"})
    assert listed.headers["Content-Encoding"] == "gzip"
    assert len(json.loads(gzip.decompress(listed.data))["items"]) == 30
    small = client.get("/api/enclosures/enc-00", headers={**viewer, "Accept-Encoding": "gzip"})
    assert "Content-Encoding" not in small.headers


def test_other_json_reads_get_an_etag_and_304(client, viewer, database):
    ingest(database, ("enc-a", "state", state_payload("ready", "b1")))
    for url in ("/api/enclosures", "/api/enclosures/enc-a", "/api/sessions"):
        first = client.get(url, headers=viewer)
        etag = first.headers["ETag"]
        again = client.get(url, headers={**viewer, "If-None-Match": etag})
        assert again.status_code == 304, url
        assert again.data == b""
    etag = client.get("/api/enclosures/enc-a", headers=viewer).headers["ETag"]
    ingest(database, ("enc-a", "status", status_payload("b1", 0)))
    changed = client.get("/api/enclosures/enc-a", headers={**viewer, "If-None-Match": etag})
    assert changed.status_code == 200


# -- limits and SQL statements per request ----------------------------------------------------


def test_list_limit_goes_up_to_the_fleet_maximum(client, viewer, database):
    ingest(
        database, *[(f"enc-{i:02d}", "state", state_payload("ready", f"b{i}")) for i in range(12)]
    )
    whole = client.get(f"/api/enclosures?limit={MAX_FLEET_LIMIT}", headers=viewer)
    assert whole.status_code == 200
    assert len(whole.get_json()["items"]) == 12
    assert whole.get_json()["next_cursor"] is None
    for bad in (MAX_FLEET_LIMIT + 1, 0):
        response = client.get(f"/api/enclosures?limit={bad}", headers=viewer)
        assert response.status_code == 422
        errors = response.get_json()["errors"]
        assert errors[0]["field"] == "limit"
        if bad > MAX_FLEET_LIMIT:
            assert "5000" in errors[0]["message"]
    # Other lists keep their page size.
    assert client.get("/api/sessions?limit=501", headers=viewer).status_code == 422


@contextmanager
def statements(database: Database) -> Iterator[list[str]]:
    """The SQL statements run on ``database`` meanwhile."""
    seen: list[str] = []

    def note(_conn, _cursor, statement, *_args) -> None:
        seen.append(statement)

    event.listen(database.engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(database.engine, "before_cursor_execute", note)


def _fleet(database: Database, n: int, start: int = 0) -> None:
    messages = []
    for i in range(start, start + n):
        messages.append((f"enc-{i:03d}", "state", state_payload("ready", f"b{i}")))
        messages.append((f"enc-{i:03d}", "status", status_payload(f"b{i}", 1, recording="s-1")))
    ingest(database, *messages)
    for i in range(start, start + n, 3):
        add_alert(database, f"enc-{i:03d}", "disk_low")


def _session(database: Database, sid: str, ids: list[str]) -> None:
    with database.session() as session:
        add_session(session, sid, dict.fromkeys(ids, "recording"), start=utcnow())
        session.commit()


def test_reads_take_the_same_few_statements_whatever_the_fleet_size(client, viewer, database):
    """No N+1: 5 or 60 enclosures (a session of each), the same statements per read."""
    reads = {
        "summary": SUMMARY,
        "summary 304": SUMMARY,
        "list": f"/api/enclosures?limit={MAX_FLEET_LIMIT}",
        "sessions": "/api/sessions?limit=500",
        "session detail": "/api/sessions/{sid}",
    }
    counts: dict[int, dict[str, int]] = {}
    for n, start in ((5, 0), (60, 5)):
        _fleet(database, n, start)
        sid = f"s-{n}"
        _session(database, sid, [f"enc-{i:03d}" for i in range(start, start + n)])
        counts[n] = {}
        etag = client.get(SUMMARY, headers=viewer).headers["ETag"]
        for what, url in reads.items():
            headers = {**viewer, "If-None-Match": etag} if what == "summary 304" else viewer
            with statements(database) as seen:
                response = client.get(url.format(sid=sid), headers=headers)
            assert response.status_code == (304 if what == "summary 304" else 200), what
            counts[n][what] = len(seen)
    assert counts[5] == counts[60], counts
    # The token's checks, then: summary = validator + alerts + recordings + rows; 304 =
    # validator only.
    assert counts[60]["summary"] - counts[60]["summary 304"] == 3, counts
    assert max(counts[60].values()) <= 6, counts


# -- one truth: the session figures are the session pages' -------------------------------------


def test_recording_figures_are_the_sessions_not_the_heartbeats(client, viewer, database):
    """The fleet row shows an enclosure's session, recorded time and frames as the session and
    enclosure pages do (``session_progress``), not what its last heartbeat said: after a
    cancel, a lost enclosure whose last status still named the session links no session."""
    ingest(
        database,
        ("enc-a", "state", state_payload("ready", "ba")),
        ("enc-a", "status", status_payload("ba", 40, recording="s-live")),
        ("enc-b", "state", state_payload("ready", "bb")),
        ("enc-b", "status", status_payload("bb", 7, recording="s-old")),
    )
    _session(database, "s-live", ["enc-a"])
    _session(database, "s-old", ["enc-b"])
    with database.session() as session:
        se = session.scalars(
            select(SessionEnclosure).where(SessionEnclosure.enclosure_id == "enc-a")
        ).one()
        se.segments, se.segments_s, se.frames = 2, 120.0, 3600
        se.live_s, se.live_frames = 15.5, 465
        session.commit()
    before = client.get(SUMMARY, headers=viewer)
    assert as_dicts(before.get_json())["enc-b"]["session_id"] == "s-old"
    with database.session() as session:  # canceled while enc-b is away: no status follows
        old = session.scalars(
            select(SessionEnclosure).where(SessionEnclosure.enclosure_id == "enc-b")
        ).one()
        old.state, old.state_changed_at = "canceled", utcnow()
        session.get(RecordingSession, "s-old").status = "canceled"
        session.commit()
    after = client.get(SUMMARY, headers={**viewer, "If-None-Match": before.headers["ETag"]})
    assert after.status_code == 200  # the validator moved
    rows = as_dicts(after.get_json())
    detail = client.get("/api/sessions/s-live", headers=viewer).get_json()
    progress = detail["enclosures"][0]["progress"]
    assert rows["enc-a"]["session_id"] == "s-live"
    assert rows["enc-a"]["recorded_s"] == progress["recorded_s"] == 135.5
    assert rows["enc-a"]["frames"] == progress["frames"] == 4065
    assert rows["enc-b"]["session_id"] is None
    assert rows["enc-b"]["recorded_s"] is None
    assert rows["enc-b"]["frames"] is None
