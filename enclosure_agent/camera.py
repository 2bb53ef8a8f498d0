"""The camera as the agent holds it: one ``Capture`` for recording, preview and snapshots.

The capture is opened once and shared. It is reopened only to change the frame rate (a
recording asking for another ``target_fps`` while nothing else records), and, with
``camera.keep_open = false``, closed while nothing needs it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from enclosure_agent.config import CameraSection
from enclosure_agent.recorder import Capture, CapturedFrame, CaptureState, FrameSource, open_source

__all__ = ["Camera"]

log = logging.getLogger(__name__)

FRESH_FRAME_S = 1.0  # a frame captured this recently counts as "now" for a snapshot


class Camera:
    """Owns the ``Capture``; ``on_change`` is called (capture thread) when its health changes."""

    def __init__(
        self,
        settings: CameraSection,
        on_change: Callable[[], None],
        source: FrameSource | None = None,
    ) -> None:
        self.settings = settings
        self._on_change = on_change
        self._fixed_source = source  # injected (tests): never rebuilt
        self.capture = self._new_capture(float(settings.fps))

    def _new_capture(self, fps: float) -> Capture:
        s = self.settings
        source = self._fixed_source or open_source(s.source, s.width, s.height, fps)
        return Capture(
            source, stall_timeout_s=s.stall_timeout_s, on_change=lambda state: self._on_change()
        )

    @property
    def running(self) -> bool:
        return self.capture.running

    @property
    def fps(self) -> float:
        return self.capture.source.fps

    def start(self) -> None:
        self.capture.start()

    def close(self) -> None:
        self.capture.close()

    def state(self) -> CaptureState | None:
        return self.capture.state() if self.capture.running else None

    def frame_size(self) -> tuple[int, int] | None:
        source = self.capture.source
        return (source.width, source.height) if source.width and source.height else None

    def use_fps(self, fps: float, *, busy: bool) -> None:
        """Reopen the camera at ``fps`` unless it runs at that rate or a recording uses it."""
        if self._fixed_source is not None or abs(self.fps - fps) < 1e-6:
            return
        if busy:
            log.warning("the camera stays at %g fps while a recording winds down", self.fps)
            return
        running = self.capture.running
        self.capture.close()
        self.capture = self._new_capture(fps)
        log.info("camera reopened at %g fps", fps)
        if running:
            self.capture.start()

    def latest_frame(self, max_age_s: float) -> CapturedFrame | None:
        """The latest frame if the camera runs and the frame is at most ``max_age_s`` old."""
        if not self.capture.running:
            return None
        frame = self.capture.latest_frame()
        if frame is None or time.monotonic_ns() - frame.monotonic_ns > max_age_s * 1e9:
            return None
        return frame

    def wait_for_frame(self, timeout_s: float) -> CapturedFrame | None:
        """A fresh frame, opening the camera if needed (any thread; blocks)."""
        capture = self.capture
        capture.start()
        since = time.monotonic_ns() - int(FRESH_FRAME_S * 1e9)
        return capture.wait_for_frame(newer_than_ns=since, timeout_s=timeout_s)
