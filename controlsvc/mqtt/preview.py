"""Live-view frames inside one API process: one MQTT subscription per watched enclosure.

::

    agent ──▶ {prefix}/enc/{eid}/preview (QoS 0 JPEG) ──▶ PreviewRelay (one per API process)
                                                            ├─ latest frame per enclosure
                                                            └─▶ Viewer, one per MJPEG client

The relay subscribes to an enclosure's ``preview`` topic when its first viewer arrives and
unsubscribes when the last one leaves. Only the latest frame of each enclosure is kept: a viewer
that reads slower than frames arrive skips frames, so memory stays bounded whatever the viewers
do. paho's network thread only stores the frame and wakes the viewers' conditions.

The relay also collects the ``ack`` of an enclosure while an `AckWaiter` is open (the
``snapshot`` command answers with a base64 JPEG in its ack data).

No Flask and no database here: sending ``start_live_view`` / ``snapshot`` is the API's job
(``controlsvc.api.live``); `Viewer.claim_refresh` tells it when a ``start_live_view`` is due.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
import uuid
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import paho.mqtt.client as paho

from controlsvc.config.settings import Settings
from controlsvc.mqtt.connection import MqttConnection
from schemas.codec import parse_message
from schemas.commands import Ack
from schemas.errors import MessageError
from schemas.topics import Topics

log = logging.getLogger(__name__)

__all__ = [
    "FRAME_MAX_AGE_S",
    "REFRESH_S",
    "AckWaiter",
    "Frame",
    "PreviewRelay",
    "Viewer",
    "shutdown_all",
]

# A viewer re-sends start_live_view this often (the command asks for LIVE_VIEW_S of frames).
REFRESH_S = 20.0
# The latest frame of an enclosure is kept (for preview.jpg) this long after it arrived.
FRAME_MAX_AGE_S = 60.0
# A frame at most this old is shown to a new viewer at once.
FRESH_FOR_NEW_VIEWER_S = 5.0
# Largest preview payload accepted (the broker limits messages anyway).
MAX_FRAME_BYTES = 8 * 1024 * 1024
# Acks remembered per open waiter (a snapshot waits for one of them).
ACKS_KEPT = 16
# Waiting for the broker's SUBACK before a command is sent whose ack we need.
SUBACK_WAIT_S = 2.0
JPEG_MAGIC = b"\xff\xd8"

_RELAYS: weakref.WeakSet[PreviewRelay] = weakref.WeakSet()
_RELAYS_LOCK = threading.Lock()


@dataclass(frozen=True, slots=True)
class Frame:
    """One preview JPEG: ``seq`` grows per enclosure, ``received`` is ``time.monotonic()``."""

    jpeg: bytes
    seq: int
    received: float

    @property
    def age(self) -> float:
        return time.monotonic() - self.received


class _Channel:
    """What the relay holds for one enclosure."""

    def __init__(self) -> None:
        self.viewers: set[Viewer] = set()
        self.ack_waiters: set[AckWaiter] = set()
        self.latest: Frame | None = None
        self.seq = 0
        self.last_refresh: float | None = None  # monotonic time of the last start_live_view


class Viewer:
    """One MJPEG client of one enclosure. `next_frame` waits for a frame newer than the last
    one returned; `ended` says the relay is closing."""

    def __init__(self, relay: PreviewRelay, eid: str) -> None:
        self.eid = eid
        self._relay = relay
        self._seen = 0
        self.ended = False

    def next_frame(self, timeout: float) -> Frame | None:
        """The latest frame if newer than the last one returned (waiting up to `timeout` s for
        one), else None. Frames that arrived in between are skipped."""
        return self._relay._next_frame(self, timeout)

    def claim_refresh(self) -> bool:
        """True for exactly one viewer of the enclosure when a ``start_live_view`` is due (none
        sent yet, or the last one REFRESH_S ago); the caller then sends it."""
        return self._relay._claim_refresh(self.eid)

    def close(self) -> None:
        self._relay._remove_viewer(self)

    def __enter__(self) -> Viewer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AckWaiter:
    """Collects the acks of one enclosure while open (see `PreviewRelay.ack_waiter`)."""

    def __init__(self, relay: PreviewRelay, eid: str) -> None:
        self.eid = eid
        self._relay = relay
        self._acks: OrderedDict[uuid.UUID, Ack] = OrderedDict()
        self.subscribed = threading.Event()

    def _offer(self, ack: Ack) -> None:
        # called with the relay's condition held
        self._acks[ack.command_id] = ack
        while len(self._acks) > ACKS_KEPT:
            self._acks.popitem(last=False)

    def wait_final(self, command_id: uuid.UUID, timeout: float) -> Ack | None:
        """The final ack (anything but ``accepted``) of `command_id`, or None after `timeout`."""
        return self._relay._wait_ack(self, command_id, timeout)

    def close(self) -> None:
        self._relay._remove_ack_waiter(self)

    def __enter__(self) -> AckWaiter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class PreviewRelay:
    """The live-view frames of this process (see the module doc)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.topics = Topics(settings.mqtt.topic_prefix)
        self.client_id = f"{settings.mqtt.client_id}-preview-{os.getpid()}-{secrets.token_hex(3)}"
        self.pid = os.getpid()
        self._cond = threading.Condition()  # channels, frames, acks, subscriptions
        self._channels: dict[str, _Channel] = {}
        self._subscribed: set[str] = set()  # topics subscribed (or to subscribe on connect)
        self._suback: dict[int, str] = {}  # SUBSCRIBE mid -> topic
        self._started = False
        self._closed = False
        self._connected = False
        self._mqtt: MqttConnection | None = None

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> PreviewRelay:
        """Start the MQTT client (connecting in the background); idempotent."""
        with self._cond:
            if self._started or self._closed:
                return self
            self._started = True
        with _RELAYS_LOCK:
            _RELAYS.add(self)
        connection = MqttConnection(
            self._settings,
            kind="preview",
            client_id=self.client_id,
            logger=log,
            on_up=self._on_up,
            on_down=self._on_down,
        )
        connection.client.on_subscribe = self._on_subscribe
        connection.client.on_message = self._on_message
        self._mqtt = connection
        connection.start()
        return self

    def close(self) -> None:
        """Stop the client and end every viewer; idempotent."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            for channel in self._channels.values():
                for viewer in channel.viewers:
                    viewer.ended = True
            self._channels.clear()
            self._subscribed.clear()
            self._cond.notify_all()
        connection, self._mqtt = self._mqtt, None
        if connection is not None:
            connection.stop()
        with _RELAYS_LOCK:
            _RELAYS.discard(self)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def viewer_count(self) -> int:
        with self._cond:
            return sum(len(c.viewers) for c in self._channels.values())

    def viewers_of(self, eid: str) -> int:
        with self._cond:
            channel = self._channels.get(eid)
            return len(channel.viewers) if channel is not None else 0

    def subscribed_topics(self) -> set[str]:
        with self._cond:
            return set(self._subscribed)

    # -- viewers ----------------------------------------------------------------------------------
    def watch(self, eid: str) -> Viewer:
        """A new viewer of `eid`; the first one subscribes to its preview topic."""
        self.start()
        viewer = Viewer(self, eid)
        with self._cond:
            if self._closed:
                viewer.ended = True
                return viewer
            channel = self._channels.setdefault(eid, _Channel())
            channel.viewers.add(viewer)
            latest = channel.latest
            if latest is not None and latest.age <= FRESH_FOR_NEW_VIEWER_S:
                viewer._seen = latest.seq - 1  # show the current picture at once
            else:
                viewer._seen = channel.seq
            self._want(self.topics.preview(eid), qos=0)
        return viewer

    def _remove_viewer(self, viewer: Viewer) -> None:
        with self._cond:
            channel = self._channels.get(viewer.eid)
            if channel is None or viewer not in channel.viewers:
                return
            channel.viewers.discard(viewer)
            if not channel.viewers:
                channel.last_refresh = None
                self._unwant(self.topics.preview(viewer.eid))
                self._drop_if_unused(viewer.eid, channel)

    def _next_frame(self, viewer: Viewer, timeout: float) -> Frame | None:
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cond:
            while True:
                channel = self._channels.get(viewer.eid)
                if viewer.ended or channel is None:
                    viewer.ended = viewer.ended or self._closed
                    return None
                latest = channel.latest
                if latest is not None and latest.seq > viewer._seen:
                    viewer._seen = latest.seq
                    return latest
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)

    def _claim_refresh(self, eid: str) -> bool:
        now = time.monotonic()
        with self._cond:
            channel = self._channels.get(eid)
            if self._closed or channel is None or not channel.viewers:
                return False
            if channel.last_refresh is not None and now - channel.last_refresh < REFRESH_S:
                return False
            channel.last_refresh = now
            return True

    # -- frames for preview.jpg -------------------------------------------------------------------
    def latest(self, eid: str, max_age: float = FRAME_MAX_AGE_S) -> Frame | None:
        """The newest frame of `eid` seen by this process, if at most `max_age` s old."""
        with self._cond:
            channel = self._channels.get(eid)
            frame = channel.latest if channel is not None else None
        if frame is None or frame.age > max_age:
            return None
        return frame

    def put_frame(self, eid: str, jpeg: bytes) -> Frame:
        """Store a frame (from a preview message or a snapshot ack) and wake the viewers."""
        with self._cond:
            channel = self._channels.setdefault(eid, _Channel())
            channel.seq += 1
            channel.latest = Frame(jpeg, channel.seq, time.monotonic())
            self._prune()
            self._cond.notify_all()
            return channel.latest

    def _prune(self) -> None:
        # called with the condition held: forget stale frames of enclosures nobody watches
        for eid, channel in list(self._channels.items()):
            if channel.latest is not None and channel.latest.age > FRAME_MAX_AGE_S:
                channel.latest = None
            self._drop_if_unused(eid, channel)

    def _drop_if_unused(self, eid: str, channel: _Channel) -> None:
        if not channel.viewers and not channel.ack_waiters and channel.latest is None:
            self._channels.pop(eid, None)

    # -- acks -------------------------------------------------------------------------------------
    def ack_waiter(self, eid: str) -> AckWaiter:
        """Start collecting the acks of `eid` and wait (up to SUBACK_WAIT_S) until the broker
        confirmed the subscription, so an ack to a command sent next cannot be missed."""
        self.start()
        waiter = AckWaiter(self, eid)
        topic = self.topics.ack(eid)
        with self._cond:
            if self._closed:
                return waiter
            channel = self._channels.setdefault(eid, _Channel())
            already = any(w.subscribed.is_set() for w in channel.ack_waiters)
            channel.ack_waiters.add(waiter)
            if already:
                waiter.subscribed.set()
            else:
                self._want(topic, qos=1)
        waiter.subscribed.wait(SUBACK_WAIT_S)
        return waiter

    def _remove_ack_waiter(self, waiter: AckWaiter) -> None:
        with self._cond:
            channel = self._channels.get(waiter.eid)
            if channel is None or waiter not in channel.ack_waiters:
                return
            channel.ack_waiters.discard(waiter)
            if not channel.ack_waiters:
                self._unwant(self.topics.ack(waiter.eid))
                self._drop_if_unused(waiter.eid, channel)

    def _wait_ack(self, waiter: AckWaiter, command_id: uuid.UUID, timeout: float) -> Ack | None:
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cond:
            while True:
                ack = waiter._acks.get(command_id)
                if ack is not None and ack.result.value != "accepted":
                    return ack
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:
                    return None
                self._cond.wait(remaining)

    # -- subscriptions (called with the condition held) -----------------------------------------
    def _want(self, topic: str, qos: int) -> None:
        if topic in self._subscribed:
            return
        self._subscribed.add(topic)
        if self._mqtt is not None and self._connected:
            self._subscribe(self._mqtt.client, topic, qos)

    def _unwant(self, topic: str) -> None:
        if topic not in self._subscribed:
            return
        self._subscribed.discard(topic)
        if self._mqtt is not None and self._connected:
            self._mqtt.client.unsubscribe(topic)

    def _subscribe(self, client: paho.Client, topic: str, qos: int) -> None:
        rc, mid = client.subscribe(topic, qos=qos)
        if rc == paho.MQTT_ERR_SUCCESS and mid is not None:
            self._suback[mid] = topic

    def _qos_of(self, topic: str) -> int:
        return 1 if topic.endswith("/ack") else 0

    # -- MQTT callbacks (paho's thread: never block, never raise) --------------------------------
    def _on_up(self, client: paho.Client, _session_present: bool) -> None:
        with self._cond:
            self._connected = True
            for topic in sorted(self._subscribed):
                self._subscribe(client, topic, self._qos_of(topic))

    def _on_down(self, detail: str) -> None:
        with self._cond:
            self._connected = False
            self._suback.clear()
        if not self._closed:
            log.info("live view: the connection to the broker is down (%s)", detail)

    def _on_subscribe(
        self, _client: paho.Client, _userdata: Any, mid: int, _codes: Any, _props: Any
    ) -> None:
        try:
            with self._cond:
                topic = self._suback.pop(mid, None)
                if topic is None or not topic.endswith("/ack"):
                    return
                eid = self.topics.parse(topic).eid
                channel = self._channels.get(eid) if eid else None
                for waiter in channel.ack_waiters if channel is not None else ():
                    waiter.subscribed.set()
        except Exception:
            log.exception("live view: on_subscribe failed")

    def _on_message(self, _client: paho.Client, _userdata: Any, msg: paho.MQTTMessage) -> None:
        try:
            parsed = self.topics.parse(msg.topic)
            eid, channel = parsed.eid, str(parsed.channel)
            if not eid:
                return
            if channel == "preview":
                payload = bytes(msg.payload)
                if len(payload) > MAX_FRAME_BYTES or not payload.startswith(JPEG_MAGIC):
                    log.debug("live view: %s sent a preview that is not a JPEG", eid)
                    return
                with self._cond:
                    watched = eid in self._channels and bool(self._channels[eid].viewers)
                if watched:
                    self.put_frame(eid, payload)
            elif channel == "ack":
                try:
                    ack = parse_message(Ack, msg.payload)
                except MessageError:
                    return
                with self._cond:
                    chan = self._channels.get(eid)
                    for waiter in chan.ack_waiters if chan is not None else ():
                        waiter._offer(ack)
                    self._cond.notify_all()
        except Exception:
            log.exception("live view: bad message on %s", msg.topic)


def shutdown_all() -> None:
    """Close every relay of this process: live streams end now (a stopping worker)."""
    with _RELAYS_LOCK:
        relays = list(_RELAYS)
    for relay in relays:
        relay.close()
