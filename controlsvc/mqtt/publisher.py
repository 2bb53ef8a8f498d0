"""The API processes' MQTT client: one per process, connected on first use, publish-and-wait.

``MqttPublisher`` implements ``controlsvc.domain.publisher.Publisher`` with paho-mqtt 2.x (VERSION2
callbacks, MQTT 5, TCP_NODELAY). A QoS 1 publish returns once the broker's PUBACK arrived
(well under a millisecond on loopback) or raises ``BrokerUnavailable`` after
``PUBLISH_TIMEOUT_S``; nothing is queued for later while the broker is away, so a refused call
never turns into a surprise delivery minutes after. ``init_app`` puts one into
``app.extensions["jaxmba.publisher"]`` and makes the health probe report its connection.

Its connection is a ``controlsvc.mqtt.connection.Connection`` like every other of the
service; the publishing helpers at the top (``paho_properties``, ``PubackCodes``,
``wait_published``) are shared with the bridge.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from controlsvc.config.settings import Settings
from controlsvc.domain.publisher import BrokerUnavailable, MessageProperties, PublishRefused
from controlsvc.mqtt.connection import STOPPED, MqttConnection, new_properties, reason_value
from controlsvc.mqtt.health import ComponentHealth
from schemas.errors import TopicError
from schemas.topics import valid_publish_topic

log = logging.getLogger(__name__)

__all__ = [
    "CONNECT_TIMEOUT_S",
    "PUBLISHER_KEY",
    "PUBLISH_TIMEOUT_S",
    "MqttPublisher",
    "init_app",
    "paho_properties",
    "publisher_of",
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


# -- shared publishing helpers -------------------------------------------------------------------


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
        self._connection: MqttConnection | None = None
        self._pid = 0
        self._codes = PubackCodes()
        self._was_connected = False

    # -- connection (hooks on paho's network thread) ----------------------------------------------
    def _on_up(self, _client: paho.Client, _session_present: bool) -> None:
        if self._was_connected:
            log.info("MQTT publisher: connection to the broker is back")
        self._was_connected = True

    def _on_down(self, detail: str) -> None:
        if self._was_connected and detail != STOPPED:
            log.warning("MQTT publisher: the connection to the broker is down (%s)", detail)

    def _start(self) -> MqttConnection:
        """Create the connection and start connecting in the background (under ``_lock``)."""
        mqtt = self._settings.mqtt
        connection = MqttConnection(
            self._settings,
            kind="publisher",
            client_id=f"{mqtt.client_id}-api-{os.getpid()}-{uuid.uuid4().hex[:8]}",
            logger=log,
            on_up=self._on_up,
            on_down=self._on_down,
            reconnect_min_s=RECONNECT_MIN_S,
            reconnect_max_s=RECONNECT_MAX_S,
        )
        connection.client.on_publish = self._codes.on_publish
        connection.start()
        self._connection = connection
        self._pid = os.getpid()
        return connection

    def _ensure_started(self) -> MqttConnection:
        mqtt = self._settings.mqtt
        if mqtt.port == 0:
            # Port 0 stands for the embedded broker `run` starts (and then sets the port it
            # got); `runserver` and the like start none, so there is nothing to connect to.
            raise BrokerUnavailable(
                "no broker to connect to: [MQTT] port is 0, which only `jaxmba-service run` "
                "fills in (with the embedded broker it starts); set a broker's port"
            )
        with self._lock:
            if self._connection is None or self._pid != os.getpid():
                # First use, or a forked child that inherited a client whose thread is gone.
                return self._start()
            return self._connection

    def ensure_connected(self, timeout: float | None = None) -> paho.Client:
        """The connected client; ``BrokerUnavailable`` when not connected within ``timeout``.

        The first call waits for the first connection attempt; later calls do not wait for a
        broker that is known to be away (the client keeps reconnecting in the background).
        """
        connection = self._ensure_started()
        if connection.up:
            return connection.client
        if connection.refusal is not None:
            raise BrokerUnavailable(
                f"the broker refused the service's credentials ({connection.refusal}); check "
                "[MQTT] username and password"
            )
        connection.wait_attempted(self.connect_timeout if timeout is None else timeout)
        if not connection.up:
            raise BrokerUnavailable(
                f"the MQTT broker is unavailable ({connection.last_error or 'not connected yet'})"
            )
        return connection.client

    @property
    def connected(self) -> bool:
        connection = self._connection
        return connection is not None and connection.up and self._pid == os.getpid()

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
            connection, self._connection = self._connection, None
        if connection is not None:
            connection.stop()


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
