"""Camera sources: the test pattern, FFmpeg inputs, Basler cameras, and the spec parser."""

from __future__ import annotations

from .basler import BaslerSource
from .ffmpeg import FFmpegSource
from .spec import SPEC_HELP, open_source
from .stallable import StallableSource
from .testpattern import FRAME_CODE_BITS, TestPatternSource, read_frame_code

__all__ = [
    "FRAME_CODE_BITS",
    "SPEC_HELP",
    "BaslerSource",
    "FFmpegSource",
    "StallableSource",
    "TestPatternSource",
    "open_source",
    "read_frame_code",
]
