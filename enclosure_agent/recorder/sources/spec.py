"""Turn a camera spec string (config ``camera``, CLI ``--camera``) into a source."""

from __future__ import annotations

import re

from enclosure_agent.recorder.errors import SourceSpecError
from enclosure_agent.recorder.frame import FrameSource

from .basler import BaslerSource
from .ffmpeg import FFmpegSource
from .testpattern import TestPatternSource

__all__ = ["SPEC_HELP", "open_source"]

SPEC_HELP = (
    "'testpattern', 'testpattern:grey', 'basler', 'basler:SERIAL', a V4L2 device "
    "such as '/dev/video0', or any file or URL FFmpeg can open"
)
_V4L2_DEVICE = re.compile(r"/dev/video\d+")
_SERIAL = re.compile(r"[A-Za-z0-9._-]+")
_GREY_WORDS = frozenset({"grey", "gray", "mono"})


def open_source(spec: str, width: int, height: int, fps: float) -> FrameSource:
    """A source for ``spec`` asking for ``width`` x ``height`` at ``fps`` (not opened yet).

    Raises ``SourceSpecError`` (a ``ValueError``) with the accepted forms when the spec is
    malformed; whether the camera exists is only known at ``open()``.
    """
    text = spec.strip()
    if not text:
        raise SourceSpecError(f"empty camera spec; use {SPEC_HELP}")
    kind, sep, arg = text.partition(":")
    lowered = kind.lower()
    if lowered == "testpattern":
        if sep and arg.lower() not in _GREY_WORDS:
            raise SourceSpecError(
                f"unknown test pattern variant {arg!r} in {spec!r}; use {SPEC_HELP}"
            )
        return TestPatternSource(width, height, fps, grey=bool(sep))
    if lowered == "basler":
        if sep and not _SERIAL.fullmatch(arg):
            raise SourceSpecError(f"bad Basler serial {arg!r} in {spec!r}; use {SPEC_HELP}")
        return BaslerSource(arg or None, width=width, height=height, fps=fps)
    if text.startswith("/dev/video") and not _V4L2_DEVICE.fullmatch(text):
        raise SourceSpecError(f"bad V4L2 device {spec!r}; use {SPEC_HELP}")
    if any(ch.isspace() or not ch.isprintable() for ch in text):
        raise SourceSpecError(f"camera spec {spec!r} contains spaces or control characters")
    return FFmpegSource(text, width=width, height=height, fps=fps)
