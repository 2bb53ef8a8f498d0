"""Commands (``cmd``), their params, and acknowledgements (``ack``)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any, ClassVar, Literal, Self

from pydantic import BaseModel, Field, ValidationError, model_validator

from schemas.base import StrictModel, WireMessage
from schemas.enums import AckResult, CommandKind
from schemas.errors import MessageError, describe_validation_error
from schemas.recording_settings import (
    ApplyFilter,
    FragmentHourly,
    SegmentMinutes,
    TargetFps,
    check_one_segment_policy,
)
from schemas.types import (
    MAX_RECORDING_S,
    FilePrefix,
    Fps,
    JsonObject,
    LongJsonObject,
    Reason,
    SessionId,
    UtcDatetime,
    utc_now,
)

__all__ = [
    "COMMAND_PARAMS",
    "MAX_LIVE_VIEW_S",
    "Ack",
    "Command",
    "EmptyParams",
    "SetConfigParams",
    "StartLiveViewParams",
    "StartRecordingParams",
    "command_id_of",
    "parse_params",
]

MAX_LIVE_VIEW_S = 3600.0  # a viewer keeps extending live view; one request never holds it longer


class EmptyParams(StrictModel):
    """No params: ``{}``."""


class StartRecordingParams(StrictModel):
    """Params of ``start_recording``: record now for ``duration_s``."""

    session_id: SessionId = Field(description="The session this recording belongs to.")
    file_prefix: FilePrefix = Field(description="First part of the segment file names.")
    duration_s: float = Field(gt=0, le=MAX_RECORDING_S, description="How long to record, in s.")
    target_fps: TargetFps = None
    fragment_hourly: FragmentHourly = False
    segment_minutes: SegmentMinutes = None
    apply_filter: ApplyFilter = False

    @model_validator(mode="after")
    def _one_segment_policy(self) -> Self:
        check_one_segment_policy(self.fragment_hourly, self.segment_minutes)
        return self


class StartLiveViewParams(StrictModel):
    """Params of ``start_live_view``."""

    duration_s: float = Field(
        default=30.0, gt=0, le=MAX_LIVE_VIEW_S, description="Publish preview frames for this long."
    )


class SetConfigParams(StrictModel):
    """Params of ``set_config``: the agent settings that may change at run time (at least one)."""

    status_interval_s: float | None = Field(
        default=None, ge=1, le=3600, description="Seconds between status heartbeats."
    )
    default_fps: Fps | None = Field(default=None, description="Frame rate used when none is asked.")
    crf: int | None = Field(default=None, ge=0, le=51, description="H.264 quality (0 = lossless).")
    disk_reserve_bytes: int | None = Field(
        default=None, ge=0, description="Free space to keep on the recording volume."
    )
    preview_fps: float | None = Field(
        default=None, gt=0, le=30, description="Live preview frames per second."
    )
    preview_width: int | None = Field(
        default=None, ge=16, le=4096, description="Width of preview frames in pixels."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] | None = Field(
        default=None, description="The agent's log level."
    )

    @model_validator(mode="after")
    def _something_to_set(self) -> Self:
        if not self.changes():
            raise ValueError("set_config needs at least one setting")
        return self

    def changes(self) -> dict[str, Any]:
        """The settings to change (those given)."""
        return self.model_dump(exclude_none=True)


COMMAND_PARAMS: dict[CommandKind, type[BaseModel]] = {
    CommandKind.PING: EmptyParams,
    CommandKind.REBIRTH: EmptyParams,
    CommandKind.START_RECORDING: StartRecordingParams,
    CommandKind.STOP_RECORDING: EmptyParams,
    CommandKind.START_LIVE_VIEW: StartLiveViewParams,
    CommandKind.STOP_LIVE_VIEW: EmptyParams,
    CommandKind.SNAPSHOT: EmptyParams,
    CommandKind.SET_CONFIG: SetConfigParams,
    CommandKind.RESTART_AGENT: EmptyParams,
}


def parse_params(kind: CommandKind, params: dict[str, Any]) -> BaseModel:
    """Validate ``params`` for ``kind``; raises ``MessageError`` naming ``params.<field>``."""
    try:
        return COMMAND_PARAMS[kind].model_validate(params)
    except ValidationError as exc:
        errors = describe_validation_error(exc, "params")
        reason = "; ".join(f"{field}: {message}" for field, message in errors)
        raise MessageError(reason, errors=errors) from None


class Command(WireMessage):
    """``{prefix}/enc/{eid}/cmd``: an imperative command. QoS 1, not retained.

    Also sent with the MQTT 5 properties Response Topic (``response_topic``), Correlation Data
    (``correlation_data``, the id) and Message Expiry Interval (until ``expires_at``).
    """

    label: ClassVar[str] = "cmd"

    id: uuid.UUID = Field(description="Unique command id; the ack's command_id.")
    kind: CommandKind = Field(description="What to do.")
    params: JsonObject = Field(
        default_factory=dict, description="Parameters of this kind of command (see its schema)."
    )
    expires_at: UtcDatetime = Field(description="A command received after this time is not run.")
    response_topic: str | None = Field(
        default=None, description="Where to publish the ack (as the MQTT 5 Response Topic)."
    )
    correlation_data: str | None = Field(
        default=None, description="Echo of the MQTT 5 Correlation Data (the command id)."
    )

    def typed_params(self) -> BaseModel:
        """The params validated for ``kind``; raises ``MessageError`` naming ``params.<field>``."""
        return parse_params(self.kind, self.params)

    def is_expired(self, now: datetime | None = None) -> bool:
        """True when ``now`` (default: the current time) is past ``expires_at``."""
        return (now or utc_now()) > self.expires_at


class Ack(WireMessage):
    """``{prefix}/enc/{eid}/ack``: the agent's answer to a command. QoS 1, not retained.

    A long command answers ``accepted`` at once, then ``succeeded`` or ``failed``.
    """

    label: ClassVar[str] = "ack"

    command_id: uuid.UUID = Field(description="The id of the command answered.")
    result: AckResult = Field(description="accepted, rejected, succeeded, failed or expired.")
    detail: Reason | None = Field(
        default=None, description="Human reason (always set for rejected)."
    )
    data: LongJsonObject | None = Field(
        default=None,
        description="Result data, e.g. {'jpeg_base64': ...} for snapshot, {'pong': true} for ping.",
    )


def command_id_of(payload: bytes | str) -> uuid.UUID | None:
    """The ``id`` of a command payload that failed validation, if one can be read, else None.

    Lets the agent answer ``rejected`` to a malformed command that still carries an id.
    """
    try:
        document = json.loads(payload)
        return uuid.UUID(str(document["id"]))
    except (ValueError, TypeError, KeyError, RecursionError):
        return None
