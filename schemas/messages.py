"""Every MQTT message of the contract, and which channel carries which.

The models live in small modules (``status``, ``commands``, ``events``); this module holds the
service, lifecycle, desired and alert messages and re-exports the rest, so
``from schemas.messages import Status, parse_message`` works.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, ClassVar, Self

from pydantic import Field, model_validator

from schemas.base import SCHEMA_VERSION, WireMessage, WirePart
from schemas.codec import MAX_PAYLOAD_BYTES, dump_message, parse_message
from schemas.commands import (
    COMMAND_PARAMS,
    Ack,
    Command,
    EmptyParams,
    SetConfigParams,
    StartLiveViewParams,
    StartRecordingParams,
    command_id_of,
    parse_params,
)
from schemas.enums import AlertSeverity, EnclosureState, Lifecycle
from schemas.events import (
    EVENT_PAYLOADS,
    CameraRecovered,
    CameraStalled,
    ClockSkew,
    DiskLow,
    Event,
    EventPayload,
    RecordingFailed,
    RecordingResumed,
    RecordingStarted,
    RecordingStopped,
    SegmentClosed,
    event_payload,
)
from schemas.ids import EnclosureId
from schemas.recording_settings import (
    ApplyFilter,
    FragmentHourly,
    SegmentMinutes,
    TargetFps,
    check_one_segment_policy,
)
from schemas.status import (
    CameraStatus,
    ClockStatus,
    LiveViewStatus,
    RecordingStatus,
    Status,
    SystemStatus,
)
from schemas.topics import Channel
from schemas.types import BootId, FilePrefix, SessionId, UtcDatetime

__all__ = [
    "CHANNEL_MODELS",
    "COMMAND_PARAMS",
    "DEFAULT_STATUS_INTERVAL_S",
    "EVENT_KIND_MAX_LENGTH",
    "EVENT_KIND_PATTERN",
    "EVENT_PAYLOADS",
    "MAX_PAYLOAD_BYTES",
    "MAX_STATUS_INTERVAL_S",
    "MAX_TOKEN_USERS",
    "MIN_STATUS_INTERVAL_S",
    "SCHEMA_VERSION",
    "Ack",
    "Alert",
    "CameraRecovered",
    "CameraStalled",
    "CameraStatus",
    "ClockSkew",
    "ClockStatus",
    "Command",
    "Desired",
    "DesiredRecording",
    "DiskLow",
    "EmptyParams",
    "EnclosureStateMessage",
    "Event",
    "EventPayload",
    "FleetState",
    "LiveViewStatus",
    "LoggedEvent",
    "RecordingFailed",
    "RecordingResumed",
    "RecordingStarted",
    "RecordingStatus",
    "RecordingStopped",
    "SegmentClosed",
    "ServiceEvents",
    "ServiceState",
    "SetConfigParams",
    "StartLiveViewParams",
    "StartRecordingParams",
    "Status",
    "SystemStatus",
    "TokensChanged",
    "WireMessage",
    "command_id_of",
    "dump_message",
    "event_payload",
    "parse_message",
    "parse_params",
]

DEFAULT_STATUS_INTERVAL_S = 5.0  # the contract's heartbeat period; lost after 3 silent intervals
# Liveness is judged from the interval: a tiny one (1e-9) would call every enclosure lost between
# two statuses. Test fleets run at 0.2 s; agents are configured from 1 s.
MIN_STATUS_INTERVAL_S = 0.1
MAX_STATUS_INTERVAL_S = 3600.0


class ServiceState(WireMessage):
    """``{prefix}/service/state``: the service's liveness. Retained, QoS 1; its Will says offline.

    The service republishes it every ``heartbeat_interval_s`` so agents can estimate their clock
    offset from ``at`` (only from copies delivered live, not the retained copy on subscribe).
    """

    label: ClassVar[str] = "service_state"

    online: bool = Field(description="False when the service went away (its Will).")
    version: str = Field(description="Version of the control service.")
    started_at: UtcDatetime | None = Field(default=None, description="When the service started.")
    status_interval_s: float = Field(
        default=DEFAULT_STATUS_INTERVAL_S,
        ge=MIN_STATUS_INTERVAL_S,
        le=MAX_STATUS_INTERVAL_S,
        description="Seconds between agent status heartbeats the service expects.",
    )
    heartbeat_interval_s: float | None = Field(
        default=None, gt=0, description="Seconds between republications of this message."
    )


class EnclosureStateMessage(WireMessage):
    """``{prefix}/enc/{eid}/state``: the agent's lifecycle. Retained, QoS 1; its Will says lost."""

    label: ClassVar[str] = "state"

    state: Lifecycle = Field(
        description="init, ready, disconnected (clean shutdown) or lost (Will)."
    )
    boot_id: BootId = Field(description="Identifies this run of the agent (new at each start).")
    agent_version: str = Field(max_length=64, description="Version of the enclosure agent.")
    status_interval_s: float = Field(
        default=DEFAULT_STATUS_INTERVAL_S,
        ge=MIN_STATUS_INTERVAL_S,
        le=MAX_STATUS_INTERVAL_S,
        description="Seconds between status heartbeats.",
    )
    connection: int | None = Field(
        default=None,
        ge=1,
        le=2**31 - 1,
        description="Which of this boot's connections to the broker the message belongs to"
        " (1 = the first); the Will carries the number of the connection it was registered"
        " with, so the service ignores a Will of a connection older than the one it knows.",
    )


class DesiredRecording(WirePart):
    """The recording an enclosure must be doing between ``start_at`` and ``end_at``."""

    session_id: SessionId = Field(description="The session to record.")
    file_prefix: FilePrefix = Field(description="First part of the segment file names.")
    start_at: UtcDatetime = Field(
        description="When recording starts (now or in the past: at once)."
    )
    end_at: UtcDatetime = Field(description="When recording stops.")
    target_fps: TargetFps = None
    fragment_hourly: FragmentHourly = False
    segment_minutes: SegmentMinutes = None
    apply_filter: ApplyFilter = False

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.end_at <= self.start_at:
            raise ValueError("end_at must be after start_at")
        check_one_segment_policy(self.fragment_hourly, self.segment_minutes)
        return self


class Desired(WireMessage):
    """``{prefix}/enc/{eid}/desired``: the intent the agent reconciles to. Retained, QoS 1.

    ``version`` only grows; an agent ignores a document older than the one it applied.
    """

    label: ClassVar[str] = "desired"

    version: int = Field(ge=0, description="Grows with every change; older documents are ignored.")
    recording: DesiredRecording | None = Field(
        default=None, description="The recording to do now, or null: do not record."
    )
    live_view_until: UtcDatetime | None = Field(
        default=None, description="Publish preview frames until this time; null: no live view."
    )


class Alert(WireMessage):
    """``{prefix}/service/alerts``: something an operator should know. QoS 1, not retained.

    The same ``alert_id`` is published again with ``recovered: true`` when the condition clears.
    """

    label: ClassVar[str] = "alert"

    alert_id: str = Field(min_length=1, max_length=128, description="Id of this alert condition.")
    kind: str = Field(
        min_length=1,
        max_length=64,
        description="What: e.g. enclosure_lost, recording_failed, camera_stalled, disk_low,"
        " clock_skew, session_failed.",
    )
    severity: AlertSeverity = Field(description="info, warning or critical.")
    enclosure_id: EnclosureId | None = Field(default=None, description="The enclosure concerned.")
    session_id: SessionId | None = Field(default=None, description="The session concerned.")
    message: str = Field(description="Human description.")
    recovered: bool = Field(default=False, description="True when the condition has cleared.")


class FleetState(WireMessage):
    """``{prefix}/service/fleet/{eid}``: an enclosure's state as the service derives it (what
    the web UI shows). QoS 1, retained, one per registered or seen enclosure (also those that
    never connected); published on every change, and all again after each (re)connection.
    A retired enclosure's message is cleared (empty retained payload)."""

    label: ClassVar[str] = "fleet_state"

    enclosure_id: EnclosureId = Field(description="The enclosure.")
    name: str = Field(description="Its display name.")
    state: EnclosureState = Field(description="idle, recording, error, lost or offline.")
    reason: str | None = Field(default=None, description="Why, in words.")
    since: UtcDatetime = Field(
        description="Since when it is in this state (its registration if it never changed)."
    )
    session_id: SessionId | None = Field(
        default=None, description="The active session it takes part in or records, else null."
    )
    last_seen_at: UtcDatetime | None = Field(
        default=None, description="When the service last heard from it (null: never)."
    )
    expected_online: bool = Field(
        default=False, description="Whether losing it raises an alert outside sessions too."
    )


EVENT_KIND_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$"
EVENT_KIND_MAX_LENGTH = 64


class LoggedEvent(WirePart):
    """One row of the service's event log, exactly as ``GET /api/events`` streams it."""

    id: int = Field(ge=1, description="Event id; only grows (the SSE event id).")
    kind: str = Field(
        max_length=EVENT_KIND_MAX_LENGTH,
        pattern=EVENT_KIND_PATTERN,
        description="Dotted name, e.g. enclosure.state, command.updated.",
    )
    at: UtcDatetime = Field(description="When the event was recorded.")
    enclosure_id: EnclosureId | None = Field(default=None, description="The enclosure concerned.")
    session_id: SessionId | None = Field(default=None, description="The session concerned.")
    command_id: uuid.UUID | None = Field(default=None, description="The command concerned.")
    data: dict[str, Any] = Field(default_factory=dict, description="The kind's record.")


class ServiceEvents(WireMessage):
    """``{prefix}/service/events``: the event log has new rows. QoS 0, not retained.

    Published by a service process after a commit that recorded events, read by the API
    processes, which hand the events to their streams. A reader that has seen every id below the
    first carried event may use ``events`` as they are; otherwise (or without ``events``) it
    reads the log from its cursor. Only service and operator accounts may read it.
    """

    label: ClassVar[str] = "service_events"

    last_id: int = Field(ge=0, description="Id of the newest event just committed.")
    events: list[LoggedEvent] | None = Field(
        default=None,
        min_length=1,
        description="The events of that one transaction in id order, when they fit (32 KB);"
        " absent otherwise.",
    )


MAX_TOKEN_USERS = 1000  # users in one service/auth message; a commit changing more sends several


class TokensChanged(WireMessage):
    """``{prefix}/service/auth``: a commit changed what these users' tokens may do (a logout,
    a password change or reset, a role change, disabling, a revoked login). QoS 1, not retained.

    Between the service's API processes only: each forgets the token checks it cached for these
    users (``controlsvc.api.token_cache``). A process not subscribed had no cache to correct.
    """

    label: ClassVar[str] = "service_auth"

    users: list[Annotated[int, Field(ge=1, le=2**63 - 1)]] = Field(
        min_length=1,
        max_length=MAX_TOKEN_USERS,
        description="Ids of the users whose tokens changed.",
    )


CHANNEL_MODELS: dict[Channel, type[WireMessage]] = {
    Channel.STATE: EnclosureStateMessage,
    Channel.STATUS: Status,
    Channel.DESIRED: Desired,
    Channel.CMD: Command,
    Channel.ACK: Ack,
    Channel.EVENTS: Event,
}
"""The JSON model of each enclosure channel (``preview`` carries raw JPEG bytes)."""
