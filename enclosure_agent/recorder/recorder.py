"""The recorder: writes a capture's frames into segment files until its end time or stop.

Threads: ``Recorder.start()`` starts a recorder thread (``recorder:<session>``) that takes
frames from its :class:`~enclosure_agent.recorder.capture.FrameSubscription`, encodes them
and cuts segments, and an event thread (``recorder-events:<session>``) that finalizes
closed segments (fsync, size, SHA-256) and runs every callback, one at a time, in the
order things happened. Callbacks therefore never run on the caller's thread and must be
thread-safe and quick (hand the event to a queue or an outbox).

Cuts lose no frame: the first frame captured at or after a cut time is the first frame
of the next segment. A stall (no frame for the capture's stall timeout) closes the
current segment; the next frame after recovery opens a new one, so a gap in the footage
is always a file boundary. A write error (disk full, I/O error) closes what can be
closed, reports ``on_failed`` and stops; the segment it hit is then reported with what the
file holds, read back from it (``evidence``), not with what was handed to the encoder.
Files are never deleted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import TypeVar

from .capture import Capture, FrameSubscription, RecoveryNotice, StallNotice
from .errors import RecorderError, RecordingConfigError, WriteError
from .frame import CapturedFrame, utc_now
from .notifier import Notifier
from .rate import RateMeter
from .segments import SegmentPolicy, check_name_part
from .writer import EncoderSettings, FinishedSegment, SegmentInfo, SegmentWriter

__all__ = [
    "STOP_TIMEOUT_S",
    "Recorder",
    "RecorderCallbacks",
    "RecorderState",
    "RecorderStats",
    "RecordingSpec",
    "StopReason",
]

log = logging.getLogger(__name__)

_T = TypeVar("_T")

POLL_S = 0.2  # longest the recorder thread waits for a frame before checking stop/end time
STOP_TIMEOUT_S = 60.0  # stop() waits this long: flushing plus hashing a multi-GB hourly segment
MAX_TARGET_FPS = 1000.0  # beyond any camera the enclosures use; catches unit mistakes


class RecorderState(StrEnum):
    IDLE = "idle"  # created, not started
    WAITING = "waiting"  # started, no frame yet
    RECORDING = "recording"
    STALLED = "stalled"  # the camera delivers nothing; the capture is reopening it
    STOPPED = "stopped"  # ended at the end time or on stop()
    FAILED = "failed"  # ended by a write error


class StopReason(StrEnum):
    END_TIME = "end_time"
    REQUESTED = "requested"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class RecordingSpec:
    """What to record: where, named how, cut how, encoded how, and until when."""

    root: Path
    session_id: str
    enclosure_id: str
    file_prefix: str = ""
    target_fps: float = 30.0  # the stream's nominal rate; frames keep their true times
    segment_policy: SegmentPolicy = field(default_factory=SegmentPolicy.hourly)
    encoder: EncoderSettings = field(default_factory=EncoderSettings)
    end_at: datetime | None = None  # aware; None records until stop()

    def __post_init__(self) -> None:
        check_name_part(self.session_id, "session id")
        check_name_part(self.enclosure_id, "enclosure id")
        check_name_part(self.file_prefix, "file prefix", allow_empty=True)
        if not 0 < self.target_fps <= MAX_TARGET_FPS:
            raise RecordingConfigError(
                f"target fps must be in (0, {MAX_TARGET_FPS:g}], got {self.target_fps}"
            )
        if self.end_at is not None and self.end_at.utcoffset() is None:
            raise RecordingConfigError("end time must be timezone-aware")


@dataclass(frozen=True, slots=True)
class RecorderCallbacks:
    """Optional callbacks, all run on the recorder's event thread, in order."""

    on_segment_closed: Callable[[SegmentInfo], None] | None = None
    on_stalled: Callable[[datetime], None] | None = None  # since: last frame (or start), UTC
    on_recovered: Callable[[float], None] | None = None  # gap_s: last frame to next frame
    on_failed: Callable[[str], None] | None = None  # reason
    on_stopped: Callable[[StopReason], None] | None = None  # always last


@dataclass(frozen=True, slots=True)
class RecorderStats:
    """A snapshot for status reports."""

    state: RecorderState
    frames_written: int
    frames_dropped: int  # frames the encoder fell too far behind to take
    measured_fps: float  # written frames per second over the last few seconds
    last_frame_at: datetime | None
    current_file: Path | None
    segment_started_at: datetime | None
    recorded_s: float  # time covered by written frames, over all segments
    segments_closed: int
    segment_frames: int  # frames in the open segment file (0: none open)
    error: str | None


class Recorder:
    """Records one session from a :class:`Capture` (see the module docstring for threads)."""

    def __init__(
        self,
        capture: Capture,
        spec: RecordingSpec,
        callbacks: RecorderCallbacks | None = None,
    ) -> None:
        self._capture = capture
        self._spec = spec
        self._callbacks = callbacks or RecorderCallbacks()
        self._policy = spec.segment_policy
        self._frame_period_s = 1.0 / spec.target_fps
        self._lock = threading.Lock()
        self._stop_ns: int | None = None
        self._stop_requested = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._notifier: Notifier | None = None
        self._subscription: FrameSubscription | None = None
        self._writer: SegmentWriter | None = None
        self._next_cut: datetime | None = None
        self._rate = RateMeter()
        self._segments: list[SegmentInfo] = []
        # stats, guarded by _lock
        self._state = RecorderState.IDLE
        self._frames = 0
        self._last_frame_at: datetime | None = None
        self._closed_span_s = 0.0
        self._error: str | None = None

    @property
    def spec(self) -> RecordingSpec:
        return self._spec

    @property
    def segments(self) -> tuple[SegmentInfo, ...]:
        """Segments closed and hashed so far, in order."""
        with self._lock:
            return tuple(self._segments)

    @property
    def done(self) -> bool:
        """True once stopped and every callback has run."""
        return self._done.is_set()

    def start(self) -> None:
        """Attach to the capture (starting it if needed) and begin recording.

        Raises ``RecordingConfigError`` when the end time has passed and ``WriteError`` when
        the session directory cannot be created; neither leaves anything running.
        """
        if self._thread is not None:
            raise RecordingConfigError("a recorder can be started only once")
        now = utc_now()
        if self._spec.end_at is not None and self._spec.end_at <= now:
            raise RecordingConfigError(f"end time {self._spec.end_at.isoformat()} has passed")
        session_dir = self._spec.root / self._spec.session_id
        try:
            session_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WriteError(f"cannot create {session_dir}: {exc}") from exc
        with self._lock:
            self._state = RecorderState.WAITING
        name = self._spec.session_id
        self._notifier = Notifier(f"recorder-events:{name}")
        self._subscription = self._capture.subscribe()
        self._capture.start()
        self._thread = threading.Thread(target=self._run, name=f"recorder:{name}", daemon=True)
        self._thread.start()
        log.info(
            "recording %s to %s (%s, %s)",
            name,
            session_dir,
            self._policy.describe(),
            self._capture.source.describe(),
        )

    def request_stop(self) -> None:
        """Ask the recorder to stop after the frames captured until now; returns at once."""
        with self._lock:
            if self._stop_ns is None:
                self._stop_ns = time.monotonic_ns()
        self._stop_requested.set()

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> bool:
        """Stop, close the last segment, run the remaining callbacks; True if all done in time."""
        self.request_stop()
        return self.wait(timeout_s)

    def wait(self, timeout_s: float | None = None) -> bool:
        """Wait until the recording ended (end time, stop or failure) and callbacks ran."""
        if self._thread is None:
            return True
        return self._done.wait(timeout_s)

    def stats(self) -> RecorderStats:
        with self._lock:
            writer = self._writer
            current_span = 0.0
            if writer is not None and writer.started_at and writer.ended_at:
                current_span = (
                    writer.ended_at - writer.started_at
                ).total_seconds() + self._frame_period_s
            return RecorderStats(
                state=self._state,
                frames_written=self._frames,
                frames_dropped=self._subscription.dropped if self._subscription else 0,
                measured_fps=self._rate.rate(time.monotonic_ns()),
                last_frame_at=self._last_frame_at,
                current_file=writer.path if writer else None,
                segment_started_at=writer.started_at if writer else None,
                recorded_s=self._closed_span_s + current_span,
                segments_closed=len(self._segments),
                segment_frames=writer.frames if writer else 0,
                error=self._error,
            )

    # -- recorder thread ------------------------------------------------------------------

    def _run(self) -> None:
        assert self._subscription is not None
        assert self._notifier is not None
        reason = StopReason.REQUESTED
        failure: str | None = None
        try:
            reason = self._loop(self._subscription)
        except RecorderError as exc:
            failure = str(exc)
        except Exception as exc:  # a bug must still close the file and report
            log.exception("recorder %s crashed", self._spec.session_id)
            failure = f"recorder crashed: {exc!r}"
        try:
            self._close_segment()
        except WriteError as exc:
            failure = failure or str(exc)
        self._capture.unsubscribe(self._subscription)
        if failure is not None:
            reason = StopReason.FAILED
            log.error("recording %s failed: %s", self._spec.session_id, failure)
            with self._lock:
                self._state = RecorderState.FAILED
                self._error = failure
            self._notify(self._callbacks.on_failed, failure)
        else:
            with self._lock:
                self._state = RecorderState.STOPPED
        log.info("recording %s ended (%s)", self._spec.session_id, reason)
        self._notify(self._callbacks.on_stopped, reason)
        self._notifier.post(self._done.set)
        self._notifier.close()

    def _loop(self, subscription: FrameSubscription) -> StopReason:
        end_at = self._spec.end_at
        while True:
            item = subscription.get(POLL_S)
            if isinstance(item, CapturedFrame):
                stop_ns = self._stop_ns
                if stop_ns is not None and item.monotonic_ns > stop_ns:
                    return StopReason.REQUESTED
                if end_at is not None and item.captured_at >= end_at:
                    return StopReason.END_TIME
                self._write(item)
            elif isinstance(item, StallNotice):
                self._stalled(item)
            elif isinstance(item, RecoveryNotice):
                self._recovered(item)
            elif self._stop_requested.is_set():
                return StopReason.REQUESTED
            elif end_at is not None and utc_now() >= end_at:
                return StopReason.END_TIME
            elif not self._capture.running:
                raise RecorderError("the camera capture was closed while recording")

    def _write(self, frame: CapturedFrame) -> None:
        writer = self._writer
        if (
            writer is not None
            and self._next_cut is not None
            and frame.captured_at >= self._next_cut
        ):
            self._close_segment()
            writer = None
        elif writer is not None and not writer.accepts(frame):
            log.warning("frame size or format changed; starting a new segment")
            self._close_segment()
            writer = None
        if writer is None:
            if self._policy.anchor is None:
                # "every N from the recording start" counts from the first frame written, not
                # from start(): a camera slow to deliver would otherwise leave a first file of
                # a few frames (named in the same second as the next, which then sorts first).
                self._policy = self._policy.starting_at(frame.captured_at)
            writer = SegmentWriter.create(
                self._spec.root,
                session_id=self._spec.session_id,
                file_prefix=self._spec.file_prefix,
                enclosure_id=self._spec.enclosure_id,
                started_at=frame.captured_at,
                width=frame.width,
                height=frame.height,
                pixel_format=frame.pixel_format,
                fps=self._spec.target_fps,
                encoder=self._spec.encoder,
            )
            self._next_cut = self._policy.next_cut(frame.captured_at)
            log.info("segment %s started (next cut %s)", writer.path, self._next_cut.isoformat())
            with self._lock:
                self._writer = writer
        writer.write(frame)
        with self._lock:
            self._frames += 1
            self._last_frame_at = frame.captured_at
            self._rate.add(frame.monotonic_ns)
            self._state = RecorderState.RECORDING

    def _close_segment(self) -> None:
        writer = self._writer
        if writer is None:
            return
        error: WriteError | None = None
        finished: FinishedSegment | None = None
        try:
            finished = writer.finish()
        except WriteError as exc:
            error = exc
            if writer.frames or writer.started_at is not None:
                finished = writer.finished()  # damaged: measured from the file
        with self._lock:
            self._writer = None
            if finished is not None:
                span = (finished.ended_at - finished.started_at).total_seconds()
                self._closed_span_s += span + self._frame_period_s
        if finished is not None:
            assert self._notifier is not None
            self._notifier.post(partial(self._finalize, finished))
        if error is not None:
            raise error

    def _finalize(self, finished: FinishedSegment) -> None:
        """On the event thread: fsync and hash, record, then report the segment."""
        try:
            info = finished.finalize()
        except WriteError as exc:
            log.exception("segment could not be finalized")
            with self._lock:
                self._error = str(exc)
            return
        with self._lock:
            self._segments.append(info)
            if info.frames != finished.frames:  # a write error: count what the file holds
                self._frames -= finished.frames - info.frames
                self._closed_span_s -= (finished.ended_at - info.ended_at).total_seconds()
        log.info("segment %s closed: %d frames, %d bytes", info.path, info.frames, info.bytes)
        callback = self._callbacks.on_segment_closed
        if callback is not None:
            callback(info)

    def _stalled(self, notice: StallNotice) -> None:
        with self._lock:
            self._state = RecorderState.STALLED
            self._error = f"camera stalled: no frame since {notice.since.isoformat()}"
            self._rate.reset()
        self._notify(self._callbacks.on_stalled, notice.since)
        self._close_segment()

    def _recovered(self, notice: RecoveryNotice) -> None:
        with self._lock:
            self._state = RecorderState.RECORDING
            self._error = None
        self._notify(self._callbacks.on_recovered, notice.gap_s)

    def _notify(self, callback: Callable[[_T], None] | None, value: _T) -> None:
        if callback is not None:
            assert self._notifier is not None
            self._notifier.post(partial(callback, value))
