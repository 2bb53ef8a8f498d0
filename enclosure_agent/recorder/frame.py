"""The captured frame and the protocol every camera source implements."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

__all__ = ["CapturedFrame", "FrameSource", "Image", "PixelFormat", "utc_now"]

Image = npt.NDArray[np.uint8]
"""An image: ``H x W`` for greyscale, ``H x W x 3`` (RGB order) for colour, always uint8."""


class PixelFormat(StrEnum):
    """The two layouts a source delivers; the values are FFmpeg pixel format names."""

    GREY = "gray"
    RGB = "rgb24"

    @property
    def channels(self) -> int:
        return 1 if self is PixelFormat.GREY else 3


def utc_now() -> datetime:
    """The current time as an aware UTC datetime."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class CapturedFrame:
    """One image with the moment it was captured.

    ``captured_at`` is wall-clock UTC (what file names, sidecars and cuts use);
    ``monotonic_ns`` is ``time.monotonic_ns()`` at capture (what presentation
    timestamps use, immune to clock steps). ``index`` is the source's own frame counter
    (test-pattern frame number, camera frame id, or decoded-frame count), so a gap in it
    shows a frame the source itself dropped.
    """

    image: Image
    captured_at: datetime
    monotonic_ns: int
    index: int

    @classmethod
    def now(cls, image: Image, index: int) -> CapturedFrame:
        """A frame stamped with the current time; the image is made read-only."""
        image.flags.writeable = False
        return cls(image, utc_now(), time.monotonic_ns(), index)

    @property
    def pixel_format(self) -> PixelFormat:
        return PixelFormat.GREY if self.image.ndim == 2 else PixelFormat.RGB

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def nbytes(self) -> int:
        return int(self.image.nbytes)


@runtime_checkable
class FrameSource(Protocol):
    """A camera: opened once, read frame by frame, closed; may be reopened after ``close``.

    ``width``, ``height`` and ``pixel_format`` are valid after ``open()``. ``read`` waits at
    most ``timeout_s`` and returns ``None`` when no frame came in that time; it raises
    ``SourceError`` when the source broke (the caller closes and reopens it). A source is
    used from one thread at a time.
    """

    @property
    def width(self) -> int: ...

    @property
    def height(self) -> int: ...

    @property
    def pixel_format(self) -> PixelFormat: ...

    @property
    def fps(self) -> float: ...

    def open(self) -> None: ...

    def read(self, timeout_s: float) -> CapturedFrame | None: ...

    def close(self) -> None: ...

    def describe(self) -> str: ...
