"""One simulated enclosure's MQTT connection: birth, heartbeat, answers, Will, stop and kill.

A ``SimulatedEnclosure`` owns a paho client (MQTT 5, client id = user name = enclosure id, its
own password, its own retained Will ``state: lost``) driven by a ``NetworkLoop``, and a
``SimulatedAgent`` that decides what to say. Everything here runs on the loop's thread.

Birth, as the contract's agent does it: ``state: init`` → first ``status`` → subscribe to
``cmd`` and ``desired`` → (SUBACK) ``state: ready``. Then a status every ``status_interval_s``,
the first one at a random point of the first interval so a fleet does not publish in lockstep.
An unexpected loss reconnects with backoff (a new birth, the same boot); ``stop()`` publishes
``state: disconnected`` and sends DISCONNECT; ``kill()`` drops the TCP connection without
DISCONNECT, so the broker publishes the Will, and the enclosure stays down until ``revive()``.
"""

from __future__ import annotations

import contextlib
import logging
import random
import socket
import time
from collections import deque
from collections.abc import Callable
from enum import StrEnum
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from fleet_simulator.agent import Outbound, OutKind, Reaction, SimulatedAgent
from fleet_simulator.client import SimClient
from fleet_simulator.counters import LoopCounters
from fleet_simulator.loop import NetworkLoop, Timer
from schemas import Lifecycle, utc_now

__all__ = ["ConnectGate", "LinkState", "SimulatedEnclosure"]

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0  # no CONNACK by then: drop the attempt and retry later
RECONNECT_MIN_S = 1.0  # first retry after an unexpected loss...
RECONNECT_MAX_S = 30.0  # ...doubling up to this, with jitter so a fleet does not stampede
STOP_ACK_TIMEOUT_S = 3.0  # wait this long for the broker to take `disconnected` before leaving
RESTART_DELAY_S = 0.5  # restart_agent: down this long between the old and the new boot
LOG_PAYLOAD_CHARS = 200  # payload quoted in a log line about a message we could not handle
MAX_INFLIGHT = 100  # QoS 1 messages per client awaiting PUBACK (paho's default of 20 slows bursts)


class LinkState(StrEnum):
    NEW = "new"  # never started
    QUEUED = "queued"  # waiting for a slot to connect (see ConnectGate)
    CONNECTING = "connecting"  # TCP up, CONNECT sent, no CONNACK yet
    BIRTH = "birth"  # accepted; publishing init/status, subscribing
    READY = "ready"  # subscribed and announced ready
    WAITING = "waiting"  # lost the connection; will reconnect after a backoff
    STOPPING = "stopping"  # publishing `disconnected`, then DISCONNECT
    STOPPED = "stopped"  # cleanly disconnected
    KILLED = "killed"  # connection dropped without DISCONNECT (the Will fired)
    REFUSED = "refused"  # the broker refused the credentials: no retry

    @property
    def connected(self) -> bool:
        return self in (LinkState.BIRTH, LinkState.READY, LinkState.STOPPING)

    @property
    def settled(self) -> bool:
        """Down for good until someone acts (stop/kill/refusal)."""
        return self in (LinkState.NEW, LinkState.STOPPED, LinkState.KILLED, LinkState.REFUSED)


class ConnectGate:
    """Limits how many enclosures of a loop are connecting at once.

    Thousands of simultaneous connects overflow the broker's listen backlog (the kernel then
    drops SYNs, and a blocking connect waits a second for the retry, stalling the whole loop),
    so connections open at the pace the broker accepts them.
    """

    def __init__(self, window: int) -> None:
        self.window = max(1, window)
        self._busy = 0
        self._waiting: deque[Callable[[], bool]] = deque()

    def request(self, opener: Callable[[], bool]) -> None:
        """Queue ``opener``; it runs when a slot is free and returns whether it took the slot."""
        self._waiting.append(opener)
        self._pump()

    def release(self) -> None:
        self._busy = max(0, self._busy - 1)
        self._pump()

    def _pump(self) -> None:
        while self._busy < self.window and self._waiting:
            opener = self._waiting.popleft()
            self._busy += 1
            if not opener():
                self._busy -= 1


class SimulatedEnclosure:
    """The MQTT side of one simulated enclosure (see the module docstring)."""

    def __init__(
        self,
        agent: SimulatedAgent,
        password: str,
        *,
        loop: NetworkLoop,
        gate: ConnectGate,
        counters: LoopCounters,
        host: str,
        port: int,
        keepalive_s: int,
        clean_start: bool = True,
        rng: random.Random | None = None,
    ) -> None:
        self.agent = agent
        self.eid = agent.eid
        self.loop = loop
        self.gate = gate
        self.counters = counters
        self.host = host
        self.port = port
        self.keepalive_s = keepalive_s
        self.clean_start = clean_start
        self.state = LinkState.NEW
        self.last_error: str | None = None
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not secrets
        self._holds_slot = False
        self._backoff_s = RECONNECT_MIN_S
        self._status_timer: Timer | None = None
        self._next_status_at = 0.0
        self._deadline_timer: Timer | None = None
        self._other_timer: Timer | None = None
        self._pending: dict[int, OutKind] = {}  # mid -> what it was, until its PUBACK
        self._stop_mid: int | None = None
        self._was_ready = False
        self._restart_after_stop = False

        client = SimClient(
            CallbackAPIVersion.VERSION2,
            client_id=self.eid,
            protocol=mqtt.MQTTv5,
            userdata=self,
            reconnect_on_failure=False,
        )
        client.username_pw_set(self.eid, password)
        client.max_inflight_messages_set(MAX_INFLIGHT)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        loop.attach(client)
        self.client = client

    # -- control (loop thread) --------------------------------------------------------------------
    def start(self) -> None:
        """Connect (when the gate gives a slot) and go through the birth."""
        if self.state not in (
            LinkState.NEW,
            LinkState.STOPPED,
            LinkState.KILLED,
            LinkState.WAITING,
        ):
            return
        self.state = LinkState.QUEUED
        self.gate.request(self._open)

    def revive(self) -> None:
        """Start again as a new run of the agent (new boot id, ``seq`` from 0)."""
        if not self.state.settled:
            return
        self.agent.new_boot()
        self.start()

    def stop(self) -> None:
        """Clean shutdown: ``state: disconnected`` (waits for its PUBACK), then DISCONNECT."""
        self._cancel_timers()
        self._restart_after_stop = False
        if self.state in (LinkState.BIRTH, LinkState.READY):
            self.state = LinkState.STOPPING
            info = self._publish(self.agent.state_message(Lifecycle.DISCONNECTED))
            self._stop_mid = info.mid if info is not None else None
            self._other_timer = self.loop.call_later(STOP_ACK_TIMEOUT_S, self._disconnect_now)
            if self._stop_mid is None:
                self._disconnect_now()
        elif self.state is LinkState.STOPPING:
            return
        else:
            self._release_slot()
            if self.client.socket() is not None:
                self.client.disconnect()
            self.state = LinkState.STOPPED

    def kill(self) -> None:
        """Drop the connection without DISCONNECT, like a crash or a pulled cable: the broker
        publishes the Will (``state: lost``). The enclosure stays down until ``revive()``."""
        self._cancel_timers()
        self._release_slot()
        self._restart_after_stop = False
        self.counters.kills += 1
        was_connected = self.client.socket() is not None
        self.state = LinkState.KILLED
        sock = self.client.socket()
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # EOF: loop_read notices and paho closes it
        if not was_connected:
            self._pending.clear()

    def publish_statuses(self, count: int) -> int:
        """Publish ``count`` statuses back to back now (bursts); returns how many were sent."""
        if self.state is not LinkState.READY:
            return 0
        sent = 0
        for _ in range(count):
            if self._publish(self.agent.status_message()) is not None:
                sent += 1
        return sent

    # -- connecting -------------------------------------------------------------------------------
    def _open(self) -> bool:
        if self.state is not LinkState.QUEUED:
            return False
        self.client.will_set(
            self.agent.state_topic,
            self.agent.state_message(Lifecycle.LOST).payload,
            qos=1,
            retain=True,
        )
        self._holds_slot = True
        self.state = LinkState.CONNECTING
        try:
            self.client.connect(
                self.host,
                self.port,
                keepalive=self.keepalive_s,
                clean_start=self.clean_start,
            )
        except OSError as exc:
            self.counters.connect_errors += 1
            self.last_error = f"cannot connect to {self.host}:{self.port}: {exc}"
            self._release_slot()
            self._retry_later()
            return True
        self._other_timer = self.loop.call_later(CONNECT_TIMEOUT_S, self._connect_timed_out)
        return True

    def _connect_timed_out(self) -> None:
        if self.state is not LinkState.CONNECTING:
            return
        self.counters.connect_errors += 1
        self.last_error = f"no CONNACK within {CONNECT_TIMEOUT_S:g} s"
        self._release_slot()
        self.state = LinkState.WAITING
        sock = self.client.socket()
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._retry_later()

    def _release_slot(self) -> None:
        if self._holds_slot:
            self._holds_slot = False
            self.gate.release()

    def _retry_later(self) -> None:
        self.state = LinkState.WAITING
        delay = self._backoff_s * self._rng.uniform(0.5, 1.5)
        self._backoff_s = min(RECONNECT_MAX_S, self._backoff_s * 2)
        self._cancel_other_timer()
        self._other_timer = self.loop.call_later(delay, self._reconnect)

    def _reconnect(self) -> None:
        if self.state is LinkState.WAITING:
            self.counters.reconnects += 1
            self.start()

    # -- paho callbacks (loop thread) -------------------------------------------------------------
    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._cancel_other_timer()
        self._release_slot()
        if reason.is_failure:
            self.counters.connect_refused += 1
            self.last_error = f"the broker refused the connection: {reason}"
            logger.warning("%s: %s; not retrying", self.eid, self.last_error)
            self.state = LinkState.REFUSED
            return
        if self.state is not LinkState.CONNECTING:  # killed or stopped meanwhile
            return
        self.counters.connects += 1
        self._backoff_s = RECONNECT_MIN_S
        self.state = LinkState.BIRTH
        self._publish(self.agent.state_message(Lifecycle.INIT))
        self._publish(self.agent.status_message())
        client.subscribe([(self.agent.cmd_topic, 1), (self.agent.desired_topic, 1)])

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        if self.state is not LinkState.BIRTH:
            return
        refused = [str(r) for r in reason_codes if r.is_failure]
        if refused:
            self.last_error = f"subscription refused: {', '.join(refused)}"
            logger.warning("%s: %s", self.eid, self.last_error)
        self._publish(self.agent.state_message(Lifecycle.READY))
        self.state = LinkState.READY
        self.counters.births += 1
        self._was_ready = True
        interval = self.agent.status_interval_s
        self._schedule_status(self._rng.uniform(0.0, interval))
        self._schedule_deadline()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        topic = message.topic
        try:
            reaction = self._react(topic, message)
        except Exception:
            self.loop.errors += 1
            logger.exception(
                "%s: could not handle a message on %s: %r",
                self.eid,
                topic,
                bytes(message.payload[:LOG_PAYLOAD_CHARS]),
            )
            return
        if reaction is None:
            return
        if reaction.invalid is not None:
            logger.info("%s: refused a message on %s: %s", self.eid, topic, reaction.invalid)
        self._send(reaction.messages)
        if reaction.restart:
            self._restart_after_stop = True
            self.loop.call_later(0.0, self._stop_for_restart)

    def _react(self, topic: str, message: mqtt.MQTTMessage) -> Reaction | None:
        agent = self.agent
        if topic == agent.cmd_topic:
            self.counters.commands_received += 1
            props = message.properties
            response_topic = getattr(props, "ResponseTopic", None) if props else None
            correlation = getattr(props, "CorrelationData", None) if props else None
            reaction = agent.on_command(
                bytes(message.payload),
                response_topic=response_topic,
                correlation_data=correlation,
            )
            if reaction.invalid is not None:
                self.counters.commands_invalid += 1
            return reaction
        if topic == agent.desired_topic:
            self.counters.desired_received += 1
            reaction = agent.on_desired(bytes(message.payload))
            if reaction.invalid is not None:
                self.counters.desired_invalid += 1
            self._schedule_deadline()
            return reaction
        return None

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        kind = self._pending.pop(mid, None)
        if reason.is_failure:
            self.counters.publish_refused += 1
            logger.warning("%s: the broker refused a %s message: %s", self.eid, kind, reason)
        elif kind is OutKind.STATUS:
            self.counters.statuses_acked += 1
        if mid == self._stop_mid:
            self._disconnect_now()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._cancel_timers()
        self._release_slot()
        self._pending.clear()
        state = self.state
        if state is LinkState.STOPPING:
            self.state = LinkState.STOPPED
            if self._restart_after_stop:
                self._restart_after_stop = False
                self._other_timer = self.loop.call_later(RESTART_DELAY_S, self.revive)
            return
        if state.settled:
            return
        self.counters.disconnects_unexpected += 1
        self.last_error = f"connection lost: {reason}"
        if state is LinkState.READY:
            logger.info("%s: %s; reconnecting", self.eid, self.last_error)
        self._retry_later()

    # -- publishing -------------------------------------------------------------------------------
    def _send(self, messages: list[Outbound]) -> None:
        for message in messages:
            self._publish(message)
        self._schedule_deadline()

    def _publish(self, out: Outbound) -> mqtt.MQTTMessageInfo | None:
        properties = None
        if out.correlation_data is not None:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.CorrelationData = out.correlation_data
        info = self.client.publish(out.topic, out.payload, qos=1, retain=out.retain,
                                   properties=properties)  # fmt: skip
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return None
        self._pending[info.mid] = out.kind
        counters = self.counters
        if out.kind is OutKind.STATUS:
            counters.statuses_sent += 1
        elif out.kind is OutKind.STATE:
            counters.states_sent += 1
        elif out.kind is OutKind.EVENT:
            counters.events_sent += 1
        else:
            counters.acks_sent[out.result.value if out.result else "?"] += 1
        return info

    def _disconnect_now(self) -> None:
        self._cancel_other_timer()
        self._stop_mid = None
        if self.client.socket() is not None:
            self.client.disconnect()
        elif self.state is LinkState.STOPPING:
            self.state = LinkState.STOPPED

    def _stop_for_restart(self) -> None:
        if self._restart_after_stop and self.state in (LinkState.BIRTH, LinkState.READY):
            self.stop()
            self._restart_after_stop = True

    # -- timers -----------------------------------------------------------------------------------
    def _schedule_status(self, delay: float) -> None:
        self._next_status_at = time.monotonic() + delay
        self._status_timer = self.loop.call_later(delay, self._status_due)

    def _status_due(self) -> None:
        if self.state is not LinkState.READY:
            return
        self._publish(self.agent.status_message())
        interval = self.agent.status_interval_s
        now = time.monotonic()
        planned = self._next_status_at + interval
        if planned < now:  # fell behind (a stalled loop): skip, do not catch up in a burst
            planned = now + interval
        self._schedule_status(planned - now)

    def _schedule_deadline(self) -> None:
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
            self._deadline_timer = None
        deadline = self.agent.next_deadline()
        if deadline is None or not self.state.connected:
            return
        delay = (deadline - utc_now()).total_seconds()
        self._deadline_timer = self.loop.call_later(max(0.0, delay), self._deadline_due)

    def _deadline_due(self) -> None:
        self._deadline_timer = None
        if self.state is LinkState.READY:
            self._send(self.agent.tick())

    def _cancel_other_timer(self) -> None:
        if self._other_timer is not None:
            self._other_timer.cancel()
            self._other_timer = None

    def _cancel_timers(self) -> None:
        for timer in (self._status_timer, self._deadline_timer):
            if timer is not None:
                timer.cancel()
        self._status_timer = self._deadline_timer = None
        self._cancel_other_timer()
