"""After a crash: where the interrupted recording stopped, and proof for its unreported segments.

The journal names the session, the segment being written and (as of the last status
interval) the latest frame time. The segment's sidecar gets each row as its frame is
encoded, so its last row gives the latest frame more precisely (and never earlier than the
last frame the video file holds). Segments of that run that have no
``segment_closed`` event yet (the one being written at the crash, and any closed just before
it) are measured here: frames counted by demuxing (no decoding), the time span from the
sidecar rows of those frames, size and SHA-256 of the file as it is
(``recorder.evidence``, the same proof the recorder gives after a write error). The video
muxer writes whole clusters, so the file can hold fewer frames than the sidecar (the last
second or two before the crash); the event reports what the file holds, even none, and the
sidecar is cut back to the frames the file holds.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime
from pathlib import Path

from enclosure_agent.journal import RecordingMark
from enclosure_agent.recorder import SegmentInfo, sidecar_path_for
from enclosure_agent.recorder.evidence import read_evidence
from enclosure_agent.recorder.segments import SEGMENT_EXTENSION

__all__ = ["last_frame_time", "orphan_segments", "measure_segment"]

log = logging.getLogger(__name__)

TAIL_BYTES = 4096  # enough for the last few sidecar rows
MTIME_SLACK_S = 2.0  # a segment started in the second the run began still belongs to it


def _sidecar_tail_time(sidecar: Path) -> datetime | None:
    try:
        with sidecar.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - TAIL_BYTES))
            lines = handle.read().decode("ascii", "replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        fields = line.split(",")
        if len(fields) == 5 and fields[0].isdigit():
            try:
                return datetime.fromisoformat(fields[2])
            except ValueError:
                continue
    return None


def last_frame_time(mark: RecordingMark) -> datetime:
    """The latest frame of the interrupted run: the sidecar's last row, else the journal's."""
    candidates = [t for t in (mark.last_frame_at,) if t is not None]
    if mark.file:
        tail = _sidecar_tail_time(sidecar_path_for(Path(mark.file)))
        if tail is not None:
            candidates.append(tail)
    return max(candidates) if candidates else mark.started_at


def orphan_segments(root: Path, mark: RecordingMark) -> list[Path]:
    """Segment files of the interrupted run with no ``segment_closed`` event, oldest first."""
    directory = root / mark.session_id
    reported = set(mark.closed)
    since = mark.started_at.timestamp() - MTIME_SLACK_S
    found = []
    try:
        candidates = sorted(directory.glob(f"*.{SEGMENT_EXTENSION}"))
    except OSError:
        return []
    for path in candidates:
        try:
            if path.stat().st_mtime < since:
                continue
        except OSError:
            continue
        if str(path) not in reported:
            found.append(path)
    return found


def measure_segment(path: Path) -> SegmentInfo | None:
    """Proof for a segment left behind by a crash (from the file; its sidecar trimmed to it)."""
    sidecar = sidecar_path_for(path)
    evidence = read_evidence(path, sidecar)
    if evidence is None:
        return None
    return SegmentInfo(
        path=path,
        sidecar_path=sidecar,
        started_at=evidence.started_at,
        ended_at=evidence.ended_at,
        frames=evidence.frames,
        bytes=evidence.bytes,
        sha256=evidence.sha256,
    )
