"""The recorder layer of the enclosure agent: cameras, segments, encoding, proof of recording.

No MQTT here. The agent opens a camera once with :class:`Capture` (for preview and
recording alike), records sessions with :class:`Recorder`, and turns the callbacks into
events. See docs/recording.md for the file layout and the reasons behind the defaults.
"""

from __future__ import annotations

from .capture import (
    BACKOFF_INITIAL_S,
    BACKOFF_MAX_S,
    STALL_TIMEOUT_S,
    Capture,
    CaptureState,
    FrameSubscription,
    RecoveryNotice,
    StallNotice,
)
from .errors import (
    RecorderError,
    RecordingConfigError,
    SourceError,
    SourceOpenError,
    SourceSpecError,
    SourceUnavailableError,
    WriteError,
)
from .frame import CapturedFrame, FrameSource, PixelFormat
from .jpeg import encode_jpeg
from .recorder import (
    Recorder,
    RecorderCallbacks,
    RecorderState,
    RecorderStats,
    RecordingSpec,
    StopReason,
)
from .segments import SegmentPolicy, segment_path, sidecar_path_for
from .sidecar import SidecarRow, read_sidecar
from .sources import (
    BaslerSource,
    FFmpegSource,
    StallableSource,
    TestPatternSource,
    open_source,
    read_frame_code,
)
from .writer import EncoderSettings, SegmentInfo, SegmentWriter, default_denoise

__all__ = [
    "BACKOFF_INITIAL_S",
    "BACKOFF_MAX_S",
    "STALL_TIMEOUT_S",
    "BaslerSource",
    "Capture",
    "CaptureState",
    "CapturedFrame",
    "EncoderSettings",
    "FFmpegSource",
    "FrameSource",
    "FrameSubscription",
    "PixelFormat",
    "Recorder",
    "RecorderCallbacks",
    "RecorderError",
    "RecorderState",
    "RecorderStats",
    "RecordingConfigError",
    "RecordingSpec",
    "RecoveryNotice",
    "SegmentInfo",
    "SegmentPolicy",
    "SegmentWriter",
    "SidecarRow",
    "SourceError",
    "SourceOpenError",
    "SourceSpecError",
    "SourceUnavailableError",
    "StallNotice",
    "StallableSource",
    "StopReason",
    "TestPatternSource",
    "WriteError",
    "default_denoise",
    "encode_jpeg",
    "open_source",
    "read_frame_code",
    "read_sidecar",
    "segment_path",
    "sidecar_path_for",
]
