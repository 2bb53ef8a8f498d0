"""Building the ``status`` heartbeat and the lifecycle ``state`` messages.

``StatusBuilder`` numbers messages (``seq`` from 0 per boot, +1 each). The agent publishes one
every status interval and at once when something the service cares about changes.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from enclosure_agent import __version__
from enclosure_agent.health import system_status
from enclosure_agent.recorder import CaptureState, RecorderStats
from schemas.enums import Lifecycle
from schemas.messages import EnclosureStateMessage
from schemas.status import (
    CameraStatus,
    ClockStatus,
    LiveViewStatus,
    RecordingStatus,
    Status,
)

__all__ = ["RecordingView", "StatusBuilder", "new_boot_id"]


def new_boot_id() -> str:
    """A fresh id for this run of the agent."""
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class RecordingView:
    """The recording in progress as the status shows it."""

    session_id: str
    started_at: datetime
    target_fps: float
    stats: RecorderStats


class StatusBuilder:
    """Makes ``Status`` and ``EnclosureStateMessage`` messages for one boot."""

    def __init__(self, boot_id: str, source: str, recording_root: Path) -> None:
        self.boot_id = boot_id
        self.source = source
        self.recording_root = recording_root
        self._seq = 0

    def state(
        self, lifecycle: Lifecycle, status_interval_s: float, connection: int | None = None
    ) -> EnclosureStateMessage:
        return EnclosureStateMessage(
            state=lifecycle,
            boot_id=self.boot_id,
            agent_version=__version__,
            status_interval_s=status_interval_s,
            connection=connection,
        )

    def build(
        self,
        *,
        capture: CaptureState | None,
        frame_size: tuple[int, int] | None,
        recording: RecordingView | None,
        clock: ClockStatus,
        live_view_until: datetime | None,
        live_view_active: bool,
        last_error: str | None,
    ) -> Status:
        """The next status message (consumes a ``seq``)."""
        status = Status(
            seq=self._seq,
            boot_id=self.boot_id,
            camera=self._camera(capture, frame_size, recording),
            recording=self._recording(recording),
            system=system_status(self.recording_root),
            clock=clock,
            live_view=LiveViewStatus(
                active=live_view_active, until=live_view_until if live_view_active else None
            ),
            last_error=last_error,
        )
        self._seq += 1
        return status

    def _camera(
        self,
        capture: CaptureState | None,
        frame_size: tuple[int, int] | None,
        recording: RecordingView | None,
    ) -> CameraStatus:
        stats = recording.stats if recording else None
        connected = bool(capture and capture.connected and not capture.stalled)
        fps: float | None = None
        if stats is not None:
            fps = stats.measured_fps
        elif capture is not None:
            fps = capture.measured_fps
        width, height = frame_size if frame_size and connected else (None, None)
        return CameraStatus(
            source=self.source,
            connected=connected,
            recording=stats is not None and stats.state == "recording",
            measured_fps=round(fps, 3) if fps is not None else None,
            target_fps=recording.target_fps if recording else None,
            frames_written=stats.frames_written if stats else 0,
            last_frame_at=capture.last_frame_at if capture else None,
            width=width,
            height=height,
            error=capture.last_error if capture else None,
        )

    @staticmethod
    def _recording(recording: RecordingView | None) -> RecordingStatus | None:
        if recording is None:
            return None
        stats = recording.stats
        return RecordingStatus(
            session_id=recording.session_id,
            file=str(stats.current_file) if stats.current_file else "",
            segment_started_at=stats.segment_started_at or recording.started_at,
            recorded_s=round(stats.recorded_s, 3),
            segments_closed=stats.segments_closed,
            segment_frames=stats.segment_frames,
        )
