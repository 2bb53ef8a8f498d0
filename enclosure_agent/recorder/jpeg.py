"""Downscaled JPEG snapshots for live preview, encoded with PyAV's mjpeg encoder (no Pillow)."""

from __future__ import annotations

from fractions import Fraction

import av
import av.error

from .errors import RecordingConfigError, WriteError
from .frame import CapturedFrame, Image, PixelFormat

__all__ = ["DEFAULT_PREVIEW_QUALITY", "DEFAULT_PREVIEW_WIDTH", "encode_jpeg", "preview_size"]

DEFAULT_PREVIEW_WIDTH = 640  # enough to see the animal; ~30-60 kB per frame at quality 75
DEFAULT_PREVIEW_QUALITY = 75  # the usual web JPEG quality
JPEG_PIX_FMT = "yuvj420p"  # full-range 4:2:0, what every browser decodes
BEST_QSCALE, WORST_QSCALE = 2, 31  # FFmpeg's mjpeg quantiser range (lower is better)


def preview_size(width: int, height: int, max_width: int) -> tuple[int, int]:
    """``width`` x ``height`` scaled down to at most ``max_width``, aspect kept, both even."""
    if max_width < 2:
        raise RecordingConfigError(f"preview width must be >= 2, got {max_width}")
    if width <= max_width:
        return max(2, width // 2 * 2), max(2, height // 2 * 2)
    scaled_height = round(height * max_width / width)
    return max_width // 2 * 2, max(2, scaled_height // 2 * 2)


def _qscale(quality: int) -> int:
    """Map quality 1..100 (100 best) onto the mjpeg quantiser 31..2."""
    return round(WORST_QSCALE - (quality - 1) * (WORST_QSCALE - BEST_QSCALE) / 99)


def encode_jpeg(
    frame: CapturedFrame | Image,
    max_width: int = DEFAULT_PREVIEW_WIDTH,
    quality: int = DEFAULT_PREVIEW_QUALITY,
) -> bytes:
    """One JPEG of ``frame``, downscaled to at most ``max_width`` pixels wide.

    ``quality`` runs 1..100 like other JPEG encoders (mapped onto FFmpeg's quantiser).
    Cheap enough to call for every preview frame from any thread (a fresh encoder each call).
    """
    if not 1 <= quality <= 100:
        raise RecordingConfigError(f"JPEG quality must be in 1..100, got {quality}")
    image = frame.image if isinstance(frame, CapturedFrame) else frame
    source_format = PixelFormat.GREY if image.ndim == 2 else PixelFormat.RGB
    height, width = int(image.shape[0]), int(image.shape[1])
    out_width, out_height = preview_size(width, height, max_width)
    try:
        video_frame = av.VideoFrame.from_ndarray(image, format=source_format.value)
        scaled = video_frame.reformat(width=out_width, height=out_height, format=JPEG_PIX_FMT)
        context = av.CodecContext.create("mjpeg", "w")
        context.width = out_width
        context.height = out_height
        context.pix_fmt = JPEG_PIX_FMT
        context.time_base = Fraction(1, 1)
        qscale = str(_qscale(quality))
        context.options = {"qmin": qscale, "qmax": qscale}
        packets = context.encode(scaled) + context.encode(None)
    except av.error.FFmpegError as exc:
        raise WriteError(f"JPEG encoding failed: {exc}") from exc
    return b"".join(bytes(packet) for packet in packets)
