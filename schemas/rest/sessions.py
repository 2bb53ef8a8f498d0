"""REST bodies of recording sessions (``/api/sessions``)."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, StrictBool, field_validator, model_validator

from schemas.base import StrictModel
from schemas.enums import EnclosureState, SessionEnclosureStatus, SessionStatus
from schemas.ids import EnclosureId
from schemas.recording_settings import (
    ApplyFilter,
    FragmentHourly,
    SegmentMinutes,
    TargetFps,
    check_one_segment_policy,
)
from schemas.rest.common import PageQuery, RestOut
from schemas.types import MAX_RECORDING_S, FilePrefix, SessionId, UtcDatetime

__all__ = [
    "MAX_SESSION_ENCLOSURES",
    "EnclosureSessionOut",
    "GapOut",
    "ProgressBasis",
    "RecordingProgress",
    "RecordingsQuery",
    "SegmentOut",
    "SessionCreate",
    "SessionEnclosureIn",
    "SessionEnclosureOut",
    "SessionListQuery",
    "SessionOut",
    "SessionSpec",
    "SessionStart",
    "SessionSummary",
    "SessionTotals",
]

MAX_SESSION_ENCLOSURES = 5000  # a site's whole fleet in one session, with room to spare
ProgressBasis = Literal["live", "evidence"]


class SessionEnclosureIn(StrictModel):
    id: EnclosureId = Field(description="Enclosure id.")
    file_prefix: FilePrefix = Field(description="First part of this enclosure's file names.")


class SessionSpec(StrictModel):
    """What a session records, where and how: shared by sessions and their templates."""

    enclosures: list[SessionEnclosureIn] = Field(
        min_length=1,
        max_length=MAX_SESSION_ENCLOSURES,
        description="The enclosures to record, each with its own file prefix.",
    )
    duration_s: int = Field(
        ge=1, le=MAX_RECORDING_S, description="Length of the recording in seconds (1 s-31 days)."
    )
    fragment_hourly: FragmentHourly = False
    segment_minutes: SegmentMinutes = None
    target_fps: TargetFps = None
    apply_filter: ApplyFilter = False
    notes: str | None = Field(default=None, max_length=10_000, description="Free notes.")

    @field_validator("enclosures")
    @classmethod
    def _no_duplicates(cls, value: list[SessionEnclosureIn]) -> list[SessionEnclosureIn]:
        seen: set[str] = set()
        twice: set[str] = set()
        for item in value:
            (twice if item.id in seen else seen).add(item.id)
        if twice:
            raise ValueError(f"enclosures listed more than once: {', '.join(sorted(twice))}")
        return value

    @model_validator(mode="after")
    def _one_segmentation(self) -> Self:
        check_one_segment_policy(self.fragment_hourly, self.segment_minutes)
        return self


class SessionStart(StrictModel):
    """When and under which name a session starts (``POST /api/sessions/{id}/clone``,
    ``POST /api/session-templates/{id}/sessions``)."""

    name: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Name of the new session (null: the template's or the session's name).",
    )
    start_at: UtcDatetime | None = Field(
        default=None, description="When to start, in the future (null: now)."
    )
    allow_offline: StrictBool = Field(
        default=False,
        description="Accept lost or offline enclosures (they start when they come back).",
    )


class SessionCreate(SessionSpec, SessionStart):
    """``POST /api/sessions``."""

    name: str = Field(min_length=1, max_length=200, description="Name of the session.")


class SessionListQuery(PageQuery):
    status: SessionStatus | None = Field(default=None, description="Only sessions in this status.")
    archived: bool | None = Field(
        default=False,
        description="false (default): not archived; true: only archived; leave empty: all.",
    )

    @field_validator("archived", mode="before")
    @classmethod
    def _empty_is_all(cls, value: object) -> object:
        return None if value == "" else value


class RecordingsQuery(PageQuery):
    enclosure_id: EnclosureId | None = Field(
        default=None, description="Only the segments of this enclosure."
    )


class GapOut(RestOut):
    started_at: UtcDatetime = Field(description="Last frame before the gap.")
    ended_at: UtcDatetime = Field(description="First frame after the gap (or the end).")
    gap_s: float = Field(description="Length in seconds.")
    cause: str = Field(description="agent_restart, camera_stalled or not_recorded.")


class RecordingProgress(RestOut):
    """What one enclosure recorded in a session, the same figures everywhere they are shown
    (session page, enclosure page, fleet, ``jaxmba-ctl``): ``controlsvc.store.session_progress``."""

    basis: ProgressBasis = Field(
        description="live: the closed segments plus the open file as the agent last reported "
        "it (the enclosure still records the session); evidence: the closed segments only, "
        "each proven by its segment_closed report (the enclosure is done with the session)."
    )
    recorded_s: float = Field(description="Seconds recorded.")
    frames: int = Field(description="Frames recorded.")
    bytes: int = Field(description="Bytes in closed segments (the open file's size is unknown).")
    segments: int = Field(description="Closed segments.")
    last_frame_at: UtcDatetime | None = Field(default=None, description="Latest frame time.")


class SessionTotals(RestOut):
    basis: ProgressBasis = Field(
        description="live while any enclosure's figures are (see RecordingProgress), else evidence."
    )
    recorded_s: float = Field(description="Seconds recorded, summed over the enclosures.")
    frames: int = Field(description="Frames recorded, summed over the enclosures.")
    bytes: int = Field(description="Bytes in closed segments.")
    segments: int = Field(description="Closed segments.")
    gap_s: float = Field(description="Seconds not recorded because of crashes or outages.")


class SessionEnclosureOut(RestOut):
    enclosure_id: EnclosureId = Field(description="The enclosure.")
    enclosure_name: str | None = Field(default=None, description="Its display name.")
    file_prefix: FilePrefix = Field(description="Its file prefix.")
    state: SessionEnclosureStatus = Field(description="Its outcome in this session.")
    message: str | None = Field(default=None, description="Why, when not plain.")
    state_changed_at: UtcDatetime | None = Field(default=None, description="Last state change.")
    confirmed_at: UtcDatetime | None = Field(
        default=None, description="When the agent confirmed frames were flowing."
    )
    enclosure_state: EnclosureState | None = Field(
        default=None, description="The enclosure's current derived state."
    )
    lost_since: UtcDatetime | None = Field(
        default=None, description="Lost or offline since (null: reachable)."
    )
    recorded_s: float = Field(description="Seconds recorded (closed segments + the open one).")
    frames: int = Field(description="Frames in closed segments.")
    bytes: int = Field(description="Bytes in closed segments.")
    segments: int = Field(description="Closed segments.")
    last_frame_at: UtcDatetime | None = Field(default=None, description="Latest frame time.")
    gap_s: float = Field(description="Seconds not recorded (summed gaps).")
    gaps: list[GapOut] = Field(default_factory=list, description="Every gap.")
    progress: RecordingProgress = Field(
        description="What it recorded, live or evidence: the figures every page shows."
    )
    lost: bool = Field(
        default=False,
        description="True while the enclosure is lost or offline and still active in the "
        "session: it counts as timed out at fails_at unless it comes back.",
    )
    fails_at: UtcDatetime | None = Field(
        default=None,
        description="When a lost enclosure counts as timed out (lost_since + the grace period).",
    )


class EnclosureSessionOut(RestOut):
    """An enclosure's part in the session it records for now (``GET /api/enclosures``)."""

    session_id: SessionId = Field(description="The session.")
    session_name: str = Field(description="Its name.")
    session_status: SessionStatus = Field(description="scheduled or running.")
    duration_s: int = Field(description="The session's length in seconds.")
    state: SessionEnclosureStatus = Field(description="The enclosure's state in the session.")
    lost: bool = Field(description="Lost or offline while active in the session.")
    lost_since: UtcDatetime | None = Field(default=None, description="Lost since.")
    fails_at: UtcDatetime | None = Field(
        default=None, description="When it counts as timed out unless it comes back."
    )
    progress: RecordingProgress = Field(description="What it recorded (as the session shows).")


class SessionSummary(RestOut):
    id: SessionId = Field(description="Session id (also the directory name on the enclosures).")
    name: str = Field(description="Name.")
    notes: str | None = Field(default=None, description="Free notes.")
    status: SessionStatus = Field(description="scheduled, running, completed, ...")
    duration_s: int = Field(description="Length in seconds.")
    start_at: UtcDatetime = Field(description="Start time.")
    end_at: UtcDatetime = Field(description="End time.")
    target_fps: int | None = Field(default=None, description="Frames per second asked for.")
    fragment_hourly: bool = Field(description="Hourly files.")
    segment_minutes: int | None = Field(default=None, description="File length in minutes.")
    apply_filter: bool = Field(description="Image filter on.")
    created_at: UtcDatetime = Field(description="When it was created.")
    started_at: UtcDatetime | None = Field(default=None, description="When it started running.")
    finished_at: UtcDatetime | None = Field(default=None, description="When it settled.")
    archived: bool = Field(description="Archived (hidden from the default list).")
    enclosure_states: dict[str, int] = Field(
        default_factory=dict, description="How many enclosures are in each state."
    )


class SessionOut(SessionSummary):
    enclosures: list[SessionEnclosureOut] = Field(description="Each enclosure's progress.")
    totals: SessionTotals = Field(description="Summed over the enclosures.")


class SegmentOut(RestOut):
    enclosure_id: EnclosureId = Field(description="The enclosure that recorded it.")
    path: str = Field(description="Path of the file on the enclosure.")
    started_at: UtcDatetime = Field(description="Capture time of the first frame.")
    ended_at: UtcDatetime = Field(description="Capture time of the last frame.")
    frames: int = Field(description="Frames in the file.")
    bytes: int = Field(description="File size in bytes.")
    sha256: str = Field(description="SHA-256 of the file (lowercase hex).")
    sidecar_path: str | None = Field(default=None, description="Per-frame timestamp file.")
    received_at: UtcDatetime = Field(description="When the service got the evidence.")
