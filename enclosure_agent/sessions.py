"""Which recording runs: starting, stopping and failing sessions, and recovering after a crash.

``Sessions`` holds the current ``SessionRecorder``, those still winding down (closing and
hashing their last segment), and the sessions that failed (disk low, write error) and are not
started again until the intent changes. It runs on the agent's thread.

Recovery: when the journal shows a recording in progress at start-up, the agent was killed
or restarted during it. If the intent still wants that session, the new recorder announces
``recording_resumed`` with the gap; otherwise ``recording_stopped`` ends it. Segments of the
interrupted run that were never reported get their ``segment_closed`` now (measured on a
worker thread: hashing a large file takes a while).

Disk faults: a recording stopped or refused because the disk was at or below its reserve (or
failed writing while it was) sets ``disk_error``, which the status reports as ``last_error``
(the service shows the enclosure as ``error``). The disk check keeps running while idle and
clears it once the disk is above the reserve again; the sessions that failed for the disk stay
blocked (not restarted until the intent changes) but are no longer reported as a fault.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from functools import partial
from typing import Protocol

from enclosure_agent.camera import Camera
from enclosure_agent.config import AgentConfig
from enclosure_agent.health import disk_space
from enclosure_agent.journal import Journal
from enclosure_agent.loop import EventLoop, Timer
from enclosure_agent.reconciler import StopReason
from enclosure_agent.recorder import RecorderError, SegmentInfo
from enclosure_agent.recording import Emit, Interruption, SessionRecorder, segment_closed_event
from enclosure_agent.recovery import last_frame_time, measure_segment, orphan_segments
from schemas.events import DiskLow, RecordingFailed, RecordingStopped
from schemas.messages import DesiredRecording

__all__ = ["Sessions"]

log = logging.getLogger(__name__)

ANNOUNCE_POLL_S = 0.2  # how soon recording_started follows the first written frame
SESSION_STOP_TIMEOUT_S = 60.0  # closing and hashing the last segment at shutdown


class ConfigSource(Protocol):
    @property
    def config(self) -> AgentConfig: ...


class Sessions:
    """The recordings of one agent (see the module docstring)."""

    def __init__(
        self,
        owner: ConfigSource,
        *,
        camera: Camera,
        journal: Journal,
        loop: EventLoop,
        emit: Emit,
        on_change: Callable[[], None],
        on_idle: Callable[[], None],
    ) -> None:
        self._owner = owner
        self._camera = camera
        self._journal = journal
        self._loop = loop
        self._emit = emit
        self._on_change = on_change
        self._on_idle = on_idle
        self.current: SessionRecorder | None = None
        self.winding_down: list[SessionRecorder] = []
        self.blocked: dict[str, str] = {}  # session id -> why it is not started again
        self.disk_error: str | None = None
        self.disk_blocked: set[str] = set()  # sessions blocked because the disk was full
        self._interruption: tuple[str, Interruption] | None = None
        self._announce: Timer | None = None

    @property
    def busy(self) -> bool:
        return self.current is not None or bool(self.winding_down)

    @property
    def current_id(self) -> str | None:
        return self.current.session_id if self.current is not None else None

    def last_error(self) -> str | None:
        if self.current is not None:
            error = self.current.stats().error
            if error:
                return error
        if self.disk_error:
            failed = [s for s in self.blocked if s in self.disk_blocked]
            if failed:
                return f"recording {failed[-1]} failed: {self.blocked[failed[-1]]}"
            return self.disk_error
        faults = [(s, r) for s, r in self.blocked.items() if s not in self.disk_blocked]
        if faults:
            session_id, reason = faults[-1]
            return f"recording {session_id} failed: {reason}"
        return None

    # -- recovery ---------------------------------------------------------------------------------
    def recover(self, wanted: str | None) -> None:
        """At start-up, before the first reconcile (``wanted``: the session the intent wants
        now): resume or end an interrupted recording, and report its unreported segments."""
        mark = self._journal.recording
        if mark is None:
            return
        session_id = mark.session_id
        if session_id == wanted:
            self._interruption = (session_id, Interruption(last_frame_time(mark)))
        else:
            self._emit(
                RecordingStopped(reason="interrupted by an agent restart; no longer wanted"),
                session_id,
            )
            self._journal.set_recording(None)
        orphans = orphan_segments(self._owner.config.recording.root, mark)
        if not orphans:
            return
        log.info("reporting %d segment(s) left by the interrupted run", len(orphans))

        def measure() -> None:
            for path in orphans:
                info = measure_segment(path)
                if info is not None:
                    self._loop.call_soon(partial(self._orphan_measured, session_id, info))

        threading.Thread(target=measure, name="orphan-segments", daemon=True).start()

    def _orphan_measured(self, session_id: str, info: SegmentInfo) -> None:
        self._emit(segment_closed_event(session_id, info), session_id)

    # -- start and stop ---------------------------------------------------------------------------
    def start(self, plan: DesiredRecording) -> None:
        """Start recording ``plan`` (nothing may be recording); failures are events."""
        config = self._owner.config
        disk = disk_space(config.recording.root)
        reserve = config.recording.disk_reserve_bytes
        if disk.free_bytes < reserve:
            reason = f"disk below reserve: {disk.free_bytes} bytes free, reserve {reserve} bytes"
            log.error("not starting %s: %s", plan.session_id, reason)
            self._emit(DiskLow(free_bytes=disk.free_bytes, reserve_bytes=reserve), None)
            self._fail_start(plan.session_id, reason)
            self._disk_fault(plan.session_id, reason)
            return
        self._camera.use_fps(float(plan.target_fps or config.camera.fps), busy=self.busy)
        interrupted = None
        if self._interruption is not None and self._interruption[0] == plan.session_id:
            interrupted = self._interruption[1]
        session = SessionRecorder(
            plan,
            config,
            self._camera.capture,
            journal=self._journal,
            emit=self._emit,
            post=self._loop.call_soon,
            on_done=self._done,
            on_change=self._on_change,
            interrupted=interrupted,
        )
        try:
            session.start()
        except RecorderError as exc:
            log.error("cannot start recording %s: %s", plan.session_id, exc)  # noqa: TRY400
            self._fail_start(plan.session_id, str(exc))
            return
        if interrupted is not None:
            self._interruption = None
        self.current = session
        self.disk_error = None
        self._poll_until_announced()
        self._on_change()

    def _fail_start(self, session_id: str, reason: str) -> None:
        if self.blocked.get(session_id) != reason:
            self._emit(RecordingFailed(reason=reason), session_id)
        self.blocked[session_id] = reason
        self._on_change()

    def _poll_until_announced(self) -> None:
        session = self.current
        if session is None or session.announced:
            self._announce = None
            return
        session.poll()
        self._announce = self._loop.call_later(ANNOUNCE_POLL_S, self._poll_until_announced)

    def stop(self, reason: StopReason, failure: str | None = None) -> None:
        """Stop the current recording (it winds down on its own threads)."""
        session = self.current
        if session is None:
            return
        log.info("stopping recording %s (%s)", session.session_id, failure or reason.value)
        session.stop(reason, failure)
        self.winding_down.append(session)
        self.current = None
        if self._announce is not None:
            self._announce.cancel()
            self._announce = None
        self._on_change()

    def _done(self, session: SessionRecorder) -> None:
        if session in self.winding_down:
            self.winding_down.remove(session)
        if session is self.current:  # ended by itself: a write error
            self.current = None
            self.blocked[session.session_id] = session.failure or "recording failed"
            self._write_error_on_full_disk(session.session_id)
        elif session.failure is not None:
            self.blocked[session.session_id] = session.failure
        self._on_change()
        self._on_idle()

    def shutdown(self, timeout_s: float = SESSION_STOP_TIMEOUT_S) -> None:
        """Stop everything for an agent shutdown (the journal keeps the mark: resumed later)."""
        sessions = [s for s in (self.current, *self.winding_down) if s is not None]
        if self.current is not None:
            self.stop(StopReason.SHUTDOWN)
        for session in sessions:
            if not session.wait(timeout_s):
                log.error("recording %s did not stop in time", session.session_id)

    def poll(self) -> None:
        """Every status interval: refresh the journal mark of the current recording."""
        if self.current is not None:
            self.current.poll()

    def check_disk(self) -> None:
        """While recording: free disk below the reserve stops it (``disk_low``, then failed).
        While idle: a disk fault clears once the disk is above the reserve again."""
        session = self.current
        if session is None and self.disk_error is None:
            return
        config = self._owner.config
        try:
            disk = disk_space(config.recording.root)
        except OSError as exc:
            log.warning("cannot check the free space of %s: %s", config.recording.root, exc)
            return
        reserve = config.recording.disk_reserve_bytes
        if session is None:
            if disk.free_bytes > reserve:
                log.info("disk back above the reserve: %d bytes free", disk.free_bytes)
                self.disk_error = None
                self._on_change()
            return
        if disk.free_bytes >= reserve:
            return
        reason = f"disk below reserve: {disk.free_bytes} bytes free, reserve {reserve} bytes"
        log.error("stopping recording %s: %s", session.session_id, reason)
        self._emit(DiskLow(free_bytes=disk.free_bytes, reserve_bytes=reserve), None)
        self.blocked[session.session_id] = reason
        self._disk_fault(session.session_id, reason)
        self.stop(StopReason.DESIRED, failure=reason)

    def unblock(self, session_id: str | None = None) -> None:
        """Let ``session_id`` (None: every session) be started again: the intent changed."""
        if session_id is None:
            self.blocked.clear()
            self.disk_blocked.clear()
        else:
            self.blocked.pop(session_id, None)
            self.disk_blocked.discard(session_id)

    def _disk_fault(self, session_id: str, reason: str) -> None:
        self.disk_error = reason
        self.disk_blocked.add(session_id)

    def _write_error_on_full_disk(self, session_id: str) -> None:
        """A write error with the disk at or below its reserve is the disk's fault: it clears
        when the disk does (other write errors stay reported until the intent changes)."""
        config = self._owner.config
        try:
            disk = disk_space(config.recording.root)
        except OSError:
            return
        reserve = config.recording.disk_reserve_bytes
        if disk.free_bytes <= reserve:
            self._disk_fault(
                session_id,
                f"disk full: {disk.free_bytes} bytes free, reserve {reserve} bytes",
            )
