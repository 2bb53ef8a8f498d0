"""Live preview: downscaled JPEGs of the latest camera frame on ``preview`` at QoS 0.

Active while the intent's ``live_view_until`` is in the future (a viewer keeps extending it
through ``desired`` or ``start_live_view``), so it stops by itself when the viewer's
keepalive lapses. Frames come from the capture's latest-frame tap: the camera is opened once
for recording and preview alike, and previews work whether or not a recording runs. A frame
already sent is not sent again (a stalled camera sends nothing).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from enclosure_agent.recorder import CapturedFrame, RecorderError, encode_jpeg

__all__ = ["PreviewSettings", "Previewer"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PreviewSettings:
    fps: float
    width: int
    quality: int

    @property
    def period_s(self) -> float:
        return 1.0 / self.fps


class Previewer:
    """Encodes and hands out one preview frame per ``tick()`` (the agent times the ticks)."""

    def __init__(
        self,
        settings: PreviewSettings,
        latest_frame: Callable[[], CapturedFrame | None],
        send: Callable[[bytes], bool],
    ) -> None:
        self.settings = settings
        self._latest_frame = latest_frame
        self._send = send
        self._last_sent_ns: int | None = None
        self.frames_sent = 0
        self._failing = False

    def tick(self) -> bool:
        """Send the latest frame if it is new; True if one was sent."""
        frame = self._latest_frame()
        if frame is None or frame.monotonic_ns == self._last_sent_ns:
            return False
        try:
            jpeg = encode_jpeg(frame, self.settings.width, self.settings.quality)
        except RecorderError as exc:
            if not self._failing:
                log.warning("preview frame could not be encoded: %s", exc)
            self._failing = True
            return False
        if self._failing:
            log.info("preview frames encode again")
        self._failing = False
        if not self._send(jpeg):
            return False
        self._last_sent_ns = frame.monotonic_ns
        self.frames_sent += 1
        return True

    def reset(self) -> None:
        self._last_sent_ns = None
