"""Errors raised by the recorder layer.

::

    RecorderError                     base of everything below
    ├── SourceError                   a camera source cannot deliver frames
    │   ├── SourceSpecError           the source spec string is malformed (also a ValueError)
    │   ├── SourceOpenError           the camera, device, file or stream cannot be opened
    │   └── SourceUnavailableError    an optional driver (pypylon for Basler) is not installed
    ├── RecordingConfigError          a recording request or encoder setting is invalid (ValueError)
    └── WriteError                    writing or finishing a segment failed (disk full, I/O error)
"""

from __future__ import annotations

__all__ = [
    "RecorderError",
    "RecordingConfigError",
    "SourceError",
    "SourceOpenError",
    "SourceSpecError",
    "SourceUnavailableError",
    "WriteError",
]


class RecorderError(Exception):
    """Base class of every error raised by ``enclosure_agent.recorder``."""


class SourceError(RecorderError):
    """A camera source cannot deliver frames."""


class SourceSpecError(SourceError, ValueError):
    """A camera source spec such as ``basler:`` or ``testpattern:blue`` is malformed."""


class SourceOpenError(SourceError):
    """The camera, device, file or stream cannot be opened."""


class SourceUnavailableError(SourceError):
    """An optional camera driver is not installed (for example pypylon for Basler cameras)."""


class RecordingConfigError(RecorderError, ValueError):
    """A recording request or an encoder setting is invalid."""


class WriteError(RecorderError):
    """Writing, flushing or finishing a segment file failed (disk full, I/O error)."""
