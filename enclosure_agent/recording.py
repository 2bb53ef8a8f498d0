"""One recording session as the agent drives it: recorder, journal mark and events.

``SessionRecorder`` wraps the recorder layer's ``Recorder`` for one session. It turns the
recorder's callbacks (run on the recorder's event thread) into tasks on the agent's thread,
and those into outbox events:

* ``recording_started`` once the first frame is written (so it names the first file), or
  ``recording_resumed`` with the gap when the journal shows this session was interrupted
  (crash, restart) and ``desired`` still wants it;
* ``segment_closed`` for every finished segment (path, span, frames, bytes, SHA-256);
* ``camera_stalled`` / ``camera_recovered`` while recording;
* ``recording_stopped`` at the end, or ``recording_failed`` when the disk ran low or a write
  failed. An agent shutdown stops it without either: the journal keeps the mark and the
  next start resumes the session.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from enclosure_agent.config import AgentConfig
from enclosure_agent.journal import Journal, RecordingMark
from enclosure_agent.reconciler import StopReason
from enclosure_agent.recorder import (
    Capture,
    EncoderSettings,
    Recorder,
    RecorderCallbacks,
    RecorderStats,
    RecordingSpec,
    SegmentInfo,
    SegmentPolicy,
    default_denoise,
)
from enclosure_agent.recorder import StopReason as RecorderStop
from enclosure_agent.status import RecordingView
from schemas.events import (
    CameraRecovered,
    CameraStalled,
    EventPayload,
    RecordingFailed,
    RecordingResumed,
    RecordingStarted,
    RecordingStopped,
    SegmentClosed,
)
from schemas.messages import DesiredRecording
from schemas.types import utc_now

__all__ = ["Emit", "SessionRecorder", "recording_spec"]

log = logging.getLogger(__name__)

Emit = Callable[[EventPayload, str | None], None]
Post = Callable[[Callable[[], None]], None]


def segment_policy(plan: DesiredRecording, config: AgentConfig) -> SegmentPolicy:
    """Hourly (UTC) if asked, else every ``segment_minutes``, else the configured default."""
    if plan.fragment_hourly:
        return SegmentPolicy.hourly()
    if plan.segment_minutes is not None:
        return SegmentPolicy.every_minutes(plan.segment_minutes)
    defaults = config.recording
    if defaults.segment_seconds is not None:
        return SegmentPolicy.every_seconds(defaults.segment_seconds)
    if defaults.fragment_hourly:
        return SegmentPolicy.hourly()
    return SegmentPolicy.every_minutes(defaults.segment_minutes)


def target_fps(plan: DesiredRecording, config: AgentConfig) -> float:
    return float(plan.target_fps or config.camera.fps)


def recording_spec(plan: DesiredRecording, config: AgentConfig) -> RecordingSpec:
    """What the recorder needs; no end time (the agent stops it, so ``desired`` can move it)."""
    settings = config.recording
    denoise = (settings.denoise or default_denoise()) if plan.apply_filter else None
    return RecordingSpec(
        root=settings.root,
        session_id=plan.session_id,
        enclosure_id=config.enclosure_id,
        file_prefix=plan.file_prefix,
        target_fps=target_fps(plan, config),
        segment_policy=segment_policy(plan, config),
        encoder=EncoderSettings(crf=settings.crf, preset=settings.preset, denoise=denoise),
        end_at=None,
    )


@dataclass(frozen=True, slots=True)
class Interruption:
    """Where an earlier run of the same session stopped (from the journal)."""

    last_frame_at: datetime


class SessionRecorder:
    """One session's recorder. Create, ``start()``, ``poll()`` now and then, ``stop(reason)``.

    ``on_done`` runs on the agent's thread after the last event of this session.
    """

    def __init__(
        self,
        plan: DesiredRecording,
        config: AgentConfig,
        capture: Capture,
        *,
        journal: Journal,
        emit: Emit,
        post: Post,
        on_done: Callable[[SessionRecorder], None],
        on_change: Callable[[], None],
        interrupted: Interruption | None = None,
    ) -> None:
        self.plan = plan
        self.session_id = plan.session_id
        self.target_fps = target_fps(plan, config)
        self.source = config.camera.source
        self._journal = journal
        self._emit = emit
        self._post = post
        self._on_done = on_done
        self._on_change = on_change
        self._interrupted = interrupted
        self.started_at = utc_now()
        self.announced = False
        self.stop_reason: StopReason | None = None
        self.failure: str | None = None
        self.finished = False
        self._stalled_since: datetime | None = None
        self._recorder = Recorder(
            capture,
            recording_spec(plan, config),
            RecorderCallbacks(
                on_segment_closed=lambda info: post(lambda: self._segment_closed(info)),
                on_stalled=lambda since: post(lambda: self._stalled(since)),
                on_recovered=lambda gap_s: post(lambda: self._recovered(gap_s)),
                on_failed=lambda reason: post(lambda: self._failed(reason)),
                on_stopped=lambda reason: post(lambda: self._stopped(reason)),
            ),
        )

    @property
    def stopping(self) -> bool:
        return self.stop_reason is not None

    def start(self) -> None:
        """Start recording (raises ``RecorderError`` if it cannot) and mark it in the journal."""
        self._recorder.start()
        self._journal.set_recording(
            RecordingMark(
                session_id=self.session_id,
                file_prefix=self.plan.file_prefix,
                started_at=self.started_at,
            )
        )

    def stats(self) -> RecorderStats:
        return self._recorder.stats()

    def view(self) -> RecordingView:
        return RecordingView(self.session_id, self.started_at, self.target_fps, self.stats())

    def poll(self) -> None:
        """Announce the recording once its first frame is written; refresh the journal mark."""
        stats = self._recorder.stats()
        if not self.announced and stats.current_file is not None and not self.stopping:
            self.announced = True
            self._announce(stats)
        if not self.stopping:
            file = str(stats.current_file) if stats.current_file else None
            self._journal.touch_recording(file, stats.last_frame_at)

    def _announce(self, stats: RecorderStats) -> None:
        first_frame_at = stats.segment_started_at or self.started_at
        interrupted = self._interrupted
        if interrupted is not None:
            gap = max(0.0, (first_frame_at - interrupted.last_frame_at).total_seconds())
            log.info("recording %s resumed after a gap of %.1f s", self.session_id, gap)
            self._emit(
                RecordingResumed(
                    gap_started_at=interrupted.last_frame_at,
                    gap_ended_at=first_frame_at,
                    gap_s=gap,
                ),
                self.session_id,
            )
        else:
            self._emit(
                RecordingStarted(
                    file=str(stats.current_file),
                    end_at=self.plan.end_at,
                    target_fps=self.target_fps,
                ),
                self.session_id,
            )
        self._on_change()

    def stop(self, reason: StopReason, failure: str | None = None) -> None:
        """Ask the recorder to stop after the frames captured so far (returns at once)."""
        if self.stop_reason is None:
            self.stop_reason = reason
            self.failure = failure
            if not self.announced and reason is not StopReason.SHUTDOWN:
                self._announce_if_started()
        self._recorder.request_stop()

    def _announce_if_started(self) -> None:
        stats = self._recorder.stats()
        if stats.current_file is not None:
            self.announced = True
            self._announce(stats)

    def wait(self, timeout_s: float) -> bool:
        """Wait for the recorder to finish (its callbacks are then queued for the agent)."""
        return self._recorder.wait(timeout_s)

    # -- recorder callbacks, on the agent's thread ------------------------------------------------
    def _segment_closed(self, info: SegmentInfo) -> None:
        self._emit(segment_closed_event(self.session_id, info), self.session_id)
        if self._owns_mark():
            self._journal.segment_reported(str(info.path))
        self._on_change()

    def _stalled(self, since: datetime) -> None:
        self._stalled_since = since
        self._emit(
            CameraStalled(source=self.source, last_frame_at=since, reason="no frame received"),
            None,
        )
        self._on_change()

    def _recovered(self, gap_s: float) -> None:
        # the camera may deliver buffered frames after a stall (then the frame gap is small);
        # report how long it gave nothing, as seen from here, if that is longer
        seen = (utc_now() - self._stalled_since).total_seconds() if self._stalled_since else 0.0
        self._stalled_since = None
        self._emit(CameraRecovered(source=self.source, stalled_s=max(0.0, gap_s, seen)), None)
        self._on_change()

    def _failed(self, reason: str) -> None:
        self.failure = self.failure or reason

    def _stopped(self, reason: RecorderStop) -> None:
        stats = self._recorder.stats()
        if self.stop_reason is StopReason.SHUTDOWN and reason is not RecorderStop.FAILED:
            if self._owns_mark():  # resumed at the next start
                self._journal.touch_recording(None, stats.last_frame_at)
        elif self.failure is not None or reason is RecorderStop.FAILED:
            self._emit(RecordingFailed(reason=self.failure or "recording failed"), self.session_id)
            self._clear_mark()
        else:
            why = self.stop_reason.value if self.stop_reason else "stopped"
            self._emit(
                RecordingStopped(
                    reason=why, recorded_s=stats.recorded_s, segments=stats.segments_closed
                ),
                self.session_id,
            )
            self._clear_mark()
        self.finished = True
        self._on_done(self)

    def _owns_mark(self) -> bool:
        mark = self._journal.recording
        return mark is not None and mark.started_at == self.started_at

    def _clear_mark(self) -> None:
        if self._owns_mark():
            self._journal.set_recording(None)


def segment_closed_event(session_id: str, info: SegmentInfo) -> SegmentClosed:
    return SegmentClosed(
        path=str(info.path),
        session_id=session_id,
        started_at=info.started_at,
        ended_at=info.ended_at,
        frames=info.frames,
        bytes=info.bytes,
        sha256=info.sha256,
        sidecar_path=str(info.sidecar_path),
    )


def session_dir(config: AgentConfig, session_id: str) -> Path:
    return config.recording.root / session_id
