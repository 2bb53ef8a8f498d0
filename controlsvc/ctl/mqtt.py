"""``mqtt sub|pub``: straight to the broker with an operator or service account (paho 2, MQTT 5).

The only module of ``jaxmba-ctl`` that imports paho. Every step waits for the broker's answer
with a timeout: CONNACK (a refusal ends at once, no reconnecting), SUBACK (a refused filter is an
error), PUBACK for QoS 1 and 2 (``Not authorized`` is an error: mosquitto answers 0x87 to an
account the ACL does not let publish, and drops the message).
"""

from __future__ import annotations

import os
import queue
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from controlsvc.ctl.errors import BrokerConnectionError, CtlError
from schemas.errors import TopicError
from schemas.topics import DEFAULT_PREFIX, valid_publish_topic

__all__ = [
    "BrokerTarget",
    "Connection",
    "Message",
    "parse_broker_url",
    "publish",
    "resolve_topic",
    "subscribe",
]

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
KEEPALIVE_S = 30
ANSWER_TIMEOUT_S = 10.0  # CONNACK, SUBACK, PUBACK: a healthy broker answers in milliseconds


@dataclass(frozen=True, slots=True)
class BrokerTarget:
    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None

    @property
    def address(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


def parse_broker_url(url: str) -> BrokerTarget:
    """``mqtt[s]://user:password@host:port``; ``CtlError`` (exit 2) when malformed."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise CtlError(f"bad broker URL: {exc}", exit_code=2) from exc
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise CtlError(
            "bad broker URL: use mqtt://user:password@host:port or mqtts://... "
            f"(got {parts.scheme or 'no scheme'}://{parts.hostname or ''})",
            exit_code=2,
        )
    return BrokerTarget(
        host=parts.hostname,
        port=port or DEFAULT_PORTS[parts.scheme],
        tls=parts.scheme == "mqtts",
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def resolve_topic(topic: str, prefix: str = DEFAULT_PREFIX) -> str:
    """A topic or filter, absolute when it starts with the prefix or ``$``, else under it."""
    if topic == prefix or topic.startswith(f"{prefix}/") or topic.startswith("$"):
        return topic
    return f"{prefix}/{topic.lstrip('/')}"


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    qos: int
    retain: bool


def _code(reason: ReasonCode | int) -> int:
    return reason.value if isinstance(reason, ReasonCode) else int(reason)


def _name(reason: ReasonCode | int) -> str:
    return str(reason) if isinstance(reason, ReasonCode) else f"reason code {reason}"


class Connection:
    """One connected MQTT 5 client; use as a context manager."""

    def __init__(
        self, target: BrokerTarget, *, ca_file: str | None = None, timeout: float = ANSWER_TIMEOUT_S
    ) -> None:
        self.target = target
        self.timeout = timeout
        self.messages: queue.Queue[Message] = queue.Queue()
        self._connack: queue.Queue[ReasonCode | int] = queue.Queue()
        self._subacks: dict[int, queue.Queue[list[ReasonCode]]] = {}
        self._pubacks: dict[int, queue.Queue[ReasonCode | int]] = {}
        self._lock = threading.Lock()
        client_id = f"jaxmba_ctl-{os.getpid()}-{secrets.token_hex(3)}"
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5
        )
        if target.username:
            self._client.username_pw_set(target.username, target.password)
        if target.tls:
            self._client.tls_set(ca_certs=ca_file, cert_reqs=ssl.CERT_REQUIRED)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        self._client.on_publish = self._on_publish

    # -- paho callbacks (network thread) ---------------------------------------------------------
    def _on_connect(self, _c: Any, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        self._connack.put(reason)

    def _on_message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        self.messages.put(Message(msg.topic, bytes(msg.payload), msg.qos, bool(msg.retain)))

    def _on_subscribe(self, _c: Any, _u: Any, mid: int, reasons: list[ReasonCode], _p: Any) -> None:
        with self._lock:
            answer = self._subacks.setdefault(mid, queue.Queue())
        answer.put(reasons)

    def _on_publish(self, _c: Any, _u: Any, mid: int, reason: ReasonCode, _p: Any) -> None:
        with self._lock:
            answer = self._pubacks.setdefault(mid, queue.Queue())
        answer.put(reason)

    # -- operations ------------------------------------------------------------------------------
    def __enter__(self) -> Connection:
        target = self.target
        try:
            self._client.connect(target.host, target.port, keepalive=KEEPALIVE_S)
        except (OSError, ssl.SSLError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise BrokerConnectionError(
                f"cannot reach the broker at {target.address}: {why}"
            ) from exc
        sock = self._client.socket()
        if isinstance(sock, socket.socket):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._client.loop_start()
        try:
            reason = self._connack.get(timeout=self.timeout)
        except queue.Empty:
            self._stop()
            raise BrokerConnectionError(f"no answer from the broker at {target.address}") from None
        if _code(reason) >= 0x80:
            self._stop()
            who = target.username or "anonymous"
            raise BrokerConnectionError(
                f"the broker at {target.address} refused {who}: {_name(reason)}"
            )
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _exc: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self._stop()

    def _stop(self) -> None:
        # paho's loop_stop reads its thread again after the thread may have ended and cleared
        # it (eclipse-paho/paho.mqtt.python#872: AttributeError): read it once, join it here.
        thread = self._client._thread  # noqa: SLF001
        self._client.disconnect()
        self._client._thread_terminate = True  # noqa: SLF001 - what loop_stop sets
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def is_connected(self) -> bool:
        return bool(self._client.is_connected())

    def subscribe(self, filters: Sequence[str], qos: int) -> None:
        result, mid = self._client.subscribe([(f, qos) for f in filters])
        if result != paho.MQTT_ERR_SUCCESS or mid is None:
            raise BrokerConnectionError(f"subscribe failed: {paho.error_string(result)}")
        with self._lock:
            answer = self._subacks.setdefault(mid, queue.Queue())
        try:
            reasons = answer.get(timeout=self.timeout)
        except queue.Empty:
            raise BrokerConnectionError("no SUBACK from the broker") from None
        refused = [f for f, r in zip(filters, reasons, strict=False) if _code(r) >= 0x80]
        if refused:
            raise BrokerConnectionError(
                f"the broker refused the subscription to {', '.join(refused)}"
            )

    def publish(self, topic: str, payload: bytes, *, qos: int, retain: bool) -> None:
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise BrokerConnectionError(f"publish to {topic} failed: {paho.error_string(info.rc)}")
        with self._lock:
            answer = self._pubacks.setdefault(info.mid, queue.Queue())
        try:
            reason = answer.get(timeout=self.timeout)
        except queue.Empty:
            raise BrokerConnectionError(
                f"the broker did not acknowledge the publish to {topic}"
            ) from None
        if qos > 0 and _code(reason) >= 0x80:
            who = self.target.username or "anonymous"
            raise BrokerConnectionError(
                f"the broker refused the publish to {topic} by {who}: {_name(reason)}"
            )


def publish(
    target: BrokerTarget,
    topic: str,
    payload: bytes,
    *,
    qos: int = 1,
    retain: bool = False,
    ca_file: str | None = None,
    timeout: float = ANSWER_TIMEOUT_S,
) -> None:
    """Publish one message and wait for the broker to take it; wildcards are refused (exit 2)."""
    try:
        valid_publish_topic(topic)
    except TopicError as exc:
        raise CtlError(str(exc), exit_code=2) from exc
    with Connection(target, ca_file=ca_file, timeout=timeout) as conn:
        conn.publish(topic, payload, qos=qos, retain=retain)


def subscribe(
    target: BrokerTarget,
    filters: Sequence[str],
    on_message: Callable[[Message], None],
    *,
    qos: int = 1,
    count: int | None = None,
    duration_s: float | None = None,
    ca_file: str | None = None,
    timeout: float = ANSWER_TIMEOUT_S,
) -> int:
    """Print messages until ``count`` arrived, ``duration_s`` passed, or Ctrl-C; how many came."""
    received = 0
    deadline = None if duration_s is None else time.monotonic() + duration_s
    with Connection(target, ca_file=ca_file, timeout=timeout) as conn:
        conn.subscribe(filters, qos)
        while count is None or received < count:
            wait = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
            if wait <= 0:
                break
            try:
                message = conn.messages.get(timeout=wait)
            except queue.Empty:
                if not conn.is_connected():
                    raise BrokerConnectionError(
                        f"lost the connection to {target.address}"
                    ) from None
                continue
            on_message(message)
            received += 1
    return received
