"""Alerts as a resource: listed, acknowledged once for everybody (with who and when, pushed to
the event feed), and raised for enclosures expected online outside sessions; a real broker,
a real bridge and fake agents, on both backends."""

# ruff: noqa: F811 (pytest fixtures are imported by name, then requested as parameters)

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from sqlalchemy import select

from controlsvc.config.settings import Settings
from controlsvc.domain.mail import Mail
from controlsvc.mqtt.publisher import MqttPublisher
from controlsvc.store import alerts
from controlsvc.store.db import Database
from controlsvc.store.models.enclosures import Enclosure
from controlsvc.store.models.events import EventRecord
from controlsvc.store.models.sessions import Alert
from controlsvc.store.models.users import User
from schemas.topics import Topics
from tests.integration.bridge_fixtures import (  # noqa: F401 (fixtures)
    PREFIX,
    agents,
    bridge_settings,
    broker,
    broker_app,
    make_bridge,
    mosquitto_factory,
    operator,
    viewer,
    wait_state,
)
from tests.support.broker import mqtt_client  # noqa: F401 (fixture)

pytestmark = pytest.mark.mosquitto


@pytest.fixture
def settings(settings: Settings, broker) -> Settings:
    return bridge_settings(settings, broker)


@pytest.fixture
def app(broker_app: Flask) -> Flask:
    return broker_app


def _raise(database: Database, kind: str, eid: str, at: datetime, **kw) -> str:
    with database.session() as s:
        alert = alerts.raise_alert(s, kind, eid, f"{eid}: {kind}", [], now=at, **kw)
        assert alert is not None
        return alert.alert_id


def _alerts(client, headers, **query) -> list[dict]:
    response = client.get("/api/alerts", query_string=query, headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["items"]


def test_list_filters_and_pages_newest_first(client, viewer, database):
    now = datetime.now(UTC)
    old = _raise(database, "disk_low", "enc-a", now - timedelta(days=3))
    recovered_old = _raise(database, "camera_stalled", "enc-a", now - timedelta(days=2))
    with database.session() as s:
        alerts.recover(s, "camera_stalled", "enc-a", [], now=now - timedelta(days=2))
    newest = _raise(database, "enclosure_lost", "enc-b", now - timedelta(minutes=1))
    ids = [a["alert_id"] for a in _alerts(client, viewer)]
    assert ids == [newest, recovered_old, old]
    # Open and recent: still open (however old), or recovered within the window.
    since = (now - timedelta(days=1)).isoformat()
    assert [a["alert_id"] for a in _alerts(client, viewer, since=since)] == [newest, old]
    assert [a["alert_id"] for a in _alerts(client, viewer, state="recovered")] == [recovered_old]
    assert [a["alert_id"] for a in _alerts(client, viewer, enclosure_id="enc-b")] == [newest]
    first = client.get("/api/alerts?limit=2", headers=viewer).get_json()
    assert [a["alert_id"] for a in first["items"]] == [newest, recovered_old]
    rest = client.get(f"/api/alerts?limit=2&cursor={first['next_cursor']}", headers=viewer)
    assert [a["alert_id"] for a in rest.get_json()["items"]] == [old]
    assert rest.get_json()["next_cursor"] is None
    item = _alerts(client, viewer, enclosure_id="enc-b")[0]
    assert item["severity"] == "critical"
    assert item["recovered"] is False
    assert item["acknowledged"] is False
    assert item["acked_by"] is None
    assert item["occurrences"] == 1


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("state=closed", "state"),
        ("acknowledged=maybe", "acknowledged"),
        ("since=yesterday", "since"),
        ("since=2026-01-01T00:00:00", "since"),
        ("enclosure_id=Bad/Id", "enclosure_id"),
        ("limit=0", "limit"),
        ("cursor=garbage", "cursor"),
        ("colour=red", "colour"),
    ],
)
def test_bad_queries_name_the_field(client, viewer, database, query, field):
    _raise(database, "disk_low", "enc-a", datetime.now(UTC))
    response = client.get(f"/api/alerts?{query}", headers=viewer)
    assert response.status_code == 422, response.get_json()
    assert field in {e["field"] for e in response.get_json()["errors"]}


def test_ack_is_shared_with_who_and_when_and_goes_to_the_feed(
    client, operator, viewer, database, auth, broker, mqtt_client
):
    alert_id = _raise(database, "disk_low", "enc-a", datetime.now(UTC))
    feed = mqtt_client(broker, "jaxmba_operator")
    feed.subscribe(f"{PREFIX}/service/events")
    assert client.post(f"/api/alerts/{alert_id}/ack", headers=viewer).status_code == 403
    before = datetime.now(UTC)
    response = client.post(f"/api/alerts/{alert_id}/ack", headers=operator)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["acknowledged"] is True
    assert body["acked_by"] == "op@example.com"
    assert datetime.fromisoformat(body["acked_at"]) >= before
    # Every user sees it acknowledged: it is the service's record, not a browser's.
    assert _alerts(client, viewer, acknowledged="false") == []
    assert [a["acked_by"] for a in _alerts(client, viewer, acknowledged="true")] == [
        "op@example.com"
    ]
    # The other tabs learn it from the event feed (an alert.acked event, announced).
    with database.session() as s:
        event = s.scalar(select(EventRecord).where(EventRecord.kind == "alert.acked"))
        assert event is not None
        assert event.data["alert_id"] == alert_id
        assert event.data["acked_by"] == "op@example.com"
        event_id = event.id
    note = json.loads(feed.expect(f"{PREFIX}/service/events", timeout=10).payload)
    assert note["last_id"] >= event_id
    # Idempotent: a second acknowledgement (someone else's) keeps the first.
    admin = auth.headers(auth.create("admin@example.com", role="admin"))
    again = client.post(f"/api/alerts/{alert_id}/ack", headers=admin).get_json()
    assert again["acked_by"] == "op@example.com"
    assert again["acked_at"] == body["acked_at"]
    with database.session() as s:
        count = s.query(EventRecord).filter(EventRecord.kind == "alert.acked").count()
    assert count == 1
    assert client.get(f"/api/alerts/{alert_id}", headers=viewer).get_json() == again


def test_unknown_and_malformed_alert_ids(client, operator):
    missing = client.post("/api/alerts/disk_low:enc-a:00000000/ack", headers=operator)
    assert missing.status_code == 404
    assert "disk_low:enc-a:00000000" in missing.get_json()["detail"]
    bad = client.post("/api/alerts/has%20space/ack", headers=operator)
    assert bad.status_code == 422
    assert {e["field"] for e in bad.get_json()["errors"]} == {"alert_id"}
    assert client.get("/api/alerts").status_code == 401


def test_expected_online_is_settable_and_checked(client, operator, viewer, database):
    with database.session() as s:
        s.add(Enclosure(id="enc-a", name="enc-a", registered=True, state="offline"))
    assert client.get("/api/enclosures/enc-a", headers=viewer).get_json()["expected_online"] is (
        False
    )
    r = client.patch("/api/enclosures/enc-a", json={"expected_online": True}, headers=operator)
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["expected_online"] is True
    for bad in ("yes", None, 1):
        r = client.patch("/api/enclosures/enc-a", json={"expected_online": bad}, headers=operator)
        assert r.status_code == 422, (bad, r.get_json())
    r = client.patch("/api/enclosures/enc-a", json={"expected_online": True}, headers=viewer)
    assert r.status_code == 403


@pytest.mark.slow  # waits for the silence deadline
def test_lost_outside_sessions_when_expected_online(
    client, operator, viewer, settings, make_bridge, agents, database, broker, mqtt_client
):
    watcher = mqtt_client(broker, "jaxmba_operator")
    watcher.subscribe(f"{PREFIX}/service/alerts")
    make_bridge(settings)
    a = agents("enc-a", interval=1.0)
    a.online()
    wait_state(database, "enc-a", "idle")
    b = agents("enc-b", interval=1.0)
    b.online()
    wait_state(database, "enc-b", "idle")
    r = client.patch("/api/enclosures/enc-a", json={"expected_online": True}, headers=operator)
    assert r.status_code == 200, r.get_json()
    # An enclosure nobody expects online goes lost quietly; an expected one raises an alert.
    b.drop()
    a.drop()
    wait_state(database, "enc-a", "lost")
    wait_state(database, "enc-b", "lost")
    raised = json.loads(watcher.expect(f"{PREFIX}/service/alerts", timeout=10).payload)
    assert raised["kind"] == "enclosure_lost"
    assert raised["enclosure_id"] == "enc-a"
    assert raised["session_id"] is None
    assert raised["recovered"] is False
    items = _alerts(client, viewer, state="open")
    assert [(i["enclosure_id"], i["kind"]) for i in items] == [("enc-a", "enclosure_lost")]
    assert items[0]["message"] == "enc-a lost its connection; it is expected online"
    # Back online: recovered, on the wire too.
    again = agents("enc-a", interval=1.0)
    again.online()
    wait_state(database, "enc-a", "idle")
    recovered = json.loads(watcher.expect(f"{PREFIX}/service/alerts", timeout=10).payload)
    assert recovered["alert_id"] == raised["alert_id"]
    assert recovered["recovered"] is True
    assert _alerts(client, viewer, state="open") == []


def test_mail_stays_rate_limited_with_a_recovered_message(settings, database, broker):
    """A flapping enclosure: one mail for the first loss, a recovered mail after it, and
    no mail for the losses that follow within MAIL_EVERY_S (each still goes on MQTT)."""
    with database.session() as s:
        s.add(User(email="ops@example.com", password_hash="x", role="operator", alert_emails=True))
    sent: list[Mail] = []
    publisher = MqttPublisher(settings)
    topics = Topics(PREFIX)
    start = datetime.now(UTC)
    try:
        for i in range(3):
            at = start + timedelta(seconds=10 * i)
            _raise(database, "enclosure_lost", "enc-a", at)
            with database.session() as s:
                alerts.deliver_pending(s, publisher, topics, sent.append, now=at)
                alerts.recover(s, "enclosure_lost", "enc-a", [], now=at + timedelta(seconds=5))
            with database.session() as s:
                alerts.deliver_pending(s, publisher, topics, sent.append, now=at)
    finally:
        publisher.close()
    subjects = [m.subject for m in sent]
    assert subjects == [
        "[jaxmba] critical: enclosure lost on enc-a",
        "[jaxmba] recovered: enclosure lost on enc-a",
    ], subjects
    with database.session() as s:
        rows = list(s.scalars(select(Alert).order_by(Alert.id)))
    assert [r.mailed for r in rows] == [True, False, False]
    assert all(r.notify_pending is None for r in rows)


@pytest.mark.parametrize(
    ("lifecycle", "state", "reason", "sentence"),
    [
        ("lost", "lost", "connection lost", "enc-x lost its connection"),
        ("ready", "lost", "no message for 15 s", "enc-x stopped reporting (no message for 15 s)"),
        (None, "offline", "never seen", "enc-x has never connected"),
        ("disconnected", "offline", "clean shutdown", "enc-x was shut down"),
    ],
)
def test_lost_alerts_read_as_sentences(lifecycle, state, reason, sentence):
    enc = Enclosure(id="enc-x", name="enc-x", lifecycle=lifecycle, state=state, state_reason=reason)
    assert alerts.away_sentence(enc) == sentence
