"""Helpers of the bridge, enclosure and command tests: a broker of the test's own, a bridge on
it, and a tiny fake agent (its own MQTT 5 connection, Will, state/status, answers to commands).

Import the fixtures into a test module::

    from tests.integration.bridge_fixtures import broker, make_bridge, agents  # noqa: F401
"""

from __future__ import annotations

import json
import secrets
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as paho
import pytest
from flask import Flask
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import SecretStr
from sqlalchemy import func, select

from controlsvc.bridge import Bridge
from controlsvc.broker import SERVICE_USER, LocalBroker
from controlsvc.config.settings import Settings
from controlsvc.mqtt.loop_stop import stop_loop
from controlsvc.store.db import Database
from controlsvc.store.models.commands import Command
from controlsvc.store.models.enclosures import Enclosure, EnclosureTransition, StatusRecord
from tests.support.broker import mosquitto_factory  # noqa: F401 (a fixture)
from tests.support.waiting import wait_for

PREFIX = "jaxmba/v1"
ANSWER_TIMEOUT_S = 5.0


def now() -> datetime:
    return datetime.now(UTC)


# -- payloads ------------------------------------------------------------------------------------
def state_payload(
    state: str,
    boot_id: str,
    *,
    at: datetime | None = None,
    interval: float = 5.0,
    connection: int | None = None,
) -> bytes:
    body: dict[str, Any] = {
        "v": 1,
        "at": (at or now()).isoformat(),
        "state": state,
        "boot_id": boot_id,
        "agent_version": "test-1.0",
        "status_interval_s": interval,
    }
    if connection is not None:
        body["connection"] = connection
    return json.dumps(body).encode()


def status_payload(
    boot_id: str,
    seq: int,
    *,
    at: datetime | None = None,
    recording: str | None = None,
    error: str | None = None,
    connected: bool = True,
    clock: dict[str, Any] | None = None,
) -> bytes:
    body: dict[str, Any] = {
        "v": 1,
        "at": (at or now()).isoformat(),
        "seq": seq,
        "boot_id": boot_id,
        "camera": {
            "source": "testpattern",
            "connected": connected,
            "recording": recording is not None,
            "measured_fps": 30.0,
            "frames_written": seq,
        },
        "recording": None,
        "system": {
            "uptime_s": 100.0 + seq,
            "load_1": 0.1,
            "load_5": 0.1,
            "load_15": 0.1,
            "ram_total_bytes": 8 << 30,
            "ram_free_bytes": 4 << 30,
            "disk_total_bytes": 1 << 40,
            "disk_free_bytes": 1 << 39,
            "agent_version": "test-1.0",
            "os_release": "Linux",
            "hostname": "host",
        },
        "last_error": error,
    }
    if clock is not None:
        body["clock"] = clock
    if recording is not None:
        body["recording"] = {
            "session_id": recording,
            "file": f"/rec/{recording}/a.mkv",
            "segment_started_at": (at or now()).isoformat(),
            "recorded_s": 1.0,
        }
    return json.dumps(body).encode()


def ack_payload(command_id: str, result: str, detail: str | None = None, data: Any = None) -> bytes:
    body = {"v": 1, "at": now().isoformat(), "command_id": command_id, "result": result}
    if detail is not None:
        body["detail"] = detail
    if data is not None:
        body["data"] = data
    return json.dumps(body).encode()


def event_payload(event_id: str, kind: str = "disk_low", **data: Any) -> bytes:
    return json.dumps(
        {
            "v": 1,
            "at": now().isoformat(),
            "event_id": event_id,
            "kind": kind,
            "data": data or {"free_bytes": 10, "reserve_bytes": 100},
        }
    ).encode()


# -- settings ------------------------------------------------------------------------------------
def bridge_settings(base: Settings, broker: LocalBroker, **service: Any) -> Settings:
    """``base`` pointed at ``broker`` as the service account, with a client id of its own."""
    mqtt = base.mqtt.model_copy(
        update={
            "host": broker.host,
            "port": broker.service_port,
            "username": SERVICE_USER,
            "password": SecretStr(broker.accounts[SERVICE_USER]),
            "client_id": f"jaxmba_test-{secrets.token_hex(3)}",
            "keepalive_s": 5,
        }
    )
    update: dict[str, Any] = {"mqtt": mqtt}
    if service:
        update["service"] = base.service.model_copy(update=service)
    return base.model_copy(update=update)


# -- a fake agent --------------------------------------------------------------------------------
Policy = Callable[[dict[str, Any]], list[tuple[str, str | None, Any]]]


def succeed(cmd: dict[str, Any]) -> list[tuple[str, str | None, Any]]:
    return [("succeeded", None, {"pong": True})]


class Agent:
    """One enclosure: MQTT 5, client id = eid, a retained Will ``state: lost``.

    ``policy(command) -> [(result, detail, data), ...]`` answers every command received (each
    answer published QoS 1 to the Response Topic with the Correlation Data); None: no answer.
    """

    def __init__(
        self,
        broker: LocalBroker,
        eid: str,
        *,
        boot_id: str | None = None,
        policy: Policy | None = succeed,
        interval: float = 5.0,
        keepalive: int = 5,
    ) -> None:
        self.eid = eid
        self.boot_id = boot_id or uuid.uuid4().hex[:12]
        self.policy = policy
        self.interval = interval
        self.seq = 0
        self.commands: list[dict[str, Any]] = []
        self.command_props: list[Any] = []
        self._cond = threading.Condition()
        self._connected = threading.Event()
        self._acked: dict[int, int] = {}
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=eid, protocol=paho.MQTTv5)
        c.username_pw_set(eid, broker.accounts[eid])
        c.will_set(f"{PREFIX}/enc/{eid}/state", state_payload("lost", self.boot_id), 1, True)
        c.on_socket_open = lambda _c, _u, sock: sock.setsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
        )
        c.on_connect = lambda *_a: self._connected.set()
        c.on_message = self._on_message
        c.on_publish = self._on_publish
        self.client = c
        c.connect(broker.host, broker.port, keepalive=keepalive)
        c.loop_start()
        assert self._connected.wait(ANSWER_TIMEOUT_S), f"{eid} could not connect"
        c.subscribe(f"{PREFIX}/enc/{eid}/cmd", 1)

    def _on_publish(self, _c: Any, _u: Any, mid: int, rc: Any, _p: Any) -> None:
        with self._cond:
            self._acked[mid] = rc.value if hasattr(rc, "value") else int(rc)
            self._cond.notify_all()

    def _on_message(self, client: paho.Client, _u: Any, msg: paho.MQTTMessage) -> None:
        cmd = json.loads(msg.payload)
        with self._cond:
            self.commands.append(cmd)
            self.command_props.append(msg.properties)
            self._cond.notify_all()
        if self.policy is None:
            return
        props = Properties(PacketTypes.PUBLISH)
        correlation = getattr(msg.properties, "CorrelationData", None)
        if correlation is not None:
            props.CorrelationData = correlation
        topic = getattr(msg.properties, "ResponseTopic", None) or f"{PREFIX}/enc/{self.eid}/ack"
        for result, detail, data in self.policy(cmd):
            client.publish(topic, ack_payload(cmd["id"], result, detail, data), 1, False, props)

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, 1, retain)
        with self._cond:
            assert self._cond.wait_for(lambda: info.mid in self._acked, ANSWER_TIMEOUT_S)
            assert self._acked.pop(info.mid) < 0x80, f"publish to {topic} refused"

    def state(self, state: str = "ready") -> None:
        self.publish(
            f"{PREFIX}/enc/{self.eid}/state",
            state_payload(state, self.boot_id, interval=self.interval),
            retain=True,
        )

    def status(self, **kw: Any) -> int:
        seq = kw.pop("seq", None)
        if seq is None:
            seq = self.seq
            self.seq += 1
        self.publish(
            f"{PREFIX}/enc/{self.eid}/status",
            status_payload(self.boot_id, seq, **kw),
            retain=True,
        )
        return int(seq)

    def event(self, event_id: str, **kw: Any) -> None:
        self.publish(f"{PREFIX}/enc/{self.eid}/events", event_payload(event_id, **kw))

    def online(self) -> None:
        """What an agent does on connect: init, a status, ready."""
        self.state("init")
        self.status()
        self.state("ready")

    def wait_commands(self, n: int, timeout: float = ANSWER_TIMEOUT_S) -> list[dict[str, Any]]:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.commands) >= n, timeout), (
                f"{self.eid} got {len(self.commands)} commands, expected {n}"
            )
            return list(self.commands)

    def disconnect(self) -> None:
        """Clean shutdown: ``disconnected`` (retained), then DISCONNECT (no Will)."""
        if self.client.is_connected():
            self.state("disconnected")
            self.client.disconnect()
        stop_loop(self.client)

    def drop(self) -> None:
        """Die without DISCONNECT: the broker publishes the Will at once (socket closed)."""
        stop_loop(self.client)
        sock = self.client.socket()
        if isinstance(sock, socket.socket):
            sock.shutdown(socket.SHUT_RDWR)
            sock.close()


# -- fixtures ------------------------------------------------------------------------------------
@pytest.fixture
def broker(mosquitto_factory: Callable[..., LocalBroker]) -> LocalBroker:  # noqa: F811
    """A broker of this test's own (persistence on: it survives restart())."""
    return mosquitto_factory()


@pytest.fixture
def make_bridge(database: Database) -> Iterator[Callable[..., Bridge]]:
    """``make_bridge(settings, **kw)``: a started, subscribed bridge, stopped at teardown."""
    started: list[Bridge] = []

    def make(settings: Settings, *, ready: bool = True, **kw: Any) -> Bridge:
        bridge = Bridge(settings, database, **kw)
        bridge.start()
        started.append(bridge)
        if ready:
            assert bridge.wait_ready(10), "the bridge did not connect and subscribe"
        return bridge

    try:
        yield make
    finally:
        for bridge in started:
            bridge.stop()


@pytest.fixture
def agents(broker: LocalBroker) -> Iterator[Callable[..., Agent]]:
    """``agents(eid, **kw)``: connected fake agents, disconnected at teardown."""
    made: list[Agent] = []

    def make(eid: str = "enc-a", **kw: Any) -> Agent:
        agent = Agent(broker, eid, **kw)
        made.append(agent)
        return agent

    try:
        yield make
    finally:
        for agent in made:
            agent.client.disconnect()
            stop_loop(agent.client)


# -- database reads ------------------------------------------------------------------------------
def enclosure(database: Database, eid: str) -> Enclosure | None:
    with database.sessionmaker() as session:
        return session.get(Enclosure, eid)


def enclosure_attr(database: Database, eid: str, name: str) -> Any:
    """One column of the enclosure (None while it does not exist)."""
    enc = enclosure(database, eid)
    return getattr(enc, name) if enc is not None else None


def enclosure_state(database: Database, eid: str) -> str | None:
    enc = enclosure(database, eid)
    return enc.state if enc is not None else None


def transitions(database: Database, eid: str) -> list[tuple[str, str]]:
    """The enclosure's state transitions, oldest first, as (from, to)."""
    with database.sessionmaker() as session:
        rows = session.scalars(
            select(EnclosureTransition)
            .where(EnclosureTransition.enclosure_id == eid)
            .order_by(EnclosureTransition.id)
        )
        return [(t.from_state, t.to_state) for t in rows]


def wait_state(database: Database, eid: str, state: str, timeout: float = 10.0) -> Enclosure:
    def reached() -> Enclosure | None:
        enc = enclosure(database, eid)
        return enc if enc is not None and enc.state == state else None

    return wait_for(
        reached,
        timeout,
        message=lambda: f"{eid} is {enclosure_state(database, eid)}, expected {state}",
    )


def history_count(database: Database, eid: str) -> int:
    query = select(func.count()).select_from(StatusRecord).where(StatusRecord.enclosure_id == eid)
    with database.sessionmaker() as session:
        return int(session.scalar(query) or 0)


def command_row(database: Database, command_id: uuid.UUID | str) -> Command | None:
    with database.sessionmaker() as session:
        return session.get(Command, uuid.UUID(str(command_id)))


# -- the API against the broker, for modules that import these by name --------------------------
@pytest.fixture
def broker_app(settings: Settings, database: Database) -> Iterator[Flask]:
    """The app on the module's ``settings`` (pointed at its broker with ``bridge_settings``);
    its MQTT publisher closed at teardown."""
    from controlsvc.mqtt.publisher import PUBLISHER_KEY
    from controlsvc.ops.app import create_app

    app = create_app(settings, database=database)
    yield app
    app.extensions[PUBLISHER_KEY].close()


@pytest.fixture
def operator(auth: Any) -> dict[str, str]:
    return dict(auth.headers(auth.create("op@example.com", role="operator")))


@pytest.fixture
def viewer(auth: Any) -> dict[str, str]:
    return dict(auth.headers(auth.create("viewer@example.com", role="viewer")))
