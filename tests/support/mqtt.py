"""A small synchronous MQTT 5 client for tests (paho-mqtt 2.x, VERSION2 callbacks, TCP_NODELAY).

Every call waits for the broker's answer: ``connect`` for CONNACK, ``publish`` for PUBACK (QoS 1),
``subscribe`` for SUBACK. Received messages collect in the client; ``expect`` takes the first
one matching a topic filter, ``expect_none`` asserts none arrives::

    with MqttTestClient.for_broker(broker, "enc-a") as enc:
        assert enc.subscribe("jaxmba/v1/enc/enc-a/cmd") == [1]
        assert enc.publish("jaxmba/v1/enc/enc-a/status", b"{}") == SUCCESS
        msg = enc.expect("jaxmba/v1/enc/enc-a/cmd")
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from controlsvc.mqtt.loop_stop import stop_loop

if TYPE_CHECKING:
    from controlsvc.broker import LocalBroker

__all__ = [
    "ACCEPTED",
    "NOT_AUTHORIZED",
    "NO_MATCHING_SUBSCRIBERS",
    "SUCCESS",
    "ConnectRefused",
    "MqttTestClient",
    "Received",
]

SUCCESS = 0x00
NO_MATCHING_SUBSCRIBERS = 0x10  # PUBACK: accepted, but nobody subscribed (mosquitto 2.0 says so)
ACCEPTED = frozenset({SUCCESS, NO_MATCHING_SUBSCRIBERS})  # PUBACK codes of an accepted publish
NOT_AUTHORIZED = 0x87  # PUBACK/SUBACK/CONNACK reason code "Not authorized"
ANSWER_TIMEOUT_S = 5.0  # a loopback broker answers in well under a millisecond
EXPECT_TIMEOUT_S = 5.0
QUIET_PERIOD_S = 0.3  # expect_none: how long "nothing arrives" is watched


class ConnectRefused(Exception):  # noqa: N818 (reads better in pytest.raises)
    """The broker answered CONNECT with a failure; ``reason_code`` is its value (e.g. 0x87)."""

    def __init__(self, reason_code: int, reason: str) -> None:
        super().__init__(f"CONNACK refused: {reason} (0x{reason_code:02x})")
        self.reason_code = reason_code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Received:
    """One delivered message, copied out of paho's ``MQTTMessage``."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    response_topic: str | None = None
    correlation_data: bytes | None = None
    message_expiry_interval: int | None = None
    user_properties: tuple[tuple[str, str], ...] = field(default=())

    def text(self) -> str:
        return self.payload.decode("utf-8")


def _value(code: ReasonCode | int) -> int:
    return code.value if isinstance(code, ReasonCode) else int(code)


class MqttTestClient:
    """One MQTT 5 connection to ``host:port``. Not for production code: it blocks on purpose."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        client_id: str = "",
        clean_start: bool = True,
        session_expiry_s: int | None = None,
        keepalive_s: int = 60,
        tls_ca: str | os.PathLike[str] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.client_id = client_id
        self._clean_start = clean_start
        self._session_expiry_s = session_expiry_s
        self._keepalive_s = keepalive_s
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=paho.MQTTv5,
            reconnect_on_failure=False,
        )
        if tls_ca is not None:
            self._client.tls_set(ca_certs=os.fspath(tls_ca))
        self._lock = threading.Condition()
        self._connack: tuple[int, str, bool] | None = None
        self._answers: dict[int, Any] = {}
        self._messages: list[Received] = []
        self.assigned_client_id: str | None = None
        self.disconnects: list[int] = []
        c = self._client
        c.on_socket_open = self._on_socket_open
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_subscribe = self._on_subscribe
        c.on_unsubscribe = self._on_subscribe
        c.on_message = self._on_message

    @classmethod
    def for_broker(
        cls,
        broker: LocalBroker,
        user: str | None,
        password: str | None = None,
        *,
        port: int | None = None,
        **kwargs: Any,
    ) -> MqttTestClient:
        """Connected as ``user`` (password from ``broker.accounts`` unless given)."""
        kwargs.setdefault("client_id", user or "")
        client = cls(broker.host, port or broker.port_for(user), **kwargs)
        if user is not None and password is None:
            password = broker.accounts[user]
        client.connect(user, password)
        return client

    # -- paho callbacks (run on paho's network thread) --------------------------------------------
    @staticmethod
    def _on_socket_open(client: paho.Client, userdata: Any, sock: Any) -> None:
        if isinstance(sock, socket.socket):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        with self._lock:
            if props is not None and getattr(props, "AssignedClientIdentifier", None):
                self.assigned_client_id = props.AssignedClientIdentifier
            self._connack = (_value(rc), str(rc), bool(flags.session_present))
            self._lock.notify_all()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        with self._lock:
            self.disconnects.append(_value(rc))
            self._lock.notify_all()

    def _on_publish(self, client: Any, userdata: Any, mid: int, rc: Any, props: Any) -> None:
        with self._lock:
            self._answers[mid] = _value(rc)
            self._lock.notify_all()

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, codes: Any, props: Any) -> None:
        with self._lock:
            self._answers[mid] = [_value(code) for code in codes]
            self._lock.notify_all()

    def _on_message(self, client: Any, userdata: Any, msg: paho.MQTTMessage) -> None:
        props = msg.properties
        received = Received(
            topic=msg.topic,
            payload=bytes(msg.payload),
            qos=msg.qos,
            retain=bool(msg.retain),
            response_topic=getattr(props, "ResponseTopic", None),
            correlation_data=getattr(props, "CorrelationData", None),
            message_expiry_interval=getattr(props, "MessageExpiryInterval", None),
            user_properties=tuple(getattr(props, "UserProperty", ()) or ()),
        )
        with self._lock:
            self._messages.append(received)
            self._lock.notify_all()

    # -- connection -------------------------------------------------------------------------------
    def will_set(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = True) -> None:
        """Set the Will (before ``connect``)."""
        self._client.will_set(topic, payload, qos, retain)

    def connect(
        self, user: str | None, password: str | None = None, timeout: float = ANSWER_TIMEOUT_S
    ) -> bool:
        """Connect and wait for CONNACK; return session_present. ``ConnectRefused`` if refused.

        The client never reconnects by itself: after a refusal, a broker restart or ``drop()``
        it stays disconnected (connect a new one).
        """
        if user is not None:
            self._client.username_pw_set(user, password)
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        if self._session_expiry_s is not None:
            props.SessionExpiryInterval = self._session_expiry_s
        self._client.connect(
            self.host,
            self.port,
            keepalive=self._keepalive_s,
            clean_start=self._clean_start,
            properties=props,
        )
        self._client.loop_start()
        with self._lock:
            self._lock.wait_for(lambda: self._connack is not None or self.disconnects, timeout)
        if self._connack is None:
            self._stop()
            if self.disconnects:
                raise ConnectionError(
                    f"{self.host}:{self.port} closed the connection before CONNACK"
                )
            raise AssertionError(f"no CONNACK from {self.host}:{self.port} in {timeout:g} s")
        code, reason, session_present = self._connack
        if code >= 0x80:
            self._stop()
            raise ConnectRefused(code, reason)
        return session_present

    def disconnect(self) -> None:
        """Send DISCONNECT (no Will) and stop the network thread. Safe to call twice."""
        if self._client.is_connected():
            self._client.disconnect()
        self._stop()

    def drop(self) -> None:
        """Close the connection without DISCONNECT, as a crashed client would (the Will fires)."""
        sock = self._client.socket()
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # the network thread sees EOF and ends
        self._stop()

    def _stop(self) -> None:
        stop_loop(self._client)
        # paho closes its socket and wake-up socket pair only in __del__ or reinitialise();
        # close them now, deterministically, instead of leaving them to the garbage collector.
        self._client.reinitialise()

    @property
    def connected(self) -> bool:
        return self._client.is_connected()

    def __enter__(self) -> MqttTestClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.disconnect()

    # -- requests ---------------------------------------------------------------------------------
    def _wait_answer(self, mid: int, what: str, timeout: float) -> Any:
        with self._lock:
            if not self._lock.wait_for(lambda: mid in self._answers, timeout):
                raise AssertionError(f"no {what} for mid {mid} within {timeout:g} s")
            return self._answers.pop(mid)

    def publish(
        self,
        topic: str,
        payload: bytes | str = b"",
        qos: int = 1,
        retain: bool = False,
        *,
        properties: Properties | None = None,
        timeout: float = ANSWER_TIMEOUT_S,
    ) -> int:
        """Publish and return the broker's reason code (PUBACK for QoS 1; 0 once sent for QoS 0).

        For QoS 2 this is the PUBCOMP code: mosquitto reports a denial in PUBREC, which paho does
        not surface, so check denials with QoS 1.
        """
        info = self._client.publish(topic, payload, qos, retain, properties)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise AssertionError(
                f"publish to {topic!r} failed locally: {paho.error_string(info.rc)}"
            )
        if qos == 0:
            info.wait_for_publish(timeout)
            return SUCCESS
        code: int = self._wait_answer(info.mid, "PUBACK", timeout)
        return code

    def subscribe(
        self, topic_filter: str, qos: int = 1, *, timeout: float = ANSWER_TIMEOUT_S
    ) -> list[int]:
        """Subscribe and return the SUBACK reason codes (granted QoS, or >= 0x80 if refused)."""
        rc, mid = self._client.subscribe(topic_filter, qos)
        if rc != paho.MQTT_ERR_SUCCESS or mid is None:
            raise AssertionError(f"subscribe to {topic_filter!r} failed locally: rc={rc}")
        codes: list[int] = self._wait_answer(mid, "SUBACK", timeout)
        return codes

    def unsubscribe(self, topic_filter: str, *, timeout: float = ANSWER_TIMEOUT_S) -> list[int]:
        rc, mid = self._client.unsubscribe(topic_filter)
        if rc != paho.MQTT_ERR_SUCCESS or mid is None:
            raise AssertionError(f"unsubscribe from {topic_filter!r} failed locally: rc={rc}")
        codes: list[int] = self._wait_answer(mid, "UNSUBACK", timeout)
        return codes

    # -- received messages ------------------------------------------------------------------------
    def _take(self, topic_filter: str | None) -> Received | None:
        for i, msg in enumerate(self._messages):
            if topic_filter is None or paho.topic_matches_sub(topic_filter, msg.topic):
                return self._messages.pop(i)
        return None

    def expect(
        self, topic_filter: str | None = None, timeout: float = EXPECT_TIMEOUT_S
    ) -> Received:
        """Remove and return the first received message matching ``topic_filter`` (any if None),
        waiting up to ``timeout`` seconds for it; messages on other topics stay queued."""
        with self._lock:
            found: list[Received] = []

            def arrived() -> bool:
                msg = self._take(topic_filter)
                if msg is not None:
                    found.append(msg)
                return bool(found)

            if not self._lock.wait_for(arrived, timeout):
                seen = sorted({m.topic for m in self._messages})
                raise AssertionError(
                    f"no message on {topic_filter or 'any topic'} within {timeout:g} s"
                    f" (queued on other topics: {seen or 'none'})"
                )
            return found[0]

    def expect_none(self, topic_filter: str | None = None, timeout: float = QUIET_PERIOD_S) -> None:
        """Assert that no message matching ``topic_filter`` is queued or arrives within ``timeout``.

        This must wait; prefer a marker message (publish something the client will receive after
        the forbidden one would have been delivered, ``expect`` it, then ``assert_none_queued``).
        """
        with self._lock:
            self._lock.wait_for(
                lambda: any(
                    topic_filter is None or paho.topic_matches_sub(topic_filter, m.topic)
                    for m in self._messages
                ),
                timeout,
            )
        self.assert_none_queued(topic_filter)

    def assert_none_queued(self, topic_filter: str | None = None) -> None:
        """Assert that nothing matching ``topic_filter`` has been received (no waiting)."""
        with self._lock:
            bad = [
                m
                for m in self._messages
                if topic_filter is None or paho.topic_matches_sub(topic_filter, m.topic)
            ]
        assert not bad, f"unexpected messages: {[(m.topic, m.payload[:40]) for m in bad]}"

    def received(self, topic_filter: str | None = None) -> list[Received]:
        """A snapshot of the queued messages (matching ``topic_filter``), without removing them."""
        with self._lock:
            return [
                m
                for m in self._messages
                if topic_filter is None or paho.topic_matches_sub(topic_filter, m.topic)
            ]

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()
