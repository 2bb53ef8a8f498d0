"""GET /api/enclosures/{eid}/live and /preview.jpg end to end: a real Mosquitto, a real database,
a real HTTP server, and a fake agent that answers start_live_view by publishing JPEGs."""

from __future__ import annotations

import base64
import contextlib
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from flask import Flask

from controlsvc.api import event_feed, tokens
from controlsvc.api import live as live_api
from controlsvc.broker import LocalBroker
from controlsvc.config.settings import Settings
from controlsvc.mqtt.publisher import PUBLISHER_KEY
from controlsvc.ops.app import create_app
from controlsvc.store import enclosure_rows, enclosures, users
from controlsvc.store.db import Database
from enclosure_agent.recorder import encode_jpeg
from schemas.codec import dump_message, parse_message
from schemas.commands import Ack
from schemas.commands import Command as CommandMessage
from schemas.enums import AckResult, CommandKind
from schemas.topics import Topics
from tests.integration.bridge_fixtures import bridge_settings
from tests.support import broker as broker_fixtures
from tests.support.broker import BrokerAccount
from tests.support.mqtt import MqttTestClient
from tests.support.server import serve
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.mosquitto, pytest.mark.slow]  # HTTP server, agent, JPEG streams

mosquitto = broker_fixtures.mosquitto
broker_enclosure = broker_fixtures.broker_enclosure
mqtt_client = broker_fixtures.mqtt_client
TOPICS = Topics("jaxmba/v1")
JPEG_MAGIC = b"\xff\xd8"


def _jpeg(n: int) -> bytes:
    frame = np.full((48, 64, 3), (n * 40) % 256, dtype=np.uint8)
    return encode_jpeg(frame, max_width=64, quality=75)


# -- a fake agent ---------------------------------------------------------------------------------
class FakeAgent:
    """Answers commands on its own thread: start_live_view -> preview JPEGs for a while (a real
    agent publishes for duration_s; this one for `publish_s`), snapshot -> a base64 JPEG."""

    def __init__(self, client: MqttTestClient, eid: str, *, publish_s: float = 3.0) -> None:
        self.client = client
        self.eid = eid
        self.publish_s = publish_s
        self.answer_live_view = True
        self.commands: queue.Queue[CommandMessage] = queue.Queue()
        self.frames_sent = 0
        self._live_until = 0.0
        self._stop = threading.Event()
        client.subscribe(TOPICS.cmd(eid), qos=1)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _ack(self, command: CommandMessage, result: AckResult, data: Any = None) -> None:
        ack = Ack(at=command.at, command_id=command.id, result=result, data=data)
        self.client.publish(TOPICS.ack(self.eid), dump_message(ack), qos=1)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(AssertionError):
                msg = self.client.expect(TOPICS.cmd(self.eid), timeout=0.05)
                command = parse_message(CommandMessage, msg.payload)
                self.commands.put(command)
                if command.kind is CommandKind.START_LIVE_VIEW and self.answer_live_view:
                    self._live_until = time.monotonic() + self.publish_s
                    self._ack(command, AckResult.SUCCEEDED)
                elif command.kind is CommandKind.SNAPSHOT:
                    self._ack(command, AckResult.ACCEPTED)
                    jpeg = _jpeg(99)
                    self._ack(
                        command,
                        AckResult.SUCCEEDED,
                        {"jpeg_base64": base64.b64encode(jpeg).decode(), "bytes": len(jpeg)},
                    )
            if time.monotonic() < self._live_until:
                self.frames_sent += 1
                self.client.publish(TOPICS.preview(self.eid), _jpeg(self.frames_sent), qos=0)

    def kinds(self) -> list[str]:
        out = []
        while not self.commands.empty():
            out.append(self.commands.get_nowait())
        for command in out:
            self.commands.put(command)
        return [c.kind.value for c in out]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


# -- an MJPEG client over a real socket -----------------------------------------------------------
class MjpegStream:
    """Reads one multipart stream on a thread; each JPEG part lands in `parts`."""

    def __init__(self, base_url: str, path: str, *, headers: dict[str, str] | None = None) -> None:
        self.parts: queue.Queue[bytes] = queue.Queue()
        self.ended = threading.Event()
        self.status: int | None = None
        self.headers: httpx.Headers | None = None
        self.body = b""
        self._ready = threading.Event()
        self._sock: socket.socket | None = None
        self._client = httpx.Client(base_url=base_url, timeout=httpx.Timeout(10.0, read=None))
        self._thread = threading.Thread(target=self._run, args=(path, headers or {}), daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "no response headers"

    def _run(self, path: str, headers: dict[str, str]) -> None:
        try:
            with self._client.stream("GET", path, headers=headers) as resp:
                self.status, self.headers = resp.status_code, resp.headers
                stream = resp.extensions.get("network_stream")
                self._sock = stream.get_extra_info("socket") if stream is not None else None
                if resp.status_code != 200:
                    self.body = resp.read()
                    return
                self._ready.set()
                buffer = b""
                for chunk in resp.iter_bytes():
                    buffer += chunk
                    while True:
                        start = buffer.find(b"--frame\r\n")
                        head_end = buffer.find(b"\r\n\r\n", start)
                        if start < 0 or head_end < 0:
                            break
                        head = buffer[start:head_end].decode("ascii").split("\r\n")
                        length = int(
                            next(h for h in head if h.lower().startswith("content-length:")).split(
                                ":"
                            )[1]
                        )
                        body_start = head_end + 4
                        if len(buffer) < body_start + length + 2:
                            break
                        self.parts.put(buffer[body_start : body_start + length])
                        buffer = buffer[body_start + length + 2 :]
        except (httpx.HTTPError, OSError):
            pass  # closed by the test
        finally:
            self._ready.set()
            self.ended.set()
            self._client.close()

    def take(self, count: int, timeout: float = 10.0) -> list[bytes]:
        out = []
        for _ in range(count):
            try:
                out.append(self.parts.get(timeout=timeout))
            except queue.Empty:
                raise AssertionError(f"only {len(out)} of {count} parts in {timeout:g} s") from None
        return out

    def close(self) -> None:
        """Hang up as a browser does when the <img> goes away."""
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(10)


# -- fixtures -------------------------------------------------------------------------------------
@pytest.fixture
def live_settings(settings: Settings, mosquitto: LocalBroker) -> Settings:
    return bridge_settings(settings, mosquitto)


@pytest.fixture
def live_app(live_settings: Settings, database: Database) -> Iterator[Flask]:
    app = create_app(live_settings, database=database)
    if "enclosure_live" not in app.blueprints:  # until app.py lists "live"
        live_api.register(app, live_settings)
    try:
        yield app
    finally:
        live_api.close_relay(app)
        event_feed.close_feed(app)
        publisher = app.extensions.get(PUBLISHER_KEY)
        if publisher is not None:
            publisher.close()


@pytest.fixture
def base_url(live_app: Flask) -> Iterator[str]:
    # closing the relay first ends open streams, so their threads finish
    with serve(live_app, before_shutdown=lambda: live_api.close_relay(live_app)) as url:
        yield url


@pytest.fixture
def eid(database: Database, broker_enclosure: BrokerAccount) -> str:
    """An enclosure the service knows, reported idle."""
    with database.session() as session:
        rows = enclosure_rows.lock_rows(session, [broker_enclosure.username])
        rows[broker_enclosure.username].state = "idle"
        enclosure_rows.write_back(session, rows.values())
    return broker_enclosure.username


@pytest.fixture
def agent(
    mosquitto: LocalBroker,
    broker_enclosure: BrokerAccount,
    mqtt_client: Callable[..., MqttTestClient],
    eid: str,
) -> Iterator[FakeAgent]:
    client = mqtt_client(mosquitto, broker_enclosure.username, broker_enclosure.password)
    fake = FakeAgent(client, eid)
    try:
        yield fake
    finally:
        fake.stop()


def _token(app: Flask, database: Database, role: str = "viewer") -> str:
    with database.session() as session:
        user = users.create_user(
            session,
            email=f"{role}-{uuid.uuid4().hex[:6]}@example.org",
            password="a long enough password",
            role=role,
        )
    with app.app_context():
        return tokens.issue_tokens(user).access_token


@pytest.fixture
def bearer(live_app: Flask, database: Database) -> dict[str, str]:
    return {"Authorization": f"Bearer {_token(live_app, database)}"}


def _relay(app: Flask) -> Any:
    return app.extensions[live_api.RELAY_KEY]


# -- tests ----------------------------------------------------------------------------------------
def test_viewer_gets_jpeg_parts_and_the_agent_is_asked_to_publish(
    base_url, bearer, agent, eid, live_app
):
    stream = MjpegStream(base_url, f"/api/enclosures/{eid}/live", headers=bearer)
    try:
        assert stream.status == 200, stream.body
        assert stream.headers is not None
        assert stream.headers["content-type"] == "multipart/x-mixed-replace; boundary=frame"
        assert stream.headers["cache-control"] == "no-cache"
        assert stream.headers["x-accel-buffering"] == "no"
        parts = stream.take(2)
        assert all(part.startswith(JPEG_MAGIC) and part.endswith(b"\xff\xd9") for part in parts)
        first = agent.commands.get(timeout=5)
        assert first.kind is CommandKind.START_LIVE_VIEW
        assert first.params == {"duration_s": live_api.LIVE_VIEW_S}
        assert _relay(live_app).viewers_of(eid) == 1
    finally:
        stream.close()
    # the last viewer left: the subscription goes
    relay = _relay(live_app)
    wait_for(lambda: relay.viewers_of(eid) == 0, message="viewer not released")
    assert TOPICS.preview(eid) not in relay.subscribed_topics()


def test_two_viewers_share_one_subscription_and_one_command(base_url, bearer, agent, eid, live_app):
    one = MjpegStream(base_url, f"/api/enclosures/{eid}/live", headers=bearer)
    two = MjpegStream(base_url, f"/api/enclosures/{eid}/live", headers=bearer)
    try:
        assert one.take(2)
        assert two.take(2)
        relay = _relay(live_app)
        assert relay.viewers_of(eid) == 2
        assert TOPICS.preview(eid) in relay.subscribed_topics()
        assert agent.kinds() == ["start_live_view"]  # not one per viewer
        one.close()
        wait_for(lambda: relay.viewers_of(eid) == 1)
        assert TOPICS.preview(eid) in relay.subscribed_topics()
        two.take(1)  # still flowing
    finally:
        one.close()
        two.close()
    wait_for(lambda: TOPICS.preview(eid) not in _relay(live_app).subscribed_topics())


def test_start_live_view_is_resent_while_watching(
    base_url, bearer, agent, eid, monkeypatch, live_app
):
    from controlsvc.mqtt import preview as mqtt_preview

    monkeypatch.setattr(mqtt_preview, "REFRESH_S", 0.5)
    agent.publish_s = 10.0
    stream = MjpegStream(base_url, f"/api/enclosures/{eid}/live", headers=bearer)
    try:
        stream.take(1)
        wait_for(lambda: agent.kinds().count("start_live_view") >= 3, message=agent.kinds)
    finally:
        stream.close()


def test_ticket_opens_one_stream_once(base_url, bearer, agent, eid):
    ticket = httpx.post(f"{base_url}/api/events/ticket", headers=bearer).json()["ticket"]
    path = f"/api/enclosures/{eid}/live?ticket={ticket}"
    stream = MjpegStream(base_url, path)
    try:
        assert stream.status == 200, stream.body
        assert stream.take(1)[0].startswith(JPEG_MAGIC)
    finally:
        stream.close()
    again = httpx.get(base_url + path)
    assert again.status_code == 401
    assert again.headers["content-type"] == "application/problem+json"


def test_refusals(base_url, bearer, eid):
    no_token = httpx.get(f"{base_url}/api/enclosures/{eid}/live")
    assert no_token.status_code == 401
    unknown = httpx.get(f"{base_url}/api/enclosures/enc-nobody/live", headers=bearer)
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == "application/problem+json"
    in_url = httpx.get(f"{base_url}/api/enclosures/{eid}/live?access_token=x")
    assert in_url.status_code == 400
    assert httpx.get(f"{base_url}/api/enclosures/{eid}/preview.jpg").status_code == 401
    unknown_jpg = httpx.get(f"{base_url}/api/enclosures/enc-nobody/preview.jpg", headers=bearer)
    assert unknown_jpg.status_code == 404


def test_stream_ends_when_no_frame_comes(base_url, bearer, agent, eid, monkeypatch, live_app):
    monkeypatch.setattr(live_api, "FRAME_TIMEOUT_S", 1.0)
    agent.answer_live_view = False
    stream = MjpegStream(base_url, f"/api/enclosures/{eid}/live", headers=bearer)
    assert stream.status == 200
    assert stream.ended.wait(5), "the stream did not end without frames"
    assert stream.parts.empty()
    wait_for(lambda: _relay(live_app).viewers_of(eid) == 0)


def test_stream_ends_when_the_worker_stops(base_url, bearer, agent, eid, live_app, monkeypatch):
    """With frames due only every 30 s and no frame time-out, the stream can end only because
    the worker's relays closed."""
    monkeypatch.setattr(live_api, "FRAME_TIMEOUT_S", 3600.0)
    agent.publish_s = 30.0
    stream = MjpegStream(base_url, f"/api/enclosures/{eid}/live", headers=bearer)
    try:
        stream.take(1)
        from controlsvc.mqtt import preview as mqtt_preview

        mqtt_preview.shutdown_all()
        assert stream.ended.wait(25), "the stream did not end when the relays closed"
    finally:
        stream.close()


def test_preview_jpg_from_a_snapshot_then_from_memory(base_url, bearer, agent, eid):
    response = httpx.get(f"{base_url}/api/enclosures/{eid}/preview.jpg", headers=bearer)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/jpeg"
    assert response.headers["cache-control"] == "no-store"
    assert response.content.startswith(JPEG_MAGIC)
    assert agent.kinds() == ["snapshot"]
    again = httpx.get(f"{base_url}/api/enclosures/{eid}/preview.jpg", headers=bearer)
    assert again.content == response.content
    assert agent.kinds() == ["snapshot"]  # answered from memory


def test_preview_jpg_uses_the_live_frames(base_url, bearer, agent, eid):
    stream = MjpegStream(base_url, f"/api/enclosures/{eid}/live", headers=bearer)
    try:
        stream.take(2)
        ticket = httpx.post(f"{base_url}/api/events/ticket", headers=bearer).json()["ticket"]
        response = httpx.get(f"{base_url}/api/enclosures/{eid}/preview.jpg?ticket={ticket}")
        assert response.status_code == 200, response.text
        assert response.content.startswith(JPEG_MAGIC)
        assert "snapshot" not in agent.kinds()
    finally:
        stream.close()


def test_preview_jpg_404_when_the_enclosure_is_offline(base_url, bearer, eid, database):
    with database.session() as session:
        enclosures.get_enclosure(session, eid).state = "offline"
    response = httpx.get(f"{base_url}/api/enclosures/{eid}/preview.jpg", headers=bearer)
    assert response.status_code == 404
    assert response.json()["detail"].startswith("no preview available")


def test_live_route_is_documented_for_the_ui(base_url):
    paths = httpx.get(f"{base_url}/swagger.json").json()["paths"]
    assert "/api/enclosures/{eid}/live" in paths
    assert "/api/enclosures/{eid}/preview.jpg" in paths
