"""The recordings inventory across sessions, its CSV/JSON export and an enclosure's recording
timeline, on both backends. The rows are what the bridge stores from ``segment_closed`` and
``recording_resumed`` (test_sessions_api.py drives that path through a real broker)."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest

from controlsvc.store.db import Database
from controlsvc.store.models.enclosures import Enclosure
from controlsvc.store.models.sessions import (
    SessionGap,
    SessionSegment,
)
from controlsvc.store.recordings import CSV_COLUMNS
from tests.support.auth import Auth
from tests.support.sessions import add_session

T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


@pytest.fixture
def viewer(auth: Auth) -> dict[str, str]:
    return auth.headers(auth.create("viewer@example.com", role="viewer"))


def _session(s, sid: str, name: str, start: datetime, eids: tuple[str, ...]) -> None:
    add_session(s, sid, dict.fromkeys(eids), start=start, name=name, status="completed")


def _segment(s, sid: str, eid: str, n: int, start: datetime, minutes: int = 10) -> None:
    end = start + timedelta(minutes=minutes) - timedelta(seconds=0.1)  # last frame
    s.add(
        SessionSegment(
            session_id=sid,
            enclosure_id=eid,
            event_id=f"ev-{sid}-{eid}-{n}",
            path=f"/rec/{sid}/m-{eid}_{n:03d}.mkv",
            started_at=start,
            ended_at=end,
            frames=minutes * 600,
            bytes=1000 + n,
            sha256=f"{n:064x}",
            sidecar_path=f"/rec/{sid}/m-{eid}_{n:03d}.csv" if n % 2 else None,
            received_at=end + timedelta(seconds=1),
        )
    )


@pytest.fixture
def fleet(database: Database) -> None:
    """Two sessions a day apart. enc-a: s1 has 3 back-to-back segments, a reported
    agent_restart gap, then 1 more; s2 has 2 segments with a hole nobody reported.
    enc-b: 1 segment in s1."""
    with database.session() as s:
        for eid in ("enc-a", "enc-b"):
            s.add(Enclosure(id=eid, name=eid, registered=True, state="idle"))
        s.flush()
        _session(s, "s1", "cohort 1", T0, ("enc-a", "enc-b"))
        _session(s, "s2", "cohort 2", T0 + timedelta(days=1), ("enc-a",))
        for n in range(3):
            _segment(s, "s1", "enc-a", n, T0 + timedelta(minutes=10 * n))
        _segment(s, "s1", "enc-a", 3, T0 + timedelta(minutes=40))
        s.add(
            SessionGap(
                session_id="s1",
                enclosure_id="enc-a",
                event_id="restart-1",
                cause="agent_restart",
                started_at=T0 + timedelta(minutes=30) - timedelta(seconds=0.1),
                ended_at=T0 + timedelta(minutes=40),
                gap_s=600.1,
            )
        )
        _segment(s, "s1", "enc-b", 0, T0)
        _segment(s, "s2", "enc-a", 0, T0 + timedelta(days=1))
        _segment(s, "s2", "enc-a", 1, T0 + timedelta(days=1, minutes=30))


def _items(client, headers, query: str = "") -> list[dict]:
    response = client.get(f"/api/recordings{query}", headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["items"]


def test_inventory_across_sessions_with_filters(client, viewer, fleet):
    everything = _items(client, viewer)
    assert len(everything) == 7
    assert [i["started_at"] for i in everything] == sorted(i["started_at"] for i in everything)
    first = everything[0]
    assert set(first) >= {
        "enclosure_id",
        "session_id",
        "session_name",
        "path",
        "started_at",
        "ended_at",
        "frames",
        "bytes",
        "sha256",
        "sidecar_path",
    }
    a = _items(client, viewer, "?enclosure_id=enc-a")
    assert [(i["session_id"], i["path"].rsplit("/", 1)[1]) for i in a] == [
        ("s1", "m-enc-a_000.mkv"),
        ("s1", "m-enc-a_001.mkv"),
        ("s1", "m-enc-a_002.mkv"),
        ("s1", "m-enc-a_003.mkv"),
        ("s2", "m-enc-a_000.mkv"),
        ("s2", "m-enc-a_001.mkv"),
    ]
    assert {i["session_name"] for i in a} == {"cohort 1", "cohort 2"}
    assert [
        i["enclosure_id"] for i in _items(client, viewer, "?session_id=s1&enclosure_id=enc-b")
    ] == ["enc-b"]
    # from/to keep what overlaps the window (a segment running across `from` is in).
    start = (T0 + timedelta(minutes=15)).isoformat().replace("+00:00", "Z")
    end = (T0 + timedelta(minutes=25)).isoformat().replace("+00:00", "Z")
    window = _items(client, viewer, f"?enclosure_id=enc-a&from={start}&to={end}")
    assert [i["path"].rsplit("_", 1)[1] for i in window] == ["001.mkv", "002.mkv"]


def test_inventory_pages_without_skipping(client, viewer, fleet):
    seen: list[str] = []
    cursor = None
    while True:
        query = "?limit=3" + (f"&cursor={cursor}" if cursor else "")
        page = client.get(f"/api/recordings{query}", headers=viewer).get_json()
        seen += [i["path"] + i["enclosure_id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) == 7


@pytest.mark.parametrize(
    ("query", "status", "field"),
    [
        ("?from=yesterday", 422, "from"),
        ("?from=2026-11-30T08:00:00", 422, "from"),  # no offset
        ("?from=2026-11-30T09:00:00Z&to=2026-11-30T08:00:00Z", 422, "to"),
        ("?enclosure_id=Bad/Id", 422, "enclosure_id"),
        ("?limit=501", 422, "limit"),
        ("?cursor=nope", 422, "cursor"),
        ("?from_=2026-11-30T08:00:00Z", 422, "from_"),
        ("?enclosure_id=enc-zz", 404, None),
        ("?session_id=nope", 404, None),
    ],
)
def test_bad_filters_are_named(client, viewer, fleet, query, status, field):
    response = client.get(f"/api/recordings{query}", headers=viewer)
    assert response.status_code == status, response.get_json()
    if field is not None:
        assert field in {e["field"] for e in response.get_json()["errors"]}
    export = client.get(
        f"/api/recordings/export{query.replace('limit=501', 'format=xml')}", headers=viewer
    )
    assert export.status_code == status, export.get_json()


def test_export_csv_and_json(client, viewer, fleet):
    response = client.get("/api/recordings/export?enclosure_id=enc-a&format=csv", headers=viewer)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/csv")
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert tuple(rows[0]) == CSV_COLUMNS
    body = [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]
    assert len(body) == 6
    assert body[0]["session_name"] == "cohort 1"
    assert float(body[0]["duration_s"]) == pytest.approx(599.9)
    assert body[0]["sidecar_path"] == ""
    assert body[1]["sidecar_path"].endswith("_001.csv")
    listed = _items(client, viewer, "?enclosure_id=enc-a")
    assert [r["sha256"] for r in body] == [i["sha256"] for i in listed]
    as_json = client.get("/api/recordings/export?format=json&session_id=s2", headers=viewer)
    assert as_json.headers["Content-Type"].startswith("application/json")
    parsed = json.loads(as_json.get_data(as_text=True))
    assert [p["path"] for p in parsed] == [i["path"] for i in listed if i["session_id"] == "s2"]
    empty = client.get(
        "/api/recordings/export?format=json&from=2030-01-01T00:00:00Z", headers=viewer
    )
    assert json.loads(empty.get_data(as_text=True)) == []
    assert client.get("/api/recordings/export").status_code == 401


def test_timeline_spans_gaps_and_causes(client, viewer, fleet):
    start = (T0 - timedelta(hours=1)).isoformat()
    end = (T0 + timedelta(days=2)).isoformat()
    response = client.get(
        "/api/enclosures/enc-a/timeline", query_string={"from": start, "to": end}, headers=viewer
    )
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    spans = [
        (s["kind"], s["session_id"], s["cause"], s["segments"], round(s["duration_s"]))
        for s in body["spans"]
    ]
    assert spans == [
        ("recorded", "s1", None, 3, 1800),  # three back-to-back segments: one span
        ("gap", "s1", "agent_restart", 0, 600),  # reported by the agent
        ("recorded", "s1", None, 1, 600),
        ("recorded", "s2", None, 1, 600),
        ("gap", "s2", "unexplained", 0, 1200),  # a hole no event explains
        ("recorded", "s2", None, 1, 600),
    ]
    assert body["spans"][0]["session_name"] == "cohort 1"
    # merged spans run from the first frame to the last: 1799.9 + 3 x 599.9
    assert body["recorded_s"] == pytest.approx(1799.9 + 3 * 599.9, abs=0.01)
    assert body["gap_s"] == pytest.approx(600.1 + 1200.1, abs=0.01)
    # A window cuts spans at its edges.
    part = client.get(
        "/api/enclosures/enc-a/timeline",
        query_string={
            "from": (T0 + timedelta(minutes=5)).isoformat(),
            "to": (T0 + timedelta(minutes=35)).isoformat(),
        },
        headers=viewer,
    ).get_json()
    assert [(s["kind"], s["cause"]) for s in part["spans"]] == [
        ("recorded", None),
        ("gap", "agent_restart"),
    ]
    assert part["spans"][1]["ended_at"].startswith("2026-11-30T08:35:00")


def test_timeline_default_window_and_limits(client, viewer, fleet):
    body = client.get("/api/enclosures/enc-b/timeline", headers=viewer).get_json()
    window = datetime.fromisoformat(body["window_end"]) - datetime.fromisoformat(
        body["window_start"]
    )
    assert window == timedelta(days=7)
    too_long = client.get(
        "/api/enclosures/enc-a/timeline?from=2026-01-01T00:00:00Z&to=2026-03-01T00:00:00Z",
        headers=viewer,
    )
    assert too_long.status_code == 422
    assert {e["field"] for e in too_long.get_json()["errors"]} == {"from"}
    assert client.get("/api/enclosures/enc-zz/timeline", headers=viewer).status_code == 404
