"""The bridge's MQTT connections: shared subscriptions, a Will, and one ``Role`` each.

The bridge has two connections, so that statuses never share a broker queue with what must
not be lost (docs/bridge.md, "Overload"):

- ``RELIABLE``, client id ``{[MQTT] client_id}-bridge``: ``state``, ``ack`` and ``events``. Its
  traffic is small, so the broker's per-client queue (``max_queued_messages``/
  ``max_queued_bytes``) holds hours of it; when the bridge is behind, its network thread waits
  for room (back-pressure) and the broker queues the rest.
- ``STATUSES``, client id ``{[MQTT] client_id}-bridge-status``: ``status`` only. Its network thread
  never waits: when too many statuses wait, the bridge keeps the latest per enclosure
  (``inbox.Inbox``) and acknowledges the ones replaced at once, so the broker does not queue
  statuses for a connected bridge however far behind it is (only while it is away).

For each: clean start off and a session expiry of ``SESSION_EXPIRY_S``: messages published
while the bridge restarts wait in the broker and arrive after (also those it received but had
not acknowledged yet). Manual acknowledgement: a message is PUBACKed only after the batch
holding it is committed (or, a status, replaced by a newer one), so a bridge that dies mid-batch
gets it again. Subscriptions (sent in ``on_connect``, after checking the CONNACK) to the shared
``$share/controlsvc/{prefix}/enc/+/{channels}``, so several bridges split the load; plus, once
per connection, a plain subscription to the retained channels that is dropped as soon as its
SUBACK arrives. That one is there for the retained messages: MQTT 5 says a shared subscription
gets none (mosquitto 2.0.11 does send them, other brokers do not), and retained state/status
are how a bridge with an empty database or a new session learns the current picture. Every
write is idempotent, so receiving them twice is harmless.

- Will (``RELIABLE``): retained ``service/state`` ``{"online": false}``; ``online: true`` on
  every connect and every ``SERVICE_HEARTBEAT_S`` (agents estimate their clock offset from it,
  and it repairs the state after another bridge's Will or clean stop said offline).
- A refused CONNACK returns at once; bad credentials stop the reconnecting for good (``fatal``).
- Callbacks never block for long and never raise: ``on_received`` (paho's ``on_message`` for
  what the short path leaves to paho, ``controlsvc.mqtt.received``) copies the message and hands
  it to the bridge (``RELIABLE`` may wait for room in its queue: back-pressure, not loss).
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.subscribeoptions import SubscribeOptions

from controlsvc import __version__
from controlsvc.bridge.errors import BrokerRefused
from controlsvc.bridge.inbound import Inbound, Link
from controlsvc.bridge.stats import BridgeStats
from controlsvc.config.settings import Settings
from controlsvc.domain.publisher import BrokerUnavailable, MessageProperties
from controlsvc.mqtt.connection import MqttConnection, new_properties, reason_value
from controlsvc.mqtt.publisher import (
    PUBLISH_TIMEOUT_S,
    PubackCodes,
    wait_published,
    wait_published_many,
)
from controlsvc.mqtt.received import Received
from controlsvc.store import eventlog
from controlsvc.store.db import utcnow
from schemas.codec import dump_message
from schemas.connack import Refusal
from schemas.messages import ServiceState
from schemas.topics import Channel, Topics

log = logging.getLogger(__name__)

__all__ = ["RELIABLE", "SHARE_GROUP", "STATUSES", "BridgeClient", "Role"]

SHARE_GROUP = "controlsvc"
# The broker keeps the bridge's subscriptions and queues its messages this long while it is
# away (a restart, an upgrade); longer outages rely on the retained state/status instead.
SESSION_EXPIRY_S = 3600
# Unacknowledged messages the broker may have in flight to the bridge: a few batches' worth,
# so the worker never starves while the previous batch commits.
RECEIVE_MAXIMUM = 10_000
# The status connection: the most MQTT allows, since what the bridge holds unacknowledged is
# bounded by the statuses it lets wait (``service.STATUS_QUEUE_SIZE``) plus one per enclosure.
STATUS_RECEIVE_MAXIMUM = 65_535
# The bridge's keepalive is at least this (seconds): under back-pressure its network thread
# waits for room in a queue and reads PINGRESPs late; with a short keepalive paho would drop a
# healthy connection. Its own liveness is not time-critical (a crash closes the socket at once).
MIN_KEEPALIVE_S = 30
# service/state online is republished this often.
SERVICE_HEARTBEAT_S = 15.0
SHARED_SUB_ID = 1
RETAINED_SUB_ID = 2
SUBSCRIBED_CHANNELS = (Channel.STATE, Channel.STATUS, Channel.ACK, Channel.EVENTS)


@dataclass(frozen=True, slots=True)
class Role:
    """What one of the bridge's connections carries, and how (see the module doc)."""

    suffix: str  # added to the bridge's client id
    kind: str  # names the connection in logs and metrics
    channels: tuple[Channel, ...]  # the shared subscription
    retained: tuple[Channel, ...]  # the plain subscription made once per connection
    link: Link  # stamped on the messages received, to route their acks
    announces: bool  # the Will and service/state
    receive_maximum: int


RELIABLE = Role(
    "",
    "bridge",
    (Channel.STATE, Channel.ACK, Channel.EVENTS),
    (Channel.STATE,),
    link=Link.RELIABLE,
    announces=True,
    receive_maximum=RECEIVE_MAXIMUM,
)
STATUSES = Role(
    "-status",
    "bridge statuses",
    (Channel.STATUS,),
    (Channel.STATUS,),
    link=Link.STATUSES,
    announces=False,
    receive_maximum=STATUS_RECEIVE_MAXIMUM,
)


class BridgeClient:
    """paho wiring for the bridge; also a ``Publisher`` (QoS 1 waits for the PUBACK)."""

    def __init__(
        self,
        settings: Settings,
        topics: Topics,
        deliver: Callable[[Inbound], None],
        stats: BridgeStats,
        *,
        role: Role = RELIABLE,
        client_id: str | None = None,
        session_expiry_s: int = SESSION_EXPIRY_S,
        receive_maximum: int | None = None,
        publish_timeout: float = PUBLISH_TIMEOUT_S,
    ) -> None:
        self._settings = settings
        self.topics = topics
        self._deliver = deliver
        self.stats = stats
        self.role = role
        # ``client_id``: the bridge's (default ``{[MQTT] client_id}-bridge``); the role adds its own
        # suffix, so every connection's id is stable across restarts and distinct.
        self.client_id = (client_id or f"{settings.mqtt.client_id}-bridge") + role.suffix
        self.session_expiry_s = session_expiry_s
        self.receive_maximum = receive_maximum or role.receive_maximum
        self.publish_timeout = publish_timeout
        self.started_at = utcnow()
        # This bridge among several: its heartbeat row and its name as the timers' lease holder.
        self.bridge_id = f"{socket.gethostname()}/{self.client_id}"
        self._codes = PubackCodes()
        # Generation and acks. Reentrant: a PUBACK that fails to send makes paho call
        # on_disconnect (which moves the generation on) from inside ``ack``.
        self._lock = threading.RLock()
        self._generation = 0
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._retained_mid: int | None = None
        self._shared_mid: int | None = None
        self._was_connected = False
        self._stopping = False
        self.fatal: BrokerRefused | None = None
        self._mqtt = self._make_connection()
        self._client = self._mqtt.client

    def _service_state(self, online: bool) -> bytes:
        return dump_message(
            ServiceState(
                online=online,
                version=__version__,
                started_at=self.started_at,
                status_interval_s=self._settings.service.status_interval_s,
                heartbeat_interval_s=SERVICE_HEARTBEAT_S,
            )
        )

    def _make_connection(self) -> MqttConnection:
        props = new_properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.session_expiry_s
        props.ReceiveMaximum = self.receive_maximum
        connection = MqttConnection(
            self._settings,
            kind=self.role.kind,
            client_id=self.client_id,
            logger=log,
            on_up=self._on_up,
            on_down=self._on_down,
            on_refused=self._on_refused,
            manual_ack=True,
            clean_start=False,
            keepalive_s=max(self._settings.mqtt.keepalive_s, MIN_KEEPALIVE_S),
            connect_properties=props,
        )
        client = connection.client
        if self.role.announces:
            client.will_set(
                self.topics.service_state(), self._service_state(False), qos=1, retain=True
            )
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message  # what the short path leaves to paho
        client.on_received = self._on_received
        client.on_publish = self._codes.on_publish
        return connection

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        """Start connecting in the background (retrying until the broker answers)."""
        self._mqtt.start()

    def stop(self, *, forget_session: bool = False) -> None:
        """Say offline (retained), disconnect cleanly (no Will), stop the network thread.

        ``forget_session`` ends the broker session too (Session Expiry 0): for a bridge that is
        not coming back, so the shared subscription group stops handing it messages (mosquitto
        2.0 keeps queueing a share for a disconnected member until its session expires).
        """
        self._stopping = True
        if self._connected.is_set() and self.role.announces:
            try:
                self.publish(self.topics.service_state(), self._service_state(False), retain=True)
            except BrokerUnavailable as exc:
                log.warning("could not publish service offline: %s", exc.detail)
        props = None
        if forget_session:
            props = new_properties(PacketTypes.DISCONNECT)
            props.SessionExpiryInterval = 0
        self._mqtt.stop(properties=props)
        self._mark_disconnected()

    def kill(self) -> None:
        """Drop the connection without DISCONNECT, as a crash would (tests): the Will fires."""
        self._stopping = True
        self._mqtt.kill()
        self._mark_disconnected()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def subscribed(self) -> bool:
        return self._subscribed.is_set()

    def connected_for(self) -> float:
        """Seconds since the current connection was made (0 when not connected)."""
        return self._mqtt.connected_for() if self._connected.is_set() else 0.0

    def wait_subscribed(self, timeout: float) -> bool:
        return self._subscribed.wait(timeout)

    @property
    def generation(self) -> int:
        return self._generation

    # -- callbacks (paho's network thread: never raise) -----------------------------------------
    def _on_up(self, client: paho.Client, session_present: bool) -> None:
        with self._lock:
            self._generation += 1
        self._connected.set()
        if self.role.announces:  # the bridge's connection as the metrics know it
            self.stats.add("connects")
            self.stats.connected = True
        if self._was_connected:
            log.info("connection to the broker is back (session present: %s)", session_present)
        else:
            log.info(
                "connected to the broker %s:%d as %s (session present: %s)",
                self._settings.mqtt.host,
                self._settings.mqtt.port,
                self.client_id,
                session_present,
            )
        self._was_connected = True
        self._subscribe(client, session_present=session_present)
        if self.role.announces:
            client.publish(
                self.topics.service_state(), self._service_state(True), qos=1, retain=True
            )

    def _on_refused(self, refused: Refusal) -> None:
        if refused.fatal:
            self.fatal = BrokerRefused(
                f"the broker refused the bridge's connection: {refused}; check [MQTT]"
                " username and password (and the broker's ACL). Not retrying.",
                reason_code=refused.code,
            )

    def _shared_filter(self, channel: Channel) -> str:
        return Topics.shared(SHARE_GROUP, self.topics.enc_filter(channel))

    def _subscribe(self, client: paho.Client, *, session_present: bool) -> None:
        role = self.role
        others = [ch for ch in SUBSCRIBED_CHANNELS if ch not in role.channels]
        if session_present and others:
            # A session kept from a version whose one connection took every channel: the
            # other connection reads those now, and this session must stop queueing them.
            client.unsubscribe([self._shared_filter(ch) for ch in others])
        shared = new_properties(PacketTypes.SUBSCRIBE)
        shared.SubscriptionIdentifier = SHARED_SUB_ID
        filters = [(self._shared_filter(ch), SubscribeOptions(qos=1)) for ch in role.channels]
        rc, mid = client.subscribe(filters, properties=shared)
        self._shared_mid = mid
        retained = new_properties(PacketTypes.SUBSCRIBE)
        retained.SubscriptionIdentifier = RETAINED_SUB_ID
        rc2, mid2 = client.subscribe(
            [(self.topics.enc_filter(ch), SubscribeOptions(qos=1)) for ch in role.retained],
            properties=retained,
        )
        self._retained_mid = mid2
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or rc2 != MQTTErrorCode.MQTT_ERR_SUCCESS:
            log.warning("subscribing failed locally (rc %s, %s); will retry on reconnect", rc, rc2)

    def _on_subscribe(self, client: paho.Client, _u: Any, mid: int, codes: Any, _p: Any) -> None:
        try:
            refused = [c for c in codes if reason_value(c) >= 0x80]
            if refused:
                log.error(
                    "the broker refused subscriptions (%s): check the ACL of [MQTT] username",
                    ", ".join(str(c) for c in refused),
                )
            if mid == self._retained_mid:
                # The retained messages are on their way (queued before this SUBACK's
                # successor); the plain subscription has done its job.
                client.unsubscribe([self.topics.enc_filter(ch) for ch in self.role.retained])
                self._retained_mid = None
            elif mid == self._shared_mid and not refused:
                if not self._subscribed.is_set():
                    log.info("%s: subscribed to the shared group %r", self.client_id, SHARE_GROUP)
                self._subscribed.set()
        except Exception:
            log.exception("error in on_subscribe")

    def _on_down(self, detail: str) -> None:
        if self._stopping:
            log.info("disconnected from the broker")
        elif self._was_connected:
            log.warning("connection to the broker down (%s); reconnecting", detail)
        else:
            log.warning(
                "cannot connect to the broker %s (%s); retrying", self._mqtt.address, detail
            )
        self._mark_disconnected()

    def _mark_disconnected(self) -> None:
        with self._lock:
            if self._connected.is_set():
                self._generation += 1  # acks of that connection must not reach the next one
            self._connected.clear()
            self._subscribed.clear()
        if self.role.announces:
            self.stats.connected = False

    def _on_message(self, _c: paho.Client, _u: Any, message: paho.MQTTMessage) -> None:
        try:
            inbound = Inbound.from_paho(message, self._generation, self.role.link)
        except Exception:  # e.g. a topic that is not UTF-8
            log.exception("cannot read a received message (mid %s)", message.mid)
            self.stats.count("invalid", "topic")
            self.ack(
                [Inbound("", b"", message.qos, False, utcnow(), message.mid, self._generation)]
            )
            return
        self._hand_over(inbound)

    def _on_received(self, received: Received) -> None:
        self._hand_over(Inbound.from_received(received, self._generation, self.role.link))

    def _hand_over(self, inbound: Inbound) -> None:
        try:
            self._deliver(inbound)
        except Exception:
            log.exception("error handing over the message on %s", inbound.topic)

    # -- acknowledgements and publishing --------------------------------------------------------
    def ack(self, inbounds: Sequence[Inbound]) -> None:
        """PUBACK these messages (in order) if their connection is still the current one;
        otherwise the broker sends them again and the idempotent writes absorb them."""
        with self._lock:
            for inbound in inbounds:
                if not self._connected.is_set():
                    return
                if inbound.qos > 0 and inbound.generation == self._generation:
                    self._client.ack(inbound.mid, inbound.qos)

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        properties: MessageProperties | None = None,
    ) -> None:
        if not self._connected.is_set():
            raise BrokerUnavailable("the bridge is not connected to the broker")
        wait_published(
            self._client,
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
        if not self._connected.is_set():
            error = BrokerUnavailable("the bridge is not connected to the broker")
            return [error for _ in messages]
        return wait_published_many(
            self._client,
            self._codes,
            messages,
            qos=qos,
            retain=retain,
            timeout=self.publish_timeout,
        )

    def heartbeat(self) -> None:
        """Republish retained ``service/state`` online (no wait)."""
        if self._connected.is_set():
            self._client.publish(
                self.topics.service_state(), self._service_state(True), qos=1, retain=True
            )

    def notify_events(
        self,
        last_id: int,
        at: datetime | None = None,
        *,
        events: Sequence[dict[str, Any]] = (),
    ) -> None:
        """Tell the API processes new events are committed (QoS 0, not retained, no wait);
        ``events``: those of the one transaction just committed, carried when they fit."""
        if self._connected.is_set():
            self._client.publish(
                eventlog.notification_topic(self.topics.prefix),
                eventlog.notification_payload(last_id, at=at, events=events),
                qos=eventlog.NOTIFICATION_QOS,
            )
