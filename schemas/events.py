"""Events (``events``): durable facts from the agent's outbox, delivered at least once.

The ``data`` of an event is the payload model of its ``kind`` (``EVENT_PAYLOADS``);
``event_payload(event)`` returns it typed, ``Event.of(payload)`` builds an event from one.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import ClassVar, Self

from pydantic import Field, ValidationError, model_validator

from schemas.base import WireMessage, WirePart
from schemas.enums import EventKind
from schemas.errors import raise_nested
from schemas.types import JsonObject, Reason, SessionId, Sha256, UtcDatetime, utc_now

__all__ = [
    "EVENT_PAYLOADS",
    "CameraRecovered",
    "CameraStalled",
    "ClockSkew",
    "DiskLow",
    "Event",
    "EventPayload",
    "RecordingFailed",
    "RecordingResumed",
    "RecordingStarted",
    "RecordingStopped",
    "SegmentClosed",
    "event_payload",
]


class EventPayload(WirePart):
    """Base of the typed ``data`` of an event."""

    kind: ClassVar[EventKind]


class RecordingStarted(EventPayload):
    kind: ClassVar[EventKind] = EventKind.RECORDING_STARTED

    file: str | None = Field(default=None, description="Path of the first segment file.")
    end_at: UtcDatetime | None = Field(default=None, description="When the recording will stop.")
    target_fps: float | None = Field(default=None, ge=0, description="Frames per second asked for.")


class RecordingStopped(EventPayload):
    kind: ClassVar[EventKind] = EventKind.RECORDING_STOPPED

    reason: Reason | None = Field(
        default=None, description="Why: e.g. 'end reached', 'stop_recording command', 'desired'."
    )
    recorded_s: float | None = Field(default=None, ge=0, description="Seconds recorded in total.")
    segments: int | None = Field(default=None, ge=0, description="Segments closed in total.")


class RecordingFailed(EventPayload):
    kind: ClassVar[EventKind] = EventKind.RECORDING_FAILED

    reason: Reason = Field(description="Why the recording failed.")


class RecordingResumed(EventPayload):
    """A recording that was interrupted (agent restart, crash) and resumed per ``desired``."""

    kind: ClassVar[EventKind] = EventKind.RECORDING_RESUMED

    gap_started_at: UtcDatetime = Field(description="Time of the last frame before the gap.")
    gap_ended_at: UtcDatetime = Field(description="Time of the first frame after the gap.")
    gap_s: float = Field(ge=0, description="Length of the gap in seconds.")


class SegmentClosed(EventPayload):
    """Proof of recording: one finished segment file."""

    kind: ClassVar[EventKind] = EventKind.SEGMENT_CLOSED

    path: str = Field(max_length=1024, description="Path of the segment file on the enclosure.")
    session_id: SessionId = Field(description="The session recorded.")
    started_at: UtcDatetime = Field(description="Capture time of the first frame.")
    ended_at: UtcDatetime = Field(description="Capture time of the last frame.")
    frames: int = Field(ge=0, description="Frames in the file.")
    bytes: int = Field(ge=0, description="File size in bytes.")
    sha256: Sha256 = Field(description="SHA-256 of the file, lowercase hex.")
    sidecar_path: str | None = Field(
        default=None,
        max_length=1024,
        description="Path of the per-frame capture timestamp sidecar file.",
    )


class CameraStalled(EventPayload):
    kind: ClassVar[EventKind] = EventKind.CAMERA_STALLED

    source: str = Field(description="The camera source.")
    last_frame_at: UtcDatetime | None = Field(default=None, description="Time of the last frame.")
    reason: Reason | None = Field(default=None, description="What the agent saw.")


class CameraRecovered(EventPayload):
    kind: ClassVar[EventKind] = EventKind.CAMERA_RECOVERED

    source: str = Field(description="The camera source.")
    stalled_s: float | None = Field(default=None, ge=0, description="How long frames were missing.")


class DiskLow(EventPayload):
    kind: ClassVar[EventKind] = EventKind.DISK_LOW

    free_bytes: int = Field(ge=0, description="Free bytes on the recording volume.")
    reserve_bytes: int = Field(ge=0, description="The configured reserve.")


class ClockSkew(EventPayload):
    kind: ClassVar[EventKind] = EventKind.CLOCK_SKEW

    offset_s: float = Field(description="Estimated local clock offset from the service's, in s.")
    threshold_s: float | None = Field(default=None, ge=0, description="The threshold crossed.")


EVENT_PAYLOADS: dict[EventKind, type[EventPayload]] = {
    p.kind: p
    for p in (
        RecordingStarted,
        RecordingStopped,
        RecordingFailed,
        RecordingResumed,
        SegmentClosed,
        CameraStalled,
        CameraRecovered,
        DiskLow,
        ClockSkew,
    )
}

_SESSION_EVENTS = frozenset(
    {
        EventKind.RECORDING_STARTED,
        EventKind.RECORDING_STOPPED,
        EventKind.RECORDING_FAILED,
        EventKind.RECORDING_RESUMED,
        EventKind.SEGMENT_CLOSED,
    }
)


def _new_event_id() -> str:
    return str(uuid.uuid4())


class Event(WireMessage):
    """``{prefix}/enc/{eid}/events``: a durable fact. QoS 1, not retained, at least once.

    The same fact repeated carries the same ``event_id``; receivers store each id once.
    ``data`` must match the payload model of ``kind``; recording events carry ``session_id``.
    """

    label: ClassVar[str] = "event"

    event_id: str = Field(
        default_factory=_new_event_id,
        min_length=1,
        max_length=64,
        description="Unique id of this fact (a UUID); the same on every redelivery.",
    )
    kind: EventKind = Field(description="What happened.")
    session_id: SessionId | None = Field(
        default=None, description="The session concerned, for recording and segment events."
    )
    data: JsonObject = Field(
        default_factory=dict, description="Details; the schema depends on kind."
    )

    @model_validator(mode="after")
    def _data_matches_kind(self) -> Self:
        if self.kind in _SESSION_EVENTS and self.session_id is None:
            raise ValueError(f"a {self.kind.value} event needs a session_id")
        try:
            EVENT_PAYLOADS[self.kind].model_validate(self.data)
        except ValidationError as exc:
            raise_nested("data", exc)
        return self

    @classmethod
    def of(
        cls,
        payload: EventPayload,
        *,
        session_id: str | None = None,
        event_id: str | None = None,
        at: datetime | None = None,
    ) -> Self:
        """An event of ``payload``'s kind; ``event_id`` and ``at`` default to new values."""
        if session_id is None and isinstance(payload, SegmentClosed):
            session_id = payload.session_id
        return cls(
            event_id=event_id or _new_event_id(),
            kind=payload.kind,
            session_id=session_id,
            data=payload.model_dump(mode="json"),
            at=at if at is not None else utc_now(),
        )


def event_payload(event: Event) -> EventPayload:
    """The typed ``data`` of ``event`` (its model is ``EVENT_PAYLOADS[event.kind]``)."""
    return EVENT_PAYLOADS[event.kind].model_validate(event.data)
