"""A synthetic camera: a moving image with burned-in UTC time and frame number.

Besides the human-readable text, the top rows carry the frame number as a row of
``FRAME_CODE_BITS`` black/white blocks (most significant bit first), large enough to
survive near-lossless H.264, so tests decode frame numbers back from video
(:func:`read_frame_code`) and prove no frame was lost.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from enclosure_agent.recorder.errors import RecordingConfigError, SourceError
from enclosure_agent.recorder.font import GLYPH_HEIGHT, draw_text
from enclosure_agent.recorder.frame import CapturedFrame, Image, PixelFormat, utc_now

__all__ = ["FRAME_CODE_BITS", "TestPatternSource", "frame_code_block", "read_frame_code"]

FRAME_CODE_BITS = 32  # frame numbers up to 4e9: 4.5 years at 30 fps
MIN_WIDTH = 2 * (FRAME_CODE_BITS + 2)  # two pixels per code block is the least that survives
MIN_HEIGHT = 48  # room for the code row and one line of text
MAX_BACKLOG_S = 2.0  # like a camera's buffer ring: frames older than this are dropped, not queued
MOTION_PX_PER_FRAME = 4  # horizontal scroll speed, enough to see motion at any resolution
NOISE_FIELDS = 4  # precomputed noise fields; each frame XORs a randomly shifted window of one
NOISE_MARGIN = 64  # window shifts beyond x264's motion search range, so noise looks fresh
MAX_NOISE_BITS = 4  # up to 15 grey levels of noise; more would hide the picture


def frame_code_block(width: int) -> int:
    """Side in pixels of one frame-number block for a frame ``width`` wide (even, >= 2)."""
    return max(2, (width // (FRAME_CODE_BITS + 2)) // 2 * 2)


def read_frame_code(image: npt.NDArray[Any]) -> int:
    """Decode the frame number from the block row of a (possibly re-encoded) test-pattern image.

    Accepts greyscale ``H x W``, RGB ``H x W x 3`` or any planar luma plane; each block's
    centre is thresholded at mid-grey.
    """
    luma = image if image.ndim == 2 else image.mean(axis=2)
    block = frame_code_block(int(luma.shape[1]))
    centre = block // 2
    value = 0
    for bit in range(FRAME_CODE_BITS):
        x = block * (bit + 1)
        patch = luma[max(centre - 1, 0) : centre + 1, x + centre - 1 : x + centre + 1]
        value = (value << 1) | int(float(patch.mean()) >= 128.0)
    return value


class TestPatternSource:
    """A moving test image paced by the real clock at ``fps``.

    Frame ``n`` is "exposed" at ``t0 + n / fps`` (``t0`` = first ``open()``); ``read``
    returns it at or after that moment, stamped with that moment. Like a camera with a
    buffer ring, a late reader gets the backlog (up to ``MAX_BACKLOG_S``) in order, and
    frames older than that are dropped, which shows as a jump in the frame number. The
    frame clock keeps running across ``close()``/``open()``, so a pause shows as a gap.
    ``noise_bits`` > 0 adds per-pixel noise like a real sensor's (for benchmarks: clean
    synthetic images are much cheaper to encode than camera footage).
    """

    __test__ = False  # not a pytest test class despite the name

    def __init__(
        self,
        width: int = 640,
        height: int = 480,
        fps: float = 30.0,
        *,
        grey: bool = False,
        noise_bits: int = 0,
    ):
        if width < MIN_WIDTH or height < MIN_HEIGHT:
            raise RecordingConfigError(
                f"test pattern needs at least {MIN_WIDTH}x{MIN_HEIGHT}, got {width}x{height}"
            )
        if width % 2 or height % 2:
            raise RecordingConfigError(f"test pattern size must be even, got {width}x{height}")
        if not 0 < fps <= 1000:
            raise RecordingConfigError(f"test pattern fps must be in (0, 1000], got {fps}")
        self._width = width
        self._height = height
        self._fps = float(fps)
        self._format = PixelFormat.GREY if grey else PixelFormat.RGB
        if not 0 <= noise_bits <= MAX_NOISE_BITS:
            raise RecordingConfigError(
                f"noise bits must be in 0..{MAX_NOISE_BITS}, got {noise_bits}"
            )
        self._background = self._make_background()
        self._noise_offsets: list[list[int]] = []
        self._noise = self._make_noise(noise_bits) if noise_bits else None
        self._scale = max(1, height // 240)
        self._block = frame_code_block(width)
        self._opened = False
        self._t0_ns: int | None = None
        self._t0_utc: datetime | None = None
        self._next = 0
        self._closed = threading.Event()

    @property
    def width(self) -> int:
        return self._width

    @property
    def height(self) -> int:
        return self._height

    @property
    def pixel_format(self) -> PixelFormat:
        return self._format

    @property
    def fps(self) -> float:
        return self._fps

    def describe(self) -> str:
        kind = "grey" if self._format is PixelFormat.GREY else "colour"
        return f"test pattern {self._width}x{self._height} {kind} @ {self._fps:g} fps"

    def open(self) -> None:
        if self._t0_ns is None:
            self._t0_ns = time.monotonic_ns()
            self._t0_utc = utc_now()
        self._closed.clear()
        self._opened = True

    def close(self) -> None:
        self._opened = False
        self._closed.set()

    def read(self, timeout_s: float) -> CapturedFrame | None:
        if not self._opened or self._t0_ns is None or self._t0_utc is None:
            raise SourceError("test pattern read before open()")
        now = time.monotonic_ns()
        backlog_ns = now - self._due_ns(self._next)
        if backlog_ns > MAX_BACKLOG_S * 1e9:
            self._next = int((now - self._t0_ns) * self._fps / 1e9)
        wait_s = (self._due_ns(self._next) - now) / 1e9
        if wait_s > timeout_s:
            self._closed.wait(timeout_s)
            return None
        if wait_s > 0 and self._closed.wait(wait_s):
            return None
        number = self._next
        self._next += 1
        offset_ns = self._due_ns(number) - self._t0_ns
        captured_at = self._t0_utc + timedelta(microseconds=offset_ns // 1000)
        image = self.render(number, captured_at)
        image.flags.writeable = False
        return CapturedFrame(image, captured_at, self._t0_ns + offset_ns, number)

    def render(self, number: int, captured_at: datetime) -> Image:
        """The image of frame ``number`` (public so tests and benchmarks can render offline)."""
        shift = (number * MOTION_PX_PER_FRAME) % self._width
        image: Image = np.roll(self._background, shift, axis=1)
        self._draw_square(image, number)
        if self._noise is not None:
            dy, dx = self._noise_offsets[number % len(self._noise_offsets)]
            field = self._noise[number % NOISE_FIELDS]
            np.bitwise_xor(image, field[dy : dy + self._height, dx : dx + self._width], out=image)
        self._draw_code(image, number)
        scale = self._scale
        y = 2 * self._block + 2 * scale
        stamp = (
            captured_at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{captured_at.microsecond // 1000:03d}Z"
        )
        draw_text(image, stamp, 2 * scale, y, scale)
        draw_text(image, f"F#{number:09d}", 2 * scale, y + (GLYPH_HEIGHT + 3) * scale, scale)
        return image

    def _due_ns(self, number: int) -> int:
        assert self._t0_ns is not None
        return self._t0_ns + round(number * 1e9 / self._fps)

    def _make_background(self) -> Image:
        ys = np.linspace(0.0, 1.0, self._height, dtype=np.float32)[:, None]
        xs = np.linspace(0.0, 1.0, self._width, dtype=np.float32)[None, :]
        wave = 0.5 + 0.5 * np.sin(xs * 4 * np.pi)
        if self._format is PixelFormat.GREY:
            grey: Image = (40 + 150 * (0.6 * wave + 0.4 * ys)).astype(np.uint8)
            return grey
        red = 40 + 180 * wave * np.ones_like(ys)
        green = 40 + 180 * ys * np.ones_like(xs)
        blue = 40 + 180 * (1 - wave) * (1 - ys)
        return np.stack([red, green, blue], axis=2).astype(np.uint8)

    def _make_noise(self, bits: int) -> Image:
        """Random low-order bits, like sensor noise (XORed into the picture: cheap)."""
        rng = np.random.default_rng(0)
        shape = [NOISE_FIELDS, self._height + NOISE_MARGIN, self._width + NOISE_MARGIN]
        shape += list(self._background.shape[2:])
        self._noise_offsets = rng.integers(0, NOISE_MARGIN, (997, 2)).tolist()
        noise: Image = rng.integers(0, 1 << bits, shape, dtype=np.uint8)
        return noise

    def _draw_square(self, image: Image, number: int) -> None:
        side = max(8, self._height // 6)
        span_x, span_y = self._width - side, self._height - side
        # bounce: triangle waves of different periods on each axis
        px = number * 3 % (2 * span_x)
        py = number * 2 % (2 * span_y)
        x = px if px < span_x else 2 * span_x - px
        y = py if py < span_y else 2 * span_y - py
        image[y : y + side, x : x + side] = 255

    def _draw_code(self, image: Image, number: int) -> None:
        block = self._block
        image[: 2 * block] = 128
        for bit in range(FRAME_CODE_BITS):
            lit = (number >> (FRAME_CODE_BITS - 1 - bit)) & 1
            x = block * (bit + 1)
            image[:block, x : x + block] = 255 if lit else 0
