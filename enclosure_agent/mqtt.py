"""The agent's MQTT 5 connection (the only agent module that imports paho, with ``mqtt*.py``).

* client id and user name = the enclosure id; TCP_NODELAY; keepalive = the status interval;
* ``clean_start=False`` with a Session Expiry Interval, so commands queued while the agent
  was away for less than that still arrive;
* the Will is the retained ``state`` message ``lost`` (QoS 1), sent by the broker if the
  connection dies; a clean ``stop()`` sends DISCONNECT with reason 0, so it does not fire.
  Each connection registers its own Will (``next_will``: the payload for connection N), so
  a Will replayed late names the connection it belonged to;
* paho reconnects in its network thread with exponential backoff; a CONNACK refusing our
  credentials (or the client id) stops retrying and reports it as fatal;
* every callback copies what it needs out of paho's objects and hands it to the listener,
  catching and logging errors with the topic and a truncated payload;
* an exception that still escapes paho's network loop (from paho itself, or a callback paho
  calls unguarded) does not end the network thread, which would leave a link that looks up
  and moves nothing for good: the link reports it down, waits the first reconnect delay and
  connects again (the broker kept the session: unacknowledged QoS 1 messages come again).
"""

from __future__ import annotations

import logging
import math
import socket
import ssl
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from enclosure_agent.config import AgentConfig
from enclosure_agent.errors import BrokerError, BrokerRefused
from enclosure_agent.link import Inbound, LinkListener, Outgoing
from schemas.connack import Refusal, refusal

__all__ = ["LinkSettings", "MqttLink", "link_from_config", "probe_login"]

log = logging.getLogger(__name__)

MAX_INFLIGHT = 200  # QoS 1 messages awaiting PUBACK; above the outbox window plus acks/status
PAYLOAD_LOG_CHARS = 120  # how much of a payload an error message shows


@dataclass(frozen=True, slots=True)
class LinkSettings:
    host: str
    port: int
    client_id: str
    username: str
    password: str | None
    keepalive_s: float
    session_expiry_s: int
    will: Outgoing
    next_will: Callable[[int], bytes] | None = None  # the Will payload of connection N
    tls: bool = False
    ca_file: Path | None = None
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 30.0


def _code(reason: ReasonCode | int) -> int:
    return reason.value if isinstance(reason, ReasonCode) else int(reason)


def _describe(reason: ReasonCode | int) -> str:
    return f"{reason} (0x{_code(reason):02x})"


def _refusal(reason: ReasonCode | int) -> Refusal:
    """A failed CONNACK as the table shared with the service reads it."""
    refused = refusal(_code(reason))
    assert refused is not None  # a failure is 0x80 or more
    return refused


def _properties(message: Outgoing) -> Properties | None:
    if message.correlation_data is None and message.expiry_interval_s is None:
        return None
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    if message.correlation_data is not None:
        props.CorrelationData = message.correlation_data
    if message.expiry_interval_s is not None:
        props.MessageExpiryInterval = message.expiry_interval_s
    return props


class _Client(paho.Client):
    """paho's client whose network loop (``loop_forever``, run by ``loop_start``'s thread)
    asks ``loop_failed`` what to do when an exception escapes it: go on (True) or end."""

    loop_failed: Callable[[Exception], bool] | None = None

    def loop_forever(
        self, timeout: float = 1.0, retry_first_connection: bool = False
    ) -> MQTTErrorCode:
        while True:
            try:
                return super().loop_forever(timeout, retry_first_connection)
            except Exception as exc:
                go_on = self.loop_failed is not None and self.loop_failed(exc)
                exc.__traceback__ = None  # its frames hold paho's sockets
                if not go_on:
                    return MQTTErrorCode.MQTT_ERR_UNKNOWN
                retry_first_connection = True


def _new_client(settings: LinkSettings) -> _Client:
    client = _Client(
        CallbackAPIVersion.VERSION2, client_id=settings.client_id, protocol=paho.MQTTv5
    )
    client.username_pw_set(settings.username, settings.password)
    if settings.tls:
        try:
            client.tls_set(
                ca_certs=str(settings.ca_file) if settings.ca_file else None,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        except (OSError, ssl.SSLError) as exc:
            raise BrokerError(f"TLS setup failed (ca_file {settings.ca_file}): {exc}") from exc
    will = settings.will
    client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
    client.reconnect_delay_set(
        min_delay=max(1, round(settings.reconnect_min_s)),
        max_delay=max(1, round(settings.reconnect_max_s)),
    )
    client.max_inflight_messages_set(MAX_INFLIGHT)
    client.on_socket_open = _nodelay
    return client


def _nodelay(client: paho.Client, userdata: Any, sock: Any) -> None:
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _connect_properties(settings: LinkSettings) -> Properties:
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = settings.session_expiry_s
    return props


class MqttLink:
    """One long-lived MQTT 5 connection reporting to a ``LinkListener``."""

    def __init__(self, settings: LinkSettings, listener: LinkListener) -> None:
        self.settings = settings
        self._listener = listener
        self._client = _new_client(settings)
        self._connected = threading.Event()
        self._stopping = threading.Event()
        self._refused = False
        self._connections = 0  # successful connections so far
        self._infos: dict[int, paho.MQTTMessageInfo] = {}
        self._lock = threading.Lock()
        c = self._client
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_publish = self._on_publish
        c.on_subscribe = self._on_subscribe
        c.on_connect_fail = self._on_connect_fail
        c.loop_failed = self._loop_failed

    # -- Link -------------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def start(self) -> None:
        """Connect in the background; paho keeps reconnecting until ``stop()`` or a refusal."""
        self._connect_async()
        self._client.loop_start()

    def _connect_async(self) -> None:
        s = self.settings
        self._client.connect_async(
            s.host,
            s.port,
            keepalive=max(1, math.ceil(s.keepalive_s)),
            clean_start=False,
            properties=_connect_properties(s),
        )

    def publish(self, message: Outgoing) -> int | None:
        """Queue ``message``; its mid (QoS 1 is resent after a reconnect), None if refused."""
        try:
            info = self._client.publish(
                message.topic, message.payload, message.qos, message.retain, _properties(message)
            )
        except (ValueError, RuntimeError) as exc:
            log.error("cannot publish to %s: %s", message.topic, exc)  # noqa: TRY400 (expected)
            return None
        if info.rc not in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN):
            log.error("cannot publish to %s: %s", message.topic, paho.error_string(info.rc))
            return None
        if message.qos > 0:
            with self._lock:
                self._infos[info.mid] = info
        return info.mid

    def subscribe(self, topic_filters: list[str]) -> int | None:
        rc, mid = self._client.subscribe([(topic, 1) for topic in topic_filters])
        if rc != paho.MQTT_ERR_SUCCESS:
            log.warning("subscribe %s failed: %s", topic_filters, paho.error_string(rc))
            return None
        return mid

    def wait_published(self, mid: int, timeout_s: float) -> bool:
        """Wait for the PUBACK of ``mid``; False on timeout."""
        with self._lock:
            info = self._infos.get(mid)
        if info is None:
            return True  # already acknowledged (or QoS 0)
        try:
            info.wait_for_publish(timeout_s)
        except (ValueError, RuntimeError):
            return False
        return info.is_published()

    def stop(self, timeout_s: float = 2.0) -> None:
        """Send DISCONNECT (the Will does not fire) and stop the network thread.

        paho writes the DISCONNECT before its thread ends; ``timeout_s`` bounds the wait for a
        connection attempt in progress to give up.
        """
        self._stopping.set()
        # The network thread, read once: paho's loop_stop reads it again after the thread may
        # have ended and cleared it (eclipse-paho/paho.mqtt.python#872: AttributeError).
        thread = self._client._thread  # noqa: SLF001
        self._client.disconnect()  # also ends a reconnect loop that is waiting
        self._client._thread_terminate = True  # noqa: SLF001 - what loop_stop sets
        own = thread is threading.current_thread()  # stopped from a callback: cannot join
        if thread is not None and not own:
            thread.join(timeout_s)
        self._connected.clear()
        if thread is None or not (own or thread.is_alive()):
            # paho closes its sockets (the wake-up pair too) only when the client is collected;
            # in a cycle (its callbacks are our methods) the sockets' own finalizers may come
            # first and warn. Its loop has ended: close them now.
            self._client._reset_sockets()  # noqa: SLF001

    # -- paho callbacks (network thread) ----------------------------------------------------------
    def _loop_failed(self, exc: Exception) -> bool:
        """An exception escaped paho's loop: report the link down and connect again afresh
        (paho's state is unknown: a packet may be half handled), unless stopping."""
        # As text: a record holding the traceback would keep paho's frames (and sockets) alive.
        trace = "".join(traceback.format_exception(exc)).rstrip()
        log.error("the MQTT network loop failed; connecting again\n%s", trace)
        self._went_down(f"the MQTT network loop failed: {exc!r}")
        if self._refused or self._stopping.wait(self.settings.reconnect_min_s):
            return False
        self._connect_async()  # the loop then reconnects, closing the old socket first
        return True

    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        try:
            if reason.is_failure:
                refused = _refusal(reason)
                if refused.fatal:
                    self._refused = True
                    client.disconnect()  # stops paho's reconnect loop
                log.error("the broker refused the connection: %s", refused)
                self._listener.link_refused(str(refused), refused.fatal)
                return
            self._connections += 1
            self._next_will(client)
            self._connected.set()
            self._listener.link_connected(bool(flags.session_present))
        except Exception:
            log.exception("error handling CONNACK")

    def _next_will(self, client: paho.Client) -> None:
        """Register the Will of the next connection (used by paho's next CONNECT)."""
        next_will = self.settings.next_will
        if next_will is not None:
            will = self.settings.will
            client.will_set(will.topic, next_will(self._connections + 1), will.qos, will.retain)

    def _on_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        log.debug("connection attempt to %s:%d failed", self.settings.host, self.settings.port)

    def _on_disconnect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        self._went_down(_describe(reason))

    def _went_down(self, reason: str) -> None:
        """The link is down: tell the listener once, however many ways it learns of it."""
        was_connected = self._connected.is_set()
        self._connected.clear()
        if not was_connected:
            return
        try:
            self._listener.link_disconnected(reason)
        except Exception:
            log.exception("error handling a disconnect")

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        try:
            props = msg.properties
            inbound = Inbound(
                topic=msg.topic,
                payload=bytes(msg.payload),
                retain=bool(msg.retain),
                qos=msg.qos,
                response_topic=getattr(props, "ResponseTopic", None),
                correlation_data=getattr(props, "CorrelationData", None),
                expiry_interval_s=getattr(props, "MessageExpiryInterval", None),
            )
            self._listener.link_message(inbound)
        except Exception:
            log.exception(
                "error handling a message on %s: %r",
                msg.topic,
                bytes(msg.payload[:PAYLOAD_LOG_CHARS]),
            )

    def _on_publish(
        self, client: paho.Client, userdata: Any, mid: int, reason: ReasonCode, props: Any
    ) -> None:
        with self._lock:
            self._infos.pop(mid, None)
        try:
            self._listener.link_published(mid, not reason.is_failure, _describe(reason))
        except Exception:
            log.exception("error handling the PUBACK of mid %d", mid)

    def _on_subscribe(
        self, client: paho.Client, userdata: Any, mid: int, codes: list[ReasonCode], props: Any
    ) -> None:
        try:
            self._listener.link_subscribed(mid, [_code(code) for code in codes])
        except Exception:
            log.exception("error handling the SUBACK of mid %d", mid)


def probe_login(settings: LinkSettings, timeout_s: float = 5.0) -> float:
    """Connect once (clean start, no Will, no session), return the CONNACK round trip in s.

    Raises ``BrokerRefused`` when the broker refuses us and ``BrokerError`` when it cannot be
    reached in ``timeout_s``. Used by ``jaxmba-agent check``.
    """
    client = paho.Client(
        CallbackAPIVersion.VERSION2, client_id=f"{settings.client_id}", protocol=paho.MQTTv5
    )
    client.username_pw_set(settings.username, settings.password)
    if settings.tls:
        try:
            client.tls_set(ca_certs=str(settings.ca_file) if settings.ca_file else None)
        except (OSError, ssl.SSLError) as exc:
            raise BrokerError(f"TLS setup failed: {exc}") from exc
    answer: list[ReasonCode] = []
    client.on_connect = lambda c, u, f, reason, p: answer.append(reason)
    started = time.monotonic()
    try:
        client.connect(settings.host, settings.port, keepalive=10, clean_start=True)
    except (OSError, ssl.SSLError) as exc:
        raise BrokerError(f"cannot reach {settings.host}:{settings.port}: {exc}") from exc
    try:
        while not answer and time.monotonic() - started < timeout_s:
            client.loop(timeout=0.05)
        elapsed = time.monotonic() - started
    finally:
        client.disconnect()
    if not answer:
        raise BrokerError(f"no CONNACK from {settings.host}:{settings.port} in {timeout_s:g} s")
    reason = answer[0]
    if reason.is_failure:
        refused = _refusal(reason)
        raise BrokerRefused(str(refused), code=refused.code, fatal=refused.fatal)
    return elapsed


def link_from_config(
    config: AgentConfig, will: Callable[[int], bytes], listener: LinkListener
) -> MqttLink:
    """The agent's link as its config describes it; ``will(n)``: the Will of connection n."""
    url = config.broker.parsed
    settings = LinkSettings(
        host=url.host,
        port=url.port,
        client_id=config.enclosure_id,
        username=config.enclosure_id,
        password=url.password,
        keepalive_s=config.status.interval_s,
        session_expiry_s=config.broker.session_expiry_s,
        will=Outgoing(config.topics.state(config.enclosure_id), will(1), qos=1, retain=True),
        next_will=will,
        tls=url.tls,
        ca_file=config.broker.ca_file,
        reconnect_min_s=config.broker.reconnect_min_s,
        reconnect_max_s=config.broker.reconnect_max_s,
    )
    return MqttLink(settings, listener)
