"""The per-segment frame-timestamp sidecar (``<segment stem>.frames.csv``).

One header line, then one row per frame written to the video::

    frame_index,pts_ms,capture_utc,monotonic_ns,source_index
    0,0,2026-05-09T13:00:00.012345Z,81234567890123,108000

``frame_index`` counts frames in the segment from 0; ``pts_ms`` is the frame's
presentation timestamp in the video (milliseconds, the Matroska time base);
``capture_utc`` the wall-clock capture time; ``monotonic_ns`` the host monotonic clock
at capture; ``source_index`` the camera's own frame counter (a gap there is a frame the
camera dropped). Rows are flushed to the OS as they are written (``FLUSH_INTERVAL_S``), so after
a crash the sidecar lists every frame the torn video holds, and fsynced when the segment closes.
"""

from __future__ import annotations

import csv
import os
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TextIO

from .frame import CapturedFrame

__all__ = ["FLUSH_INTERVAL_S", "SIDECAR_HEADER", "SidecarRow", "SidecarWriter", "read_sidecar"]

SIDECAR_HEADER = ("frame_index", "pts_ms", "capture_utc", "monotonic_ns", "source_index")
# Every row goes to the OS as it is written (one small write per frame): the video's clusters
# reach the file every 0.25 s, and after a crash the sidecar must list every frame they hold.
FLUSH_INTERVAL_S = 0.0


def format_utc(moment: datetime) -> str:
    """ISO 8601 UTC with microseconds and a ``Z`` suffix."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, slots=True)
class SidecarRow:
    frame_index: int
    pts_ms: int
    capture_utc: datetime
    monotonic_ns: int
    source_index: int


class SidecarWriter:
    """Appends one row per frame; created exclusively (never overwrites)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: TextIO = path.open("x", encoding="ascii", newline="")
        self._file.write(",".join(SIDECAR_HEADER) + "\n")
        self._last_flush = time.monotonic()
        self.rows = 0

    def write(self, frame: CapturedFrame, pts_ms: int) -> None:
        self._file.write(
            f"{self.rows},{pts_ms},{format_utc(frame.captured_at)},{frame.monotonic_ns},{frame.index}\n"
        )
        self.rows += 1
        now = time.monotonic()
        if now - self._last_flush >= FLUSH_INTERVAL_S:
            self._file.flush()
            self._last_flush = now

    def close(self) -> None:
        """Flush, fsync and close (idempotent)."""
        if self._file.closed:
            return
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
        finally:
            self._file.close()


def read_sidecar(path: Path) -> list[SidecarRow]:
    """Parse a sidecar (a truncated last line, as after a crash, is skipped)."""
    rows: list[SidecarRow] = []
    with path.open(encoding="ascii", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            return rows
        if tuple(header) != SIDECAR_HEADER:
            raise ValueError(f"{path}: unexpected sidecar header {header}")
        for record in reader:
            if len(record) != len(SIDECAR_HEADER):
                break
            try:
                rows.append(
                    SidecarRow(
                        frame_index=int(record[0]),
                        pts_ms=int(record[1]),
                        capture_utc=datetime.fromisoformat(record[2]),
                        monotonic_ns=int(record[3]),
                        source_index=int(record[4]),
                    )
                )
            except ValueError:
                break
    return rows
