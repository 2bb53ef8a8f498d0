"""The agent: ties the camera, the recorder, the MQTT link, the outbox and the commands together.

Everything runs on one thread (``EventLoop``); the MQTT network thread, the capture and
recorder threads and signal handlers only post tasks to it.

Start: lock the state directory, open the camera (``keep_open``), report segments an earlier
crash left behind, reconcile to the intent in the journal (recording resumes before the
broker is even reachable), then connect. Every (re)connect runs the birth sequence: retained
``state`` ``init`` -> ``status`` -> subscribe ``cmd``, ``desired``, ``service/state`` ->
(SUBACK) retained ``state`` ``ready`` -> outbox replay. Stop (SIGTERM/SIGINT): close the
current segment (its event goes to the outbox), flush the outbox for a moment, publish the
retained ``state`` ``disconnected`` and disconnect cleanly, so the Will does not fire.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from typing import Any, TextIO

from enclosure_agent.camera import Camera
from enclosure_agent.config import AgentConfig
from enclosure_agent.dispatcher import Dispatcher
from enclosure_agent.errors import StateDirLocked
from enclosure_agent.health import ClockMonitor, DiskSpace, disk_space
from enclosure_agent.journal import Journal
from enclosure_agent.link import Inbound, Link, LinkListener, Outgoing
from enclosure_agent.loop import EventLoop, Timer
from enclosure_agent.mqtt import link_from_config
from enclosure_agent.outbox import Outbox, OutboxPump
from enclosure_agent.preview import Previewer, PreviewSettings
from enclosure_agent.reconciler import Reconciler, clock_doubt
from enclosure_agent.recorder import CapturedFrame, FrameSource
from enclosure_agent.runtime import apply_runtime_changes
from enclosure_agent.sessions import Sessions
from enclosure_agent.status import StatusBuilder, new_boot_id
from schemas.codec import dump_message, parse_message
from schemas.commands import Ack
from schemas.enums import Lifecycle
from schemas.errors import MessageError, TopicError
from schemas.events import ClockSkew, Event, EventPayload
from schemas.messages import Desired, DesiredRecording, ServiceState
from schemas.topics import valid_publish_topic

__all__ = ["Agent", "ExitReason", "LinkFactory"]

log = logging.getLogger(__name__)

WillFor = Callable[[int], bytes]
"""The Will payload of the agent's connection number N (1, 2, ...)."""
LinkFactory = Callable[[AgentConfig, WillFor, LinkListener], Link]
"""Builds the MQTT link from the config, the Will payloads and the listener."""

STATUS_COALESCE_S = 0.05  # changes within this window go out in one status message
FLUSH_TIMEOUT_S = 3.0  # at shutdown, how long PUBACKs of queued events and acks are awaited
STATE_PUBACK_TIMEOUT_S = 2.0  # the retained "disconnected" before the DISCONNECT
CLOCK_RECONCILE_S = 0.5  # a change of the clock offset estimate beyond this re-judges windows


class ExitReason(StrEnum):
    STOPPED = "stopped"  # SIGTERM/SIGINT or stop()
    RESTART = "restart"  # restart_agent command
    REFUSED = "refused"  # the broker refused our credentials


class Agent(LinkListener):
    """One enclosure agent. ``run()`` blocks until ``stop()``; returns why it ended."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        link_factory: LinkFactory | None = None,
        source: FrameSource | None = None,
    ) -> None:
        self._config = config
        self.boot_id = new_boot_id()
        self.loop = EventLoop()
        self.topics = config.topics
        self.eid = config.enclosure_id
        config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock_file = self._lock_state_dir()
        self.journal = Journal(config.state_dir / "journal.json")
        self.outbox = Outbox(config.outbox_path)
        self.pump = OutboxPump(self.outbox)
        self.reconciler = Reconciler(self.journal.intent)
        self.clock = ClockMonitor(config.status.clock_skew_threshold_s)
        if self.journal.clock_offset_s is not None:  # until a fresh sample: the last run's
            self.clock.assume(self.journal.clock_offset_s)
        self.status = StatusBuilder(self.boot_id, config.camera.source, config.recording.root)
        self.camera = Camera(config.camera, lambda: self.loop.call_soon(self.status_soon), source)
        self.sessions = Sessions(
            self,
            camera=self.camera,
            journal=self.journal,
            loop=self.loop,
            emit=self.emit,
            on_change=self.status_soon,
            on_idle=self._sessions_idle,
        )
        self._errors: dict[str, str] = {}  # condition -> message, for status.last_error
        self.dispatcher = Dispatcher(self, self.journal, self._send_ack, self.loop.call_soon)
        self.previewer = Previewer(
            PreviewSettings(config.preview.fps, config.preview.width, config.preview.quality),
            self._fresh_frame_for_preview,
            self._send_preview,
        )
        self._timers: dict[str, Timer] = {}
        self._subscribe_mid: int | None = None
        self._last_ack_mid: int | None = None
        self.ready = threading.Event()  # set while subscribed (tests wait on it)
        self._refused: str | None = None
        self._exit = ExitReason.STOPPED
        self._connection = 0  # this boot's connections to the broker so far
        factory = link_factory or link_from_config
        self.link = factory(config, self._will, self)

    # -- lifecycle --------------------------------------------------------------------------------
    @property
    def config(self) -> AgentConfig:
        return self._config

    def run(self) -> ExitReason:
        """Run until ``stop()`` (or a restart command, or refused credentials)."""
        self.loop.call_soon(self._startup)
        try:
            self.loop.run()
        finally:
            self._shutdown()
        return self._exit

    def stop(self, reason: ExitReason = ExitReason.STOPPED) -> None:
        """Ask ``run()`` to shut down cleanly (thread-safe; signal handlers call this)."""
        if reason is not ExitReason.STOPPED:
            self._exit = reason
        self.loop.stop()

    def _lock_state_dir(self) -> TextIO:
        path = self._config.state_dir / "agent.lock"
        handle = path.open("a+", encoding="ascii")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            handle.close()
            raise StateDirLocked(
                f"another agent (pid {holder}) is running with state directory"
                f" {self._config.state_dir}"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        return handle

    def _startup(self) -> None:
        log.info(
            "agent %s starting (boot %s, camera %s, recordings in %s)",
            self.eid,
            self.boot_id,
            self._config.camera.source,
            self._config.recording.root,
        )
        if self._config.camera.keep_open:
            self.camera.start()
        wanted = self.reconciler.intent.wanted_recording(self.now())
        self.sessions.recover(wanted.session_id if wanted else None)
        self._reconcile()
        self.link.start()
        self._every("status", self._config.status.interval_s, self._status_tick)
        self._every("disk", self._config.recording.disk_check_interval_s, self.sessions.check_disk)

    def _shutdown(self) -> None:
        self._cancel_all_timers()
        self.sessions.shutdown()
        self.loop.drain()
        self.camera.close()
        if self.link.connected:
            self._flush(FLUSH_TIMEOUT_S)
            mid = self._publish_state(Lifecycle.DISCONNECTED)
            if mid is not None and not self.link.wait_published(mid, STATE_PUBACK_TIMEOUT_S):
                log.warning("no PUBACK for the disconnected state; disconnecting anyway")
        self.link.stop(STATE_PUBACK_TIMEOUT_S)
        self.ready.clear()
        self.outbox.close()
        with contextlib.suppress(OSError):
            self._lock_file.close()
        log.info("agent %s stopped (%s)", self.eid, self._exit)

    def _flush(self, timeout_s: float) -> None:
        """Give queued events and the last ack a moment to be acknowledged."""
        deadline = time.monotonic() + timeout_s
        self.pump.pump(self._publish_event)
        while self.pump.in_flight and time.monotonic() < deadline:
            self.loop.drain(0.05)
            self.pump.pump(self._publish_event)
        if self._last_ack_mid is not None:
            self.link.wait_published(self._last_ack_mid, max(0.1, deadline - time.monotonic()))

    # -- timers -----------------------------------------------------------------------------------
    def _every(self, name: str, period_s: float, task: Callable[[], None]) -> None:
        self._cancel(name)

        def tick() -> None:
            self._timers[name] = self.loop.call_later(period_s, tick)
            task()

        self._timers[name] = self.loop.call_later(period_s, tick)

    def _after(self, name: str, delay_s: float, task: Callable[[], None]) -> None:
        self._cancel(name)
        self._timers[name] = self.loop.call_later(delay_s, task)

    def _cancel(self, name: str) -> None:
        timer = self._timers.pop(name, None)
        if timer is not None:
            timer.cancel()

    def _cancel_all_timers(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    # -- events -----------------------------------------------------------------------------------
    def emit(self, payload: EventPayload, session_id: str | None = None) -> None:
        """Store an event in the outbox, then publish it (if connected) in order."""
        event = Event.of(payload, session_id=session_id)
        self.outbox.append(event)
        log.info("event %s %s %s", event.kind, session_id or "", event.event_id)
        if self.ready.is_set():
            self.pump.pump(self._publish_event)

    def _publish_event(self, payload: bytes) -> int | None:
        return self.link.publish(Outgoing(self.topics.events(self.eid), payload, qos=1))

    # -- status -----------------------------------------------------------------------------------
    def _will(self, connection: int) -> bytes:
        """The Will registered with connection number ``connection`` (the link's thread)."""
        return dump_message(
            self.status.state(Lifecycle.LOST, self._config.status.interval_s, connection)
        )

    def _publish_state(self, lifecycle: Lifecycle) -> int | None:
        message = self.status.state(
            lifecycle, self._config.status.interval_s, self._connection or None
        )
        return self.link.publish(
            Outgoing(self.topics.state(self.eid), dump_message(message), qos=1, retain=True)
        )

    def publish_status(self) -> None:
        self._cancel("status-soon")
        if not self.link.connected:
            return
        session = self.sessions.current
        capture = self.camera.state()
        live = self.reconciler.intent.live_view_until
        status = self.status.build(
            capture=capture,
            frame_size=self.camera.frame_size(),
            recording=session.view() if session is not None else None,
            clock=self.clock.status(),
            live_view_until=live,
            live_view_active="preview" in self._timers,
            last_error=self._last_error(),
        )
        self.link.publish(
            Outgoing(self.topics.status(self.eid), dump_message(status), qos=1, retain=True)
        )

    def status_soon(self) -> None:
        """Publish a status message shortly (changes close together share one)."""
        if "status-soon" not in self._timers:
            self._after("status-soon", STATUS_COALESCE_S, self.publish_status)

    def _last_error(self) -> str | None:
        if self._errors:
            return "; ".join(self._errors.values())
        error = self.sessions.last_error()
        if error:
            return error
        capture = self.camera.state()
        return capture.last_error if capture is not None else None

    def _status_tick(self) -> None:
        self.sessions.poll()
        self._reconcile()
        self.publish_status()

    # -- MQTT (LinkListener: called on the network thread) ----------------------------------------
    def link_connected(self, session_present: bool) -> None:
        self.loop.call_soon(lambda: self._connected(session_present))

    def link_disconnected(self, reason: str) -> None:
        self.ready.clear()
        self.loop.call_soon(
            lambda: log.warning("broker connection lost (%s); reconnecting", reason)
        )

    def link_refused(self, reason: str, fatal: bool) -> None:
        self.loop.call_soon(lambda: self._link_refused(reason, fatal))

    def link_message(self, message: Inbound) -> None:
        self.loop.call_soon(lambda: self._message(message))

    def link_published(self, mid: int, ok: bool, reason: str) -> None:
        self.loop.call_soon(lambda: self._published(mid, ok, reason))

    def link_subscribed(self, mid: int, granted: list[int]) -> None:
        self.loop.call_soon(lambda: self._subscribed(mid, granted))

    # -- MQTT, on the agent's thread --------------------------------------------------------------
    def _connected(self, session_present: bool) -> None:
        self._connection += 1  # the link counts alike: its Will carries this number
        log.info(
            "connected to the broker (connection %d, session present: %s)",
            self._connection,
            session_present,
        )
        self._errors.pop("broker", None)
        self._publish_state(Lifecycle.INIT)
        self.publish_status()
        topics = [
            self.topics.cmd(self.eid),
            self.topics.desired(self.eid),
            self.topics.service_state(),
        ]
        self._subscribe_mid = self.link.subscribe(topics)

    def _subscribed(self, mid: int, granted: list[int]) -> None:
        if mid != self._subscribe_mid:
            return
        refused = [code for code in granted if code >= 0x80]
        if refused:
            log.error("the broker refused some subscriptions: %s", granted)
        self._publish_state(Lifecycle.READY)
        self.ready.set()
        log.info("ready: subscribed to cmd, desired and service/state")
        self.pump.pump(self._publish_event)

    def _link_refused(self, reason: str, fatal: bool) -> None:
        self._errors["broker"] = f"broker refused the connection: {reason}"
        if not fatal:
            return
        self._refused = reason
        if self.sessions.current is None:
            log.error("broker credentials refused (%s); stopping", reason)
            self.stop(ExitReason.REFUSED)
        else:
            log.error(
                "broker credentials refused (%s); the recording continues, then the agent stops",
                reason,
            )

    def _published(self, mid: int, ok: bool, reason: str) -> None:
        if self.pump.acked(mid, ok, reason):
            if self.ready.is_set():
                self.pump.pump(self._publish_event)
        elif not ok:
            log.warning("the broker refused message %d: %s", mid, reason)

    def _message(self, message: Inbound) -> None:
        topic = message.topic
        if topic == self.topics.cmd(self.eid):
            self.dispatcher.receive(message)
        elif topic == self.topics.desired(self.eid):
            self._desired(message)
        elif topic == self.topics.service_state():
            self._service_state(message)
        else:
            log.debug("ignoring a message on %s", topic)

    def _desired(self, message: Inbound) -> None:
        if not message.payload:
            log.info("desired was cleared (empty retained message); keeping the current intent")
            return
        try:
            desired = parse_message(Desired, message.payload)
        except MessageError as exc:
            log.warning("ignoring an invalid desired document: %s", exc)
            return
        if self.reconciler.offer(desired):
            self.sessions.unblock()
            self.journal.set_intent(self.reconciler.intent)
            self._reconcile()
            self.status_soon()

    def _service_state(self, message: Inbound) -> None:
        try:
            state = parse_message(ServiceState, message.payload)
        except MessageError as exc:
            log.debug("ignoring an invalid service state: %s", exc)
            return
        if message.retain or not state.online:
            return  # a retained copy is old news: no clock information in it
        if not self.ready.is_set():
            # Delivered before this connection's SUBACK: it waited in our broker session while
            # we were away, so its ``at`` says nothing about the clocks.
            log.debug("ignoring a service/state copy queued while disconnected")
            return
        was_skewed, before = self.clock.skewed, self.clock.offset_s
        offset = self.clock.sample(state.at, message.received_at, message.received_monotonic)
        if offset is not None:
            self.emit(self._clock_skew(offset))
        after = self.clock.offset_s
        if before is None or (after is not None and abs(after - before) > CLOCK_RECONCILE_S):
            # Desired windows are judged by the service's clock: look again with the new offset.
            self.journal.set_clock_offset(after)
            self._reconcile()
        if self.clock.skewed != was_skewed:
            self.status_soon()

    def _clock_skew(self, offset: float) -> EventPayload:
        return ClockSkew(offset_s=offset, threshold_s=self.clock.threshold_s)

    def _send_ack(self, ack: Ack, inbound: Inbound) -> None:
        payload = dump_message(ack)
        correlation = inbound.correlation_data or str(ack.command_id).encode("ascii")
        ack_topic = self.topics.ack(self.eid)
        log.info("ack %s: %s %s", ack.command_id, ack.result, ack.detail or "")
        self._last_ack_mid = self.link.publish(
            Outgoing(ack_topic, payload, qos=1, correlation_data=correlation)
        )
        response = inbound.response_topic
        if response and response != ack_topic:
            try:
                valid_publish_topic(response)
            except TopicError as exc:
                log.warning("not answering on response topic %r: %s", response, exc)
                return
            self.link.publish(Outgoing(response, payload, qos=1, correlation_data=correlation))

    # -- recording --------------------------------------------------------------------------------
    def _reconcile(self) -> None:
        now = self.now()
        intent = self.reconciler.intent
        want = intent.wanted_recording(now)
        self._note_clock_doubt(now)
        sessions = self.sessions
        if want is not None and want.session_id in sessions.blocked:
            want = None
        current = sessions.current_id
        if current is not None and (want is None or want.session_id != current):
            sessions.stop(self.reconciler.stop_reason(current, now))
        if want is not None and sessions.current is None:
            sessions.start(want)
        self._update_preview(now)
        self._update_capture()
        upcoming = intent.next_change(now)
        if upcoming is None:
            self._cancel("reconcile")
        else:
            delay = max(0.0, (upcoming - self.now()).total_seconds())
            self._after("reconcile", delay, self._reconcile)

    def _note_clock_doubt(self, now: datetime) -> None:
        """Until an offset is measured the agent judges by its own clock; where that puts the
        wanted recording outside a window the service published it inside, say so
        (``status.last_error``) instead of staying silent."""
        doubt = None if self.clock.known else clock_doubt(self.reconciler.intent, now)
        if doubt != self._errors.get("clock"):
            if doubt is None:
                self._errors.pop("clock", None)
            else:
                log.warning("%s", doubt)
                self._errors["clock"] = doubt
            self.status_soon()

    def _sessions_idle(self) -> None:
        self._update_capture()
        if self._refused is not None and self.sessions.current is None:
            log.error("broker credentials refused (%s); stopping", self._refused)
            self.stop(ExitReason.REFUSED)

    # -- camera and preview -----------------------------------------------------------------------
    def _capture_needed(self) -> bool:
        return self._config.camera.keep_open or self.sessions.busy or "preview" in self._timers

    def _update_capture(self) -> None:
        if self._capture_needed():
            self.camera.start()
        elif self.camera.running:
            self.camera.close()

    def _update_preview(self, now: datetime) -> None:
        active = self.reconciler.intent.live_view_active(now)
        running = "preview" in self._timers
        if active and not running:
            self.camera.start()
            self.previewer.reset()
            self._every("preview", self.previewer.settings.period_s, self._preview_tick)
            log.info("live view on until %s", self.reconciler.intent.live_view_until)
            self.status_soon()
        elif not active and running:
            self._cancel("preview")
            log.info("live view off")
            self.status_soon()

    def _preview_tick(self) -> None:
        self.previewer.tick()

    def _fresh_frame_for_preview(self) -> CapturedFrame | None:
        return self.latest_frame(max(1.0, 2 * self.previewer.settings.period_s))

    def _send_preview(self, jpeg: bytes) -> bool:
        if not self.link.connected:
            return False
        mid = self.link.publish(Outgoing(self.topics.preview(self.eid), jpeg, qos=0))
        return mid is not None

    # -- AgentControl (command handlers) ----------------------------------------------------------
    def now(self) -> datetime:
        """The service's time as this enclosure knows it (its own until an offset is measured)."""
        return self.clock.service_now()

    def clock_basis(self) -> str:
        offset = self.clock.offset_s
        if offset is None:
            return "by this enclosure's clock (its offset from the service's is not measured yet)"
        return f"by the service's clock (this enclosure's clock is {offset:+.1f} s off it)"

    def current_session(self) -> str | None:
        return self.sessions.current_id

    def disk_space(self) -> DiskSpace:
        return disk_space(self._config.recording.root)

    def start_recording(self, plan: DesiredRecording) -> None:
        self.reconciler.start(plan)
        self.journal.set_intent(self.reconciler.intent)
        self.sessions.unblock(plan.session_id)
        self._reconcile()

    def stop_recording(self) -> None:
        self.reconciler.stop()
        self.journal.set_intent(self.reconciler.intent)
        self._reconcile()

    def set_live_view(self, until: datetime | None) -> None:
        self.reconciler.live_view(until)
        self.journal.set_intent(self.reconciler.intent)
        self._reconcile()

    def latest_frame(self, max_age_s: float) -> CapturedFrame | None:
        return self.camera.latest_frame(max_age_s)

    def wait_for_frame(self, timeout_s: float) -> CapturedFrame | None:
        frame = self.camera.wait_for_frame(timeout_s)
        self.loop.call_soon(self._update_capture)
        return frame

    def rebirth(self) -> None:
        self._publish_state(Lifecycle.READY if self.ready.is_set() else Lifecycle.INIT)
        self.publish_status()

    def apply_config(self, changes: dict[str, Any]) -> list[str]:
        config, notes = apply_runtime_changes(self._config, changes)
        self._config = config
        if "status_interval_s" in changes:
            self._every("status", config.status.interval_s, self._status_tick)
        if {"preview_fps", "preview_width"} & set(changes):
            self.previewer.settings = PreviewSettings(
                config.preview.fps, config.preview.width, config.preview.quality
            )
            if "preview" in self._timers:
                self._every("preview", self.previewer.settings.period_s, self._preview_tick)
        if "log_level" in changes:
            logging.getLogger("enclosure_agent").setLevel(config.agent.log_level)
        self.status_soon()
        return notes

    def request_restart(self) -> None:
        self._exit = ExitReason.RESTART
        self.loop.call_soon(self.loop.stop)
