"""REST bodies of the recordings inventory (``/api/recordings``) and an enclosure's recording
timeline (``/api/enclosures/{eid}/timeline``): every segment file across sessions."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import Field, ValidationInfo, field_validator

from schemas.base import StrictModel
from schemas.ids import EnclosureId
from schemas.rest.common import PageQuery, RestOut
from schemas.rest.sessions import SegmentOut
from schemas.types import SessionId, UtcDatetime

__all__ = [
    "MAX_TIMELINE_WINDOW",
    "ExportFormat",
    "RecordingExportQuery",
    "RecordingListQuery",
    "RecordingOut",
    "SpanKind",
    "TimelineOut",
    "TimelineQuery",
    "TimelineSpan",
]

MAX_TIMELINE_WINDOW = timedelta(days=31)


class _Window(StrictModel):
    from_: UtcDatetime | None = Field(
        default=None,
        alias="from",
        description="Only segments that end after this time (ISO 8601 with offset).",
    )
    to: UtcDatetime | None = Field(
        default=None, description="Only segments that start before this."
    )

    @field_validator("to")
    @classmethod
    def _after_from(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        start = info.data.get("from_")
        if value is not None and start is not None and value <= start:
            raise ValueError("must be after from")
        return value


class _Filter(_Window):
    enclosure_id: EnclosureId | None = Field(default=None, description="Only this enclosure.")
    session_id: SessionId | None = Field(default=None, description="Only this session.")


class RecordingListQuery(PageQuery, _Filter):
    """``GET /api/recordings``: a page of segments by start time."""


class ExportFormat(StrEnum):
    CSV = "csv"
    JSON = "json"


class RecordingExportQuery(_Filter):
    """``GET /api/recordings/export``: every matching segment at once, as a file."""

    format: ExportFormat = Field(default=ExportFormat.CSV, description="csv or json.")


class RecordingOut(SegmentOut):
    session_id: SessionId = Field(description="The session it was recorded in.")
    session_name: str = Field(description="That session's name.")


class TimelineQuery(_Window):
    """Default: the last 7 days; at most 31 days at once."""


class SpanKind(StrEnum):
    RECORDED = "recorded"  # closed segments, back to back: the evidence
    RECORDING = "recording"  # the open segment, as the latest status reports it
    GAP = "gap"  # not recorded within a session, with its cause


class TimelineSpan(RestOut):
    kind: SpanKind = Field(description="recorded, recording (open segment) or gap.")
    started_at: UtcDatetime = Field(description="Start of the span.")
    ended_at: UtcDatetime = Field(description="End of the span.")
    duration_s: float = Field(description="Length in seconds.")
    session_id: SessionId = Field(description="The session.")
    session_name: str = Field(description="That session's name.")
    cause: str | None = Field(
        default=None,
        description="Gaps: agent_restart, camera_stalled, not_recorded (after a failure or "
        "time-out), or unexplained (segments missing without a reported cause).",
    )
    segments: int = Field(default=0, description="Recorded: closed segments in the span.")
    frames: int = Field(default=0, description="Recorded: frames in those segments.")


class TimelineOut(RestOut):
    enclosure_id: EnclosureId = Field(description="The enclosure.")
    window_start: UtcDatetime = Field(description="Start of the window (from).")
    window_end: UtcDatetime = Field(description="End of the window (to).")
    recorded_s: float = Field(description="Seconds recorded in the window (closed segments).")
    gap_s: float = Field(description="Seconds of gaps in the window.")
    spans: list[TimelineSpan] = Field(description="Recorded spans and gaps, by start time.")
