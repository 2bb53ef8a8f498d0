"""GET /api/events end to end: a real Mosquitto, a real database, a real HTTP server.

Events are written the way the bridge writes them (`eventlog.record`, commit, then a QoS 0
notification on `{prefix}/service/events`), and read by an HTTP client over a socket.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import signal
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import httpx
import paho.mqtt.client as paho
import pytest
from flask import Flask
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import SecretStr
from sqlalchemy import event as sa_event

from controlsvc import metrics
from controlsvc.api import event_feed, tokens
from controlsvc.api import events as events_api
from controlsvc.broker import SERVICE_USER, LocalBroker
from controlsvc.config.sections import MqttSettings
from controlsvc.config.settings import Settings
from controlsvc.mqtt.connection import RECONNECT_MAX_S
from controlsvc.mqtt.event_feed import FALLBACK_READ_S, shutdown_all
from controlsvc.mqtt.loop_stop import stop_loop
from controlsvc.store import eventlog, users
from controlsvc.store.db import Database, utcnow
from tests.support import broker as broker_fixtures
from tests.support.server import serve
from tests.support.waiting import wait_for

mosquitto = broker_fixtures.mosquitto
mosquitto_factory = broker_fixtures.mosquitto_factory
PREFIX = "jaxmba/v1"
NEXT_EVENT_TIMEOUT_S = 10.0


# -- an SSE client over a real socket -------------------------------------------------------------
class SseStream:
    """Reads one event stream on a thread; events and comments land in queues."""

    def __init__(
        self, base_url: str, *, headers: dict[str, str] | None = None, params: Any = None
    ) -> None:
        self.events: queue.Queue[dict[str, str]] = queue.Queue()
        self.comments: queue.Queue[str] = queue.Queue()
        self.ended = threading.Event()
        self.status: int | None = None
        self.headers: httpx.Headers | None = None
        self.body = b""
        self.retry: str | None = None
        self._ready = threading.Event()
        self._sock: socket.socket | None = None
        self._client = httpx.Client(base_url=base_url, timeout=httpx.Timeout(10.0, read=None))
        self._thread = threading.Thread(target=self._run, args=(headers or {}, params), daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "no response headers"

    def _run(self, headers: dict[str, str], params: Any) -> None:
        try:
            with self._client.stream("GET", "/api/events", headers=headers, params=params) as resp:
                self.status, self.headers = resp.status_code, resp.headers
                stream = resp.extensions.get("network_stream")
                self._sock = stream.get_extra_info("socket") if stream is not None else None
                if resp.status_code != 200:
                    self.body = resp.read()
                    return
                self._ready.set()
                fields: dict[str, str] = {}
                for line in resp.iter_lines():
                    if line == "":
                        if "data" in fields:  # as a browser does: no data, no event
                            self.events.put(fields)
                        elif "retry" in fields:
                            self.retry = fields["retry"]
                        fields = {}
                    elif line.startswith(":"):
                        self.comments.put(line[1:].strip())
                    else:
                        name, _, value = line.partition(":")
                        fields[name] = value.removeprefix(" ")
        except (httpx.HTTPError, OSError):
            pass  # closed by the test
        finally:
            self._ready.set()
            self.ended.set()
            self._client.close()

    def next_event(self, timeout: float = NEXT_EVENT_TIMEOUT_S) -> dict[str, str]:
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no event within {timeout:g} s") from None

    def take(self, count: int) -> list[dict[str, str]]:
        return [self.next_event() for _ in range(count)]

    def wait_connected(self) -> None:
        assert self.status == 200, (self.status, self.body)
        assert self.comments.get(timeout=10) == "connected"

    def assert_no_event(self, timeout: float = 0.3) -> None:
        with pytest.raises(queue.Empty):
            self.events.get(timeout=timeout)

    def close(self) -> None:
        """Hang up as a browser tab would: the socket closes, no more requests."""
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(10)


# -- fixtures -------------------------------------------------------------------------------------
@pytest.fixture
def live_settings(settings: Settings, mosquitto: LocalBroker) -> Settings:
    mqtt = MqttSettings(
        host=mosquitto.host,
        port=mosquitto.service_port,
        username=SERVICE_USER,
        password=SecretStr(mosquitto.accounts[SERVICE_USER]),
        topic_prefix=PREFIX,
        keepalive_s=5,
    )
    return settings.model_copy(update={"mqtt": mqtt})


def _make_app(app_settings: Settings, database: Database) -> Flask:
    from controlsvc.ops.app import create_app

    return create_app(app_settings, database=database)


@pytest.fixture
def live_app(live_settings: Settings, database: Database) -> Iterator[Flask]:
    app = _make_app(live_settings, database)
    try:
        yield app
    finally:
        event_feed.close_feed(app)


def _serve(app: Flask) -> Iterator[str]:
    # closing the feed first ends open streams, so their threads finish
    with serve(app, before_shutdown=lambda: event_feed.close_feed(app)) as url:
        yield url


@pytest.fixture
def base_url(live_app: Flask) -> Iterator[str]:
    yield from _serve(live_app)


class Notifier:
    """Publishes `{prefix}/service/events` as the bridge does (QoS 0, not retained).

    Plain paho (connect, then loop_start): MqttTestClient runs `loop()` before `loop_start()`,
    and paho then leaks a socket pair, which filterwarnings=error turns into a failure.
    """

    def __init__(self, broker: LocalBroker) -> None:
        self._client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        self._client.username_pw_set(SERVICE_USER, broker.accounts[SERVICE_USER])
        self._client.connect(broker.host, broker.service_port, keepalive=30)
        self._client.loop_start()
        wait_for(self._client.is_connected, message="notifier not connected")

    def notify(self, last_id: int) -> None:
        info = self._client.publish(
            eventlog.notification_topic(PREFIX), eventlog.notification_payload(last_id), qos=0
        )
        info.wait_for_publish(5)

    def close(self) -> None:
        self._client.disconnect()
        stop_loop(self._client)


@pytest.fixture
def notifier(mosquitto: LocalBroker) -> Iterator[Notifier]:
    client = Notifier(mosquitto)
    try:
        yield client
    finally:
        client.close()


Recorder = Callable[..., list[int]]


@pytest.fixture
def record(database: Database, notifier: Notifier) -> Recorder:
    """Write events as the bridge does: one transaction, commit, then notify (unless told not)."""

    def write(
        *events: tuple[str, dict[str, Any]] | dict[str, Any], notify: bool = True
    ) -> list[int]:
        ids = []
        with database.session() as session:
            for item in events:
                if isinstance(item, dict):
                    kw = dict(item)
                    ids.append(
                        eventlog.record(session, kw.pop("kind"), kw.pop("data", {}), **kw).id
                    )
                else:
                    ids.append(eventlog.record(session, item[0], item[1]).id)
        if notify:
            notifier.notify(ids[-1])
        return ids

    return write


def _token(app: Flask, database: Database, role: str = "viewer", email: str | None = None) -> str:
    with database.session() as session:
        user = users.create_user(
            session,
            email=email or f"{role}-{uuid.uuid4().hex[:6]}@example.org",
            password="a long enough password",
            role=role,
        )
    with app.app_context():
        return tokens.issue_tokens(user).access_token


@pytest.fixture
def bearer(live_app: Flask, database: Database) -> dict[str, str]:
    return {"Authorization": f"Bearer {_token(live_app, database)}"}


def _state(n: int, eid: str = "enc-a") -> dict[str, Any]:
    return {"kind": "enclosure.state", "data": {"n": n}, "enclosure_id": eid}


# -- tests ----------------------------------------------------------------------------------------
def test_stream_delivers_committed_events(base_url, bearer, record, live_app):
    stream = SseStream(base_url, headers=bearer)
    try:
        stream.wait_connected()
        assert stream.headers is not None
        assert stream.headers["content-type"].startswith("text/event-stream")
        assert stream.headers["cache-control"] == "no-cache"
        assert stream.headers["x-accel-buffering"] == "no"
        assert stream.retry == str(events_api.RETRY_MS)
        cid = uuid.uuid4()
        ids = record(
            _state(1),
            {"kind": "command.updated", "data": {"state": "sent"}, "command_id": cid},
        )
        first, second = stream.take(2)
        assert first["id"] == str(ids[0])
        assert first["event"] == "enclosure.state"
        body = json.loads(first["data"])
        assert body["data"] == {"n": 1}
        assert body["enclosure_id"] == "enc-a"
        assert second["event"] == "command.updated"
        assert json.loads(second["data"])["command_id"] == str(cid)
    finally:
        stream.close()


def test_resume_with_last_event_id_gets_exactly_the_missed_events(base_url, bearer, record):
    stream = SseStream(base_url, headers=bearer)
    stream.wait_connected()
    seen = record(_state(1), _state(2))
    assert [e["id"] for e in stream.take(2)] == [str(i) for i in seen]
    stream.close()

    missed = record(_state(3)) + record(_state(4), _state(5))
    resumed = SseStream(base_url, headers={**bearer, "Last-Event-ID": str(seen[-1])})
    try:
        resumed.wait_connected()
        assert [e["id"] for e in resumed.take(3)] == [str(i) for i in missed]
        later = record(_state(6))
        assert [e["id"] for e in resumed.take(1)] == [str(later[0])]
        resumed.assert_no_event()  # nothing twice
    finally:
        resumed.close()

    # the query parameter does the same for clients that cannot set the header
    by_param = SseStream(base_url, headers=bearer, params={"last_event_id": missed[1]})
    try:
        by_param.wait_connected()
        assert [e["id"] for e in by_param.take(2)] == [str(missed[2]), str(later[0])]
        by_param.assert_no_event()
    finally:
        by_param.close()


def test_resume_pages_through_a_long_backlog_then_goes_live(base_url, bearer, record, monkeypatch):
    monkeypatch.setattr(eventlog, "MAX_BATCH", 7)
    backlog = record(*[_state(n) for n in range(20)], notify=False)
    stream = SseStream(base_url, headers={**bearer, "Last-Event-ID": "0"})
    try:
        stream.wait_connected()
        assert [int(e["id"]) for e in stream.take(20)] == backlog
        live_ids = record(_state(99))
        assert stream.next_event()["id"] == str(live_ids[0])
    finally:
        stream.close()


def test_filters(base_url, bearer, record):
    by_kind = SseStream(base_url, headers=bearer, params={"kinds": "command.updated,alert"})
    by_enclosure = SseStream(base_url, headers=bearer, params={"enclosure_id": "enc-b"})
    try:
        by_kind.wait_connected()
        by_enclosure.wait_connected()
        ids = record(
            _state(1, "enc-a"),
            _state(2, "enc-b"),
            {"kind": "command.updated", "data": {}, "enclosure_id": "enc-a"},
            {"kind": "alert", "data": {"text": "disk low"}},
        )
        assert [e["id"] for e in by_kind.take(2)] == [str(ids[2]), str(ids[3])]
        assert [e["id"] for e in by_enclosure.take(1)] == [str(ids[1])]
        by_kind.assert_no_event()
        by_enclosure.assert_no_event(0.05)
    finally:
        by_kind.close()
        by_enclosure.close()


@pytest.mark.parametrize(
    "params",
    [{"kinds": "Not A Kind"}, {"enclosure_id": "UPPER"}, {"last_event_id": "-1"}],
)
def test_bad_parameters_are_422(live_app, bearer, params):
    response = live_app.test_client().get("/api/events", headers=bearer, query_string=params)
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"


def test_bad_last_event_id_header_is_422(live_app, bearer):
    response = live_app.test_client().get("/api/events", headers={**bearer, "Last-Event-ID": "abc"})
    assert response.status_code == 422
    assert response.get_json()["errors"][0]["field"] == "Last-Event-ID"


def test_no_credentials_is_401(live_app):
    response = live_app.test_client().get("/api/events")
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"


def test_jwt_in_the_url_is_refused(live_app, database):
    token = _token(live_app, database)
    client = live_app.test_client()
    for name in ("token", "access_token", "jwt"):
        response = client.get("/api/events", query_string={name: token})
        assert response.status_code == 400
        assert "ticket" in response.get_json()["detail"]
    # not even as a ticket: a JWT is not a ticket
    assert client.get("/api/events", query_string={"ticket": token[:64]}).status_code == 401


def test_ticket_opens_one_stream_once(base_url, live_app, bearer, record):
    client = live_app.test_client()
    assert client.post("/api/events/ticket").status_code == 401
    response = client.post("/api/events/ticket", headers=bearer)
    assert response.status_code == 201
    body = response.get_json()
    assert set(body) == {"ticket", "expires_at"}

    stream = SseStream(base_url, params={"ticket": body["ticket"]})
    try:
        stream.wait_connected()
        ids = record(_state(1))
        assert stream.next_event()["id"] == str(ids[0])
    finally:
        stream.close()

    again = SseStream(base_url, params={"ticket": body["ticket"]})
    assert again.status == 401
    assert b"ticket" in again.body
    again.close()


def test_expired_ticket_is_refused(live_app, database):
    token_user_email = "late@example.org"
    _token(live_app, database, email=token_user_email)
    with database.session() as session:
        user = users._find_by_email(session, token_user_email)
        assert user is not None
        issued = eventlog.issue_ticket(
            session, user.id, now=utcnow() - eventlog.TICKET_TTL - timedelta(seconds=1)
        )
    response = live_app.test_client().get("/api/events", query_string={"ticket": issued.ticket})
    assert response.status_code == 401


def test_disconnecting_ends_the_generator(base_url, bearer, live_app):
    streams_before = metrics.SSE_STREAMS._value.get()
    stream = SseStream(base_url, headers=bearer)
    stream.wait_connected()
    feed = live_app.extensions[event_feed.EXTENSION_KEY]
    assert feed.subscriber_count == 1
    assert metrics.SSE_STREAMS._value.get() == streams_before + 1
    stream.close()
    # no event is sent: the idle stream notices the hang-up by itself, well before a heartbeat
    wait_for(lambda: feed.subscriber_count == 0, timeout=events_api.HEARTBEAT_S - 5)
    wait_for(lambda: metrics.SSE_STREAMS._value.get() == streams_before, timeout=5)


def test_stopping_the_worker_ends_streams(base_url, bearer, live_app):
    stream = SseStream(base_url, headers=bearer)
    stream.wait_connected()
    shutdown_all()  # what SIGTERM does in a gunicorn worker
    last = stream.next_event()
    assert last["event"] == "reconnect"
    assert json.loads(last["data"])["reason"] == "server stopping"
    assert stream.ended.wait(5)
    stream.close()


def test_heartbeat_comments_keep_an_idle_stream_open(base_url, bearer, monkeypatch):
    monkeypatch.setattr(events_api, "HEARTBEAT_S", 0.2)
    stream = SseStream(base_url, headers=bearer)
    try:
        stream.wait_connected()
        assert stream.comments.get(timeout=5) == "keep-alive"
        assert stream.comments.get(timeout=5) == "keep-alive"
    finally:
        stream.close()


def test_one_query_per_notification_whatever_the_number_of_streams(
    base_url, bearer, record, database, live_app
):
    streams = [SseStream(base_url, headers=bearer) for _ in range(5)]
    statements: list[str] = []

    def seen(_conn, _cursor, statement, *_args):
        if "FROM events" in statement and statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    try:
        for stream in streams:
            stream.wait_connected()
        feed = live_app.extensions[event_feed.EXTENSION_KEY]
        wait_for(lambda: feed.broker_connected)
        warm_up = record(_state(0))  # after the read the feed does when it connects
        for stream in streams:
            assert stream.next_event()["id"] == str(warm_up[0])
        sa_event.listen(database.engine, "before_cursor_execute", seen)
        ids = record(_state(1), _state(2))
        for stream in streams:
            assert [e["id"] for e in stream.take(2)] == [str(i) for i in ids]
        assert len(statements) == 1, statements
    finally:
        sa_event.remove(database.engine, "before_cursor_execute", seen)
        for stream in streams:
            stream.close()


def test_wait_for_command_wakes_on_its_update(live_app, record):
    cid = uuid.uuid4()
    with live_app.app_context():
        feed = event_feed.current_feed()
    woke: list[bool] = []
    waiter = threading.Thread(target=lambda: woke.append(feed.wait_for_command(cid, 10)))
    waiter.start()
    wait_for(lambda: cid in feed._watches)
    record({"kind": "command.updated", "data": {"state": "succeeded"}, "command_id": cid})
    waiter.join(10)
    assert woke == [True]
    assert feed.wait_for_command(uuid.uuid4(), 0.05) is False


@pytest.mark.slow  # waits for the fallback reads
def test_without_a_broker_the_feed_reads_the_log_every_second(
    settings, database, bearer, record, caplog
):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        dead_port = sock.getsockname()[1]
    no_broker = settings.model_copy(
        update={"mqtt": MqttSettings(host="127.0.0.1", port=dead_port, topic_prefix=PREFIX)}
    )
    app = _make_app(no_broker, database)
    caplog.set_level(logging.WARNING, logger="controlsvc.mqtt.event_feed")
    serving = _serve(app)
    url = next(serving)
    try:
        stream = SseStream(url, headers=bearer)
        stream.wait_connected()
        ids = record(_state(1), notify=False)
        assert stream.next_event(timeout=FALLBACK_READ_S + 5)["id"] == str(ids[0])
        ids = record(_state(2), notify=False)
        assert stream.next_event(timeout=FALLBACK_READ_S + 5)["id"] == str(ids[0])
        stream.close()
        unavailable = [r for r in caplog.records if "unavailable" in r.getMessage()]
        assert len(unavailable) == 1  # logged once, not once per retry
    finally:
        next(serving, None)


def test_feed_reconnects_and_catches_up_after_a_broker_restart(
    mosquitto_factory, settings, database, bearer, caplog
):
    broker = mosquitto_factory()
    mqtt = MqttSettings(
        host=broker.host,
        port=broker.service_port,
        username=SERVICE_USER,
        password=SecretStr(broker.accounts[SERVICE_USER]),
        topic_prefix=PREFIX,
    )
    app = _make_app(settings.model_copy(update={"mqtt": mqtt}), database)
    caplog.set_level(logging.WARNING, logger="controlsvc.mqtt.event_feed")
    serving = _serve(app)
    url = next(serving)
    try:
        stream = SseStream(url, headers=bearer)
        stream.wait_connected()
        feed = app.extensions[event_feed.EXTENSION_KEY]
        wait_for(lambda: feed.broker_connected)
        broker.restart()
        with database.session() as session:
            event_id = eventlog.record(session, "enclosure.state", {"n": 1}).id
        assert stream.next_event()["id"] == str(event_id)  # by fallback or after reconnecting
        wait_for(lambda: feed.broker_connected, timeout=RECONNECT_MAX_S)
        notifier = Notifier(broker)
        try:
            with database.session() as session:
                event_id = eventlog.record(session, "enclosure.state", {"n": 2}).id
            notifier.notify(event_id)
            assert stream.next_event(timeout=FALLBACK_READ_S)["id"] == str(event_id)
        finally:
            notifier.close()
        stream.close()
        messages = [r.getMessage() for r in caplog.records]
        assert sum("broker unavailable" in m for m in messages) == 1
        assert sum("broker back" in m for m in messages) == 1
    finally:
        next(serving, None)


@pytest.mark.slow
def test_sigterm_ends_streams_at_once_under_gunicorn(settings, database, db_url, tmp_path):
    """gunicorn waits its graceful timeout for open requests; streams must not make it wait."""
    from tests.integration.test_metrics import start_gunicorn

    token = _token(_make_app(settings, database), database)
    proc, url = start_gunicorn(db_url, tmp_path, workers=1)
    try:
        stream = SseStream(url, headers={"Authorization": f"Bearer {token}"})
        stream.wait_connected()
        proc.send_signal(signal.SIGTERM)
        # The worker ends the stream itself, with a last event saying so: a worker killed at
        # the end of gunicorn's graceful timeout would just drop the connection.
        last = stream.next_event()
        assert last["event"] == "reconnect"
        assert json.loads(last["data"])["reason"] == "server stopping"
        assert stream.ended.wait(30)
        stream.close()
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
