"""What a segment file really holds, read back from the file: the evidence after an abnormal close.

A segment closed normally is reported with the writer's own count. After anything else (a
write error such as a full disk, a flush that fails at close, a crash) that count is no proof:
the Matroska muxer keeps up to a cluster (about a second) in memory, and a failed write loses
it. Then the frames are counted in the file (demuxing, no decoding: one packet per frame, as
x264 here makes no B-frames), the sidecar is cut back to the rows of those frames (it never
lists a frame the video does not hold; truncating needs no free space), and the time span
comes from those rows, or from the packets' timestamps where the sidecar lost its rows too.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import av
import av.error

from .sidecar import SIDECAR_HEADER, read_sidecar

__all__ = ["FileEvidence", "count_frames", "read_evidence", "trim_sidecar"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FileEvidence:
    """A segment as found on disk."""

    started_at: datetime  # capture time (UTC) of the first frame in the file
    ended_at: datetime  # capture time (UTC) of the last frame in the file
    frames: int
    bytes: int
    sha256: str


def _packet_times_ms(path: Path) -> list[int] | None:
    """Presentation times (ms) of the whole video packets in ``path``; None if unreadable."""
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            return [
                int(packet.pts or 0)
                for packet in container.demux(stream)
                if packet.size and not packet.is_corrupt
            ]
    except (av.error.FFmpegError, IndexError, OSError) as exc:
        log.warning("cannot read %s to count its frames: %s", path, exc)
        return None


def count_frames(path: Path) -> int | None:
    """How many frames the video file holds (None if it cannot be read at all)."""
    times = _packet_times_ms(path)
    return None if times is None else len(times)


def trim_sidecar(sidecar: Path, frames: int) -> int:
    """Cut ``sidecar`` back to its header and first ``frames`` rows (and any torn last line).

    Truncates in place, so it works on a full disk. Returns how many rows were dropped.
    """
    try:
        data = sidecar.read_bytes()
    except FileNotFoundError:
        return 0
    lines = data.splitlines(keepends=True)
    if not lines or not lines[0].startswith(",".join(SIDECAR_HEADER).encode()):
        return 0  # not a sidecar of ours: leave it alone
    keep = len(lines[0])
    complete = [line for line in lines[1:] if line.endswith(b"\n")]
    for line in complete[:frames]:
        keep += len(line)
    dropped = max(0, len(complete) - frames)
    if keep < len(data):
        os.truncate(sidecar, keep)
    return dropped


def read_evidence(
    path: Path, sidecar: Path, started_at: datetime | None = None
) -> FileEvidence | None:
    """Frames, span, size and SHA-256 of ``path`` as it is; the sidecar is trimmed to match.

    ``started_at`` is the first frame's capture time when the caller knows it (the recorder
    does; after a crash only the sidecar can tell). A file with no readable frame is reported
    with 0 frames (it exists, so it gets an event); None when nothing tells when it started
    or the file cannot be hashed.
    """
    times = _packet_times_ms(path) or []
    frames = len(times)
    try:
        listed = read_sidecar(sidecar)
        dropped = trim_sidecar(sidecar, frames)
    except FileNotFoundError:
        listed, dropped = [], 0
    except (OSError, ValueError) as exc:
        log.warning("cannot read or trim the sidecar %s: %s", sidecar, exc)
        listed, dropped = [], 0
    rows = listed[:frames]
    if dropped:
        log.warning(
            "segment %s: %d frame(s) in the file; %d sidecar row(s) of frames that never"
            " reached it removed",
            path,
            frames,
            dropped,
        )
    if len(rows) < frames:
        log.warning(
            "segment %s: %d frame(s) in the file but %d sidecar row(s) (the rest were lost"
            " with the write error)",
            path,
            frames,
            len(rows),
        )
    first = listed[0].capture_utc if listed else started_at
    if first is None:
        log.warning("segment %s: no sidecar row tells when it started; not reported", path)
        return None
    if len(rows) >= frames:
        last = rows[frames - 1].capture_utc if frames else first
    else:  # the packets carry the capture clock relative to the first frame
        first_pts = listed[0].pts_ms if listed else times[0]
        last = first + timedelta(milliseconds=max(times) - first_pts)
    try:
        with path.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError as exc:
        log.warning("cannot hash %s: %s", path, exc)
        return None
    return FileEvidence(first, max(first, last), frames, size, digest)
