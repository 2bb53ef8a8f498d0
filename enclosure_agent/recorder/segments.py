"""When segments are cut and what their files are called.

Cuts are computed on aware datetimes converted to UTC, never on local time: the top of
every UTC hour (``hourly``), or every N minutes/seconds aligned to the recording start.
Daylight-saving changes therefore cannot shift, skip or double a cut.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path

from .errors import RecordingConfigError

__all__ = [
    "SEGMENT_EXTENSION",
    "SIDECAR_SUFFIX",
    "Alignment",
    "SegmentPolicy",
    "check_name_part",
    "segment_path",
    "sidecar_path_for",
    "utc_stamp",
]

SEGMENT_EXTENSION = "mkv"  # Matroska: stays playable when the writer dies mid-segment
SIDECAR_SUFFIX = ".frames.csv"  # beside the video: ``<stem>.frames.csv``
STAMP_FORMAT = "%Y%m%dT%H%M%SZ"  # compact ISO 8601 basic format, sorts chronologically
MAX_NAME_PART = 100  # keeps the whole file name well under the 255-byte limit of most filesystems
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FORBIDDEN = re.compile(r"[/\\:*?\"<>|\x00-\x1f\x7f]")


class Alignment(StrEnum):
    """What the cut grid is aligned to."""

    UTC_CLOCK = "utc_clock"  # multiples of the period since the Unix epoch (hourly: :00 UTC)
    RECORDING_START = "recording_start"  # multiples of the period since the recording began


def _require_aware(moment: datetime, what: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise RecordingConfigError(f"{what} must be timezone-aware, got naive {moment.isoformat()}")
    return moment.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class SegmentPolicy:
    """A grid of cut times: every ``period``, aligned to UTC clock or to ``anchor``.

    Build with :meth:`hourly`, :meth:`every_minutes` or :meth:`every_seconds` (for tests);
    a ``RECORDING_START`` policy must be anchored with :meth:`starting_at` before use.
    """

    period: timedelta
    alignment: Alignment
    anchor: datetime | None = None

    def __post_init__(self) -> None:
        if self.period < timedelta(seconds=1) or self.period % timedelta(seconds=1):
            raise RecordingConfigError(
                f"segment period must be whole seconds >= 1, got {self.period}"
            )
        if self.anchor is not None:
            object.__setattr__(self, "anchor", _require_aware(self.anchor, "segment anchor"))

    @classmethod
    def hourly(cls) -> SegmentPolicy:
        """Cut at the top of every hour in UTC."""
        return cls(timedelta(hours=1), Alignment.UTC_CLOCK)

    @classmethod
    def every_minutes(cls, minutes: int) -> SegmentPolicy:
        """Cut every ``minutes`` after the recording start."""
        if minutes < 1:
            raise RecordingConfigError(f"segment minutes must be >= 1, got {minutes}")
        return cls(timedelta(minutes=minutes), Alignment.RECORDING_START)

    @classmethod
    def every_seconds(cls, seconds: int) -> SegmentPolicy:
        """Cut every ``seconds`` after the recording start (tests and demos)."""
        if seconds < 1:
            raise RecordingConfigError(f"segment seconds must be >= 1, got {seconds}")
        return cls(timedelta(seconds=seconds), Alignment.RECORDING_START)

    def starting_at(self, start: datetime) -> SegmentPolicy:
        """This policy anchored at ``start`` (only matters for ``RECORDING_START``)."""
        return replace(self, anchor=_require_aware(start, "recording start"))

    def next_cut(self, after: datetime) -> datetime:
        """The first cut strictly after ``after`` (aware), in UTC."""
        moment = _require_aware(after, "cut reference")
        if self.alignment is Alignment.UTC_CLOCK:
            origin = _EPOCH
        elif self.anchor is None:
            raise RecordingConfigError("a recording-start policy needs starting_at(start) first")
        else:
            origin = self.anchor
        periods = (moment - origin) // self.period  # floor division, also before the origin
        return origin + (periods + 1) * self.period

    def describe(self) -> str:
        seconds = int(self.period.total_seconds())
        if self.alignment is Alignment.UTC_CLOCK:
            return "hourly (UTC)" if seconds == 3600 else f"every {seconds} s (UTC clock)"
        if seconds % 60 == 0:
            return f"every {seconds // 60} min from the recording start"
        return f"every {seconds} s from the recording start"


def check_name_part(value: str, what: str, *, allow_empty: bool = False) -> str:
    """``value`` if it is safe inside a file name, else ``RecordingConfigError`` naming ``what``."""
    if not value:
        if allow_empty:
            return value
        raise RecordingConfigError(f"{what} must not be empty")
    if len(value) > MAX_NAME_PART:
        raise RecordingConfigError(f"{what} is longer than {MAX_NAME_PART} characters")
    if value in {".", ".."} or value.startswith(".") or value != value.strip():
        raise RecordingConfigError(f"{what} {value!r} must not start with '.' or have edge spaces")
    bad = _FORBIDDEN.search(value)
    if bad:
        raise RecordingConfigError(f"{what} {value!r} contains forbidden character {bad.group()!r}")
    return value


def utc_stamp(moment: datetime) -> str:
    """``moment`` as ``YYYYmmddTHHMMSSZ`` in UTC."""
    return _require_aware(moment, "segment start").strftime(STAMP_FORMAT)


def segment_path(
    root: Path,
    session_id: str,
    file_prefix: str,
    enclosure_id: str,
    started_at: datetime,
    *,
    serial: int = 0,
    extension: str = SEGMENT_EXTENSION,
) -> Path:
    """``{root}/{session_id}/{file_prefix}_{enclosure}_{UTC start}.{ext}``.

    An empty prefix drops its underscore. ``serial`` > 0 appends ``-N`` to the stamp, used
    only when a file of that second already exists (files are never overwritten).
    """
    check_name_part(session_id, "session id")
    check_name_part(file_prefix, "file prefix", allow_empty=True)
    check_name_part(enclosure_id, "enclosure id")
    parts = [p for p in (file_prefix, enclosure_id, utc_stamp(started_at)) if p]
    stem = "_".join(parts) + (f"-{serial}" if serial else "")
    return root / session_id / f"{stem}.{extension}"


def sidecar_path_for(video: Path) -> Path:
    """The frame-timestamp sidecar beside ``video``: ``<stem>.frames.csv``."""
    return video.with_name(video.stem + SIDECAR_SUFFIX)
