"""A wrapper that makes any source stop delivering frames on demand (tests, demos)."""

from __future__ import annotations

import threading
import time

from enclosure_agent.recorder.frame import CapturedFrame, FrameSource, PixelFormat

__all__ = ["StallableSource"]


class StallableSource:
    """Wraps a source; ``stall()`` makes it stay open but deliver nothing until ``recover()``.

    While stalled the inner source is not read (a real camera that hangs does not buffer
    either), so the frames of the pause are lost at the camera and show as a jump in
    ``CapturedFrame.index``. ``opens`` counts ``open()`` calls so tests can see reopening.
    """

    def __init__(self, inner: FrameSource) -> None:
        self._inner = inner
        self._flowing = threading.Event()
        self._flowing.set()
        self._lock = threading.Lock()
        self._opens = 0

    @property
    def inner(self) -> FrameSource:
        return self._inner

    @property
    def opens(self) -> int:
        with self._lock:
            return self._opens

    @property
    def stalled(self) -> bool:
        return not self._flowing.is_set()

    @property
    def width(self) -> int:
        return self._inner.width

    @property
    def height(self) -> int:
        return self._inner.height

    @property
    def pixel_format(self) -> PixelFormat:
        return self._inner.pixel_format

    @property
    def fps(self) -> float:
        return self._inner.fps

    def describe(self) -> str:
        return f"stallable {self._inner.describe()}"

    def stall(self) -> None:
        self._flowing.clear()

    def recover(self) -> None:
        self._flowing.set()

    def open(self) -> None:
        with self._lock:
            self._opens += 1
        self._inner.open()

    def close(self) -> None:
        self._inner.close()

    def read(self, timeout_s: float) -> CapturedFrame | None:
        started = time.monotonic()
        if not self._flowing.wait(timeout_s):
            return None
        remaining = max(0.0, timeout_s - (time.monotonic() - started))
        return self._inner.read(remaining)
