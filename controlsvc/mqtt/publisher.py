"""The API processes' MQTT client: one per process, connected on first use, publish-and-wait.

``MqttPublisher`` implements ``controlsvc.domain.publisher.Publisher`` with paho-mqtt 2.x (VERSION2
callbacks, MQTT 5, TCP_NODELAY). A QoS 1 publish returns once the broker's PUBACK arrived
(well under a millisecond on loopback) or raises ``BrokerUnavailable`` after
``PUBLISH_TIMEOUT_S``; nothing is queued for later while the broker is away, so a refused call
never turns into a surprise delivery minutes after. ``init_app`` puts one into
``app.extensions["jaxmba.publisher"]`` and makes the health probe report its connection.

The helpers at the top (``new_client``, ``paho_properties``, ``wait_published``, the CONNACK
classification) are shared with the bridge, the other paho user of the service.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from controlsvc.config.settings import Settings
from controlsvc.domain.publisher import BrokerUnavailable, MessageProperties, PublishRefused
from controlsvc.mqtt.health import ComponentHealth
from schemas.errors import TopicError
from schemas.topics import valid_publish_topic

log = logging.getLogger(__name__)

__all__ = [
    "CONNECT_TIMEOUT_S",
    "PUBLISHER_KEY",
    "PUBLISH_TIMEOUT_S",
    "MqttPublisher",
    "connack_is_fatal",
    "init_app",
    "new_client",
    "new_properties",
    "paho_properties",
    "publisher_of",
    "reason_value",
    "wait_published",
]

PUBLISHER_KEY = "jaxmba.publisher"
BROKER_PROBE_KEY = "jaxmba.broker_probe"
# The first connection of a process: a loopback broker answers in a millisecond; a remote one
# over TLS in well under a second.
CONNECT_TIMEOUT_S = 3.0
# A QoS 1 PUBACK normally takes ~1 ms; past this the broker is stuck or unreachable.
PUBLISH_TIMEOUT_S = 5.0
# Reconnect backoff of the API processes (seconds): short, a request may be waiting.
RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 5
# CONNACK reason codes that retrying cannot fix: stop and say so.
FATAL_CONNACK = frozenset(
    {
        0x84,  # unsupported protocol version
        0x85,  # client identifier not valid
        0x86,  # bad user name or password
        0x87,  # not authorized
        0x8A,  # banned
        0x8C,  # bad authentication method
    }
)


# -- shared paho helpers ------------------------------------------------------------------------


def reason_value(code: ReasonCode | int | MQTTErrorCode | None) -> int:
    """The numeric value of a paho reason code (0 for None)."""
    if code is None:
        return 0
    if isinstance(code, ReasonCode):
        return int(code.value)
    return int(code)


def connack_is_fatal(code: ReasonCode | int) -> bool:
    """True for a CONNACK refusal that reconnecting cannot fix (bad credentials, ...)."""
    return reason_value(code) in FATAL_CONNACK


def _nodelay(_client: paho.Client, _userdata: Any, sock: Any) -> None:
    """``on_socket_open``: no Nagle delay (a QoS 1 round trip ~0.8 ms instead of ~40-90 ms)."""
    if isinstance(sock, socket.socket):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as exc:  # e.g. a Unix socket: nothing to tune
            log.debug("TCP_NODELAY not set: %s", exc)


def new_client(settings: Settings, client_id: str, *, manual_ack: bool = False) -> paho.Client:
    """A paho client for ``settings.mqtt``: MQTT 5, VERSION2 callbacks, credentials, TLS,
    TCP_NODELAY on every socket it opens, and reconnect backoff."""
    mqtt = settings.mqtt
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=paho.MQTTv5,
        manual_ack=manual_ack,
    )
    if mqtt.username:
        client.username_pw_set(mqtt.username, mqtt.password.get_secret_value() or None)
    if mqtt.tls:
        client.tls_set(
            ca_certs=mqtt.ca_file or None,
            cert_reqs=ssl.CERT_REQUIRED,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )
    client.on_socket_open = _nodelay
    return client


def new_properties(packet_type: int) -> Properties:
    """paho ``Properties`` for one packet type (paho's constructor is untyped)."""
    return Properties(packet_type)  # type: ignore[no-untyped-call]


def paho_properties(props: MessageProperties | None) -> Properties | None:
    """Our ``MessageProperties`` as paho PUBLISH properties (None when there are none)."""
    if props is None:
        return None
    out = new_properties(PacketTypes.PUBLISH)
    used = False
    if props.response_topic is not None:
        out.ResponseTopic = props.response_topic
        used = True
    if props.correlation_data is not None:
        out.CorrelationData = props.correlation_data
        used = True
    if props.message_expiry_interval is not None:
        out.MessageExpiryInterval = props.message_expiry_interval
        used = True
    if props.content_type is not None:
        out.ContentType = props.content_type
        used = True
    return out if used else None


class PubackCodes:
    """PUBACK failure codes by mid, filled by ``on_publish`` (which paho calls before it marks
    the message published, so a waiter always finds the code)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._codes: dict[int, ReasonCode | int] = {}

    def on_publish(self, _c: Any, _u: Any, mid: int, code: ReasonCode | int, _p: Any) -> None:
        if reason_value(code) >= 0x80:
            with self._lock:
                self._codes[mid] = code

    def pop(self, mid: int) -> ReasonCode | int | None:
        with self._lock:
            return self._codes.pop(mid, None)


def wait_published_many(
    client: paho.Client,
    codes: PubackCodes,
    messages: Sequence[tuple[str, bytes]],
    *,
    qos: int,
    retain: bool,
    timeout: float,
) -> list[BrokerUnavailable | None]:
    """Publish all ``messages`` at once, then wait for their PUBACKs (one ``timeout`` for
    all); per message None (acknowledged) or the error ``wait_published`` would raise.

    paho keeps at most 20 QoS 1 messages in flight (within mosquitto's default Receive
    Maximum) and sends the rest as PUBACKs return: a thousand go in a fifth of a second."""
    infos: list[paho.MQTTMessageInfo | BrokerUnavailable] = []
    for topic, payload in messages:
        try:
            valid_publish_topic(topic)
        except TopicError as exc:
            infos.append(BrokerUnavailable(f"cannot publish to {topic!r}: {exc}"))
            continue
        sent = client.publish(topic, payload, qos=qos, retain=retain)
        if sent.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            reason = paho.error_string(sent.rc)
            infos.append(BrokerUnavailable(f"cannot publish to {topic}: {reason}"))
        else:
            infos.append(sent)
    deadline = time.monotonic() + timeout
    out: list[BrokerUnavailable | None] = []
    for (topic, _), info in zip(messages, infos, strict=True):
        if isinstance(info, BrokerUnavailable):
            out.append(info)
            continue
        if qos == 0:
            out.append(None)
            continue
        try:
            info.wait_for_publish(max(0.0, deadline - time.monotonic()))
        except (RuntimeError, ValueError) as exc:
            out.append(BrokerUnavailable(f"cannot publish to {topic}: {exc}"))
            continue
        if not info.is_published():
            out.append(
                BrokerUnavailable(f"the broker did not acknowledge {topic} within {timeout:g} s")
            )
            continue
        refused = codes.pop(info.mid)
        out.append(
            None
            if refused is None
            else PublishRefused(
                f"the broker refused the message to {topic}: {refused}",
                reason_code=reason_value(refused),
            )
        )
    return out


def wait_published(
    client: paho.Client,
    codes: PubackCodes,
    topic: str,
    payload: bytes,
    *,
    qos: int,
    retain: bool,
    properties: MessageProperties | None,
    timeout: float,
) -> None:
    """Publish on a connected ``client`` and wait for the PUBACK (QoS 1) or the socket write
    (QoS 0); raise ``BrokerUnavailable`` / ``PublishRefused``."""
    valid_publish_topic(topic)
    info = client.publish(
        topic, payload, qos=qos, retain=retain, properties=paho_properties(properties)
    )
    if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
        raise BrokerUnavailable(f"cannot publish to {topic}: {paho.error_string(info.rc)}")
    if qos == 0:
        return
    try:
        info.wait_for_publish(timeout)
    except (RuntimeError, ValueError) as exc:
        raise BrokerUnavailable(f"cannot publish to {topic}: {exc}") from exc
    if not info.is_published():
        raise BrokerUnavailable(f"the broker did not acknowledge {topic} within {timeout:g} s")
    refused = codes.pop(info.mid)
    if refused is not None:
        raise PublishRefused(
            f"the broker refused the message to {topic}: {refused}",
            reason_code=reason_value(refused),
        )


# -- the API processes' publisher ---------------------------------------------------------------


class MqttPublisher:
    """One lazily connected MQTT client per process; thread safe.

    The client id is ``{client_id}-api-{pid}-{random}``: unique per process, clean start, no
    Will (the bridge speaks for the service's liveness).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        connect_timeout: float = CONNECT_TIMEOUT_S,
        publish_timeout: float = PUBLISH_TIMEOUT_S,
    ) -> None:
        self._settings = settings
        self.connect_timeout = connect_timeout
        self.publish_timeout = publish_timeout
        self._lock = threading.Lock()
        self._client: paho.Client | None = None
        self._pid = 0
        self._codes = PubackCodes()
        self._connected = threading.Event()
        self._attempted = threading.Event()  # the first attempt finished (either way)
        self._last_error: str | None = None
        self._fatal: str | None = None
        self._was_connected = False

    # -- paho callbacks (network thread) --------------------------------------------------------
    def _on_connect(self, client: paho.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        code = reason_value(rc)
        if code >= 0x80:
            self._last_error = f"broker refused the connection: {rc}"
            if connack_is_fatal(rc):
                self._fatal = (
                    f"the broker refused the service's credentials ({rc}); check [MQTT]"
                    " username and password"
                )
                log.error("MQTT publisher: %s; not retrying", self._fatal)
                client.disconnect()
            self._attempted.set()
            return
        self._connected.set()
        self._attempted.set()
        self._last_error = None
        if self._was_connected:
            log.info("MQTT publisher: connection to the broker is back")
        self._was_connected = True

    def _on_connect_fail(self, _client: paho.Client, _u: Any) -> None:
        self._last_error = (
            f"cannot connect to {self._settings.mqtt.host}:{self._settings.mqtt.port}"
        )
        self._attempted.set()

    def _on_disconnect(self, _c: paho.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if self._connected.is_set():
            log.warning("MQTT publisher: connection to the broker lost (%s); reconnecting", rc)
            self._last_error = f"connection lost: {rc}"
        self._connected.clear()

    # -- connection -----------------------------------------------------------------------------
    def _start(self) -> None:
        """Create the client and start connecting in the background (under ``_lock``)."""
        mqtt = self._settings.mqtt
        client_id = f"{mqtt.client_id}-api-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        client = new_client(self._settings, client_id)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._codes.on_publish
        client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        self._connected.clear()
        self._attempted.clear()
        self._fatal = None
        client.connect_async(mqtt.host, mqtt.port, keepalive=mqtt.keepalive_s, clean_start=True)
        client.loop_start()
        self._client = client
        self._pid = os.getpid()

    def _ensure_started(self) -> paho.Client:
        mqtt = self._settings.mqtt
        if mqtt.port == 0:
            # Port 0 stands for the embedded broker `run` starts (and then sets the port it
            # got); `runserver` and the like start none, so there is nothing to connect to.
            raise BrokerUnavailable(
                "no broker to connect to: [MQTT] port is 0, which only `jaxmba-service run` "
                "fills in (with the embedded broker it starts); set a broker's port"
            )
        with self._lock:
            if self._client is None or self._pid != os.getpid():
                # First use, or a forked child that inherited a client whose thread is gone.
                self._start()
            assert self._client is not None
            return self._client

    def ensure_connected(self, timeout: float | None = None) -> paho.Client:
        """The connected client; ``BrokerUnavailable`` when not connected within ``timeout``.

        The first call waits for the first connection attempt; later calls do not wait for a
        broker that is known to be away (the client keeps reconnecting in the background).
        """
        client = self._ensure_started()
        if self._connected.is_set():
            return client
        if self._fatal is not None:
            raise BrokerUnavailable(self._fatal)
        wait = self.connect_timeout if timeout is None else timeout
        if not self._attempted.is_set():
            self._attempted.wait(wait)
        if not self._connected.is_set():
            raise BrokerUnavailable(
                f"the MQTT broker is unavailable ({self._last_error or 'not connected yet'})"
            )
        return client

    @property
    def connected(self) -> bool:
        return self._connected.is_set() and self._pid == os.getpid()

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        properties: MessageProperties | None = None,
    ) -> None:
        client = self.ensure_connected()
        wait_published(
            client,
            self._codes,
            topic,
            payload,
            qos=qos,
            retain=retain,
            properties=properties,
            timeout=self.publish_timeout,
        )

    def publish_many(
        self, messages: Sequence[tuple[str, bytes]], *, qos: int = 1, retain: bool = False
    ) -> list[BrokerUnavailable | None]:
        """Publish ``(topic, payload)`` pairs pipelined; per message None or its error."""
        client = self.ensure_connected()
        return wait_published_many(
            client, self._codes, messages, qos=qos, retain=retain, timeout=self.publish_timeout
        )

    def probe(self) -> Any:
        """The health check of the broker: this process's connection to it."""

        started = time.perf_counter()
        try:
            self.ensure_connected(timeout=min(self.connect_timeout, 1.0))
        except BrokerUnavailable as exc:
            return ComponentHealth(ok=False, detail=exc.detail)
        return ComponentHealth(ok=True, latency_ms=round((time.perf_counter() - started) * 1000, 2))

    def close(self) -> None:
        """Disconnect and stop the network thread (idempotent)."""
        with self._lock:
            client, self._client = self._client, None
            self._connected.clear()
        if client is not None:
            client.disconnect()
            client.loop_stop()


def init_app(app: Any, settings: Settings) -> MqttPublisher:
    """One ``MqttPublisher`` per app (idempotent); the health probe reports its connection."""
    existing = app.extensions.get(PUBLISHER_KEY)
    if existing is not None:
        return existing  # type: ignore[no-any-return]
    publisher = MqttPublisher(settings)
    app.extensions[PUBLISHER_KEY] = publisher
    app.extensions[BROKER_PROBE_KEY] = publisher.probe
    return publisher


def publisher_of(app: Any) -> Any:
    """The app's publisher (whatever ``Publisher`` was installed, e.g. a test's)."""
    return app.extensions[PUBLISHER_KEY]
