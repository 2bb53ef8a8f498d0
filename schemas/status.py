"""The ``status`` heartbeat: the agent's full reported picture, retained, sent every interval."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from schemas.base import WireMessage, WirePart
from schemas.types import BootId, Reason, SessionId, UtcDatetime

MAX_SEQ = 2**63 - 1  # a signed 64-bit integer: what a receiver's database can store

__all__ = [
    "MAX_SEQ",
    "CameraStatus",
    "ClockStatus",
    "LiveViewStatus",
    "RecordingStatus",
    "Status",
    "SystemStatus",
]


class CameraStatus(WirePart):
    source: str = Field(
        description="The camera source, e.g. '/dev/video0', 'basler:123', 'testpattern'."
    )
    connected: bool = Field(description="True while the camera is open and delivering frames.")
    recording: bool = Field(description="True while frames are being written to a file.")
    measured_fps: float | None = Field(
        default=None,
        ge=0,
        description="Frames per second actually captured over the last interval.",
    )
    target_fps: float | None = Field(default=None, ge=0, description="Frames per second asked for.")
    frames_written: int = Field(
        default=0, ge=0, description="Frames written in the current recording (0 when idle)."
    )
    last_frame_at: UtcDatetime | None = Field(
        default=None, description="Capture time of the latest frame received from the camera."
    )
    width: int | None = Field(default=None, ge=1, description="Frame width in pixels.")
    height: int | None = Field(default=None, ge=1, description="Frame height in pixels.")
    error: Reason | None = Field(
        default=None, description="Why the camera is not working, if it is not."
    )


class RecordingStatus(WirePart):
    session_id: SessionId = Field(description="The session being recorded.")
    file: str = Field(description="Path of the segment file being written now.")
    segment_started_at: UtcDatetime = Field(description="When the current segment started.")
    recorded_s: float = Field(ge=0, description="Seconds recorded in this session so far.")
    segments_closed: int = Field(default=0, ge=0, description="Segments closed in this session.")
    segment_frames: int | None = Field(
        default=None,
        ge=0,
        description="Frames written to the current segment file (null: an agent that does not "
        "say; the service then counts only closed segments' frames).",
    )


class SystemStatus(WirePart):
    uptime_s: float = Field(ge=0, description="Seconds since the enclosure computer booted.")
    load_1: float = Field(ge=0, description="Load average over 1 minute.")
    load_5: float = Field(ge=0, description="Load average over 5 minutes.")
    load_15: float = Field(ge=0, description="Load average over 15 minutes.")
    ram_total_bytes: int = Field(ge=0, description="Total RAM in bytes.")
    ram_free_bytes: int = Field(ge=0, description="Available RAM in bytes.")
    disk_total_bytes: int = Field(ge=0, description="Size of the recording volume in bytes.")
    disk_free_bytes: int = Field(ge=0, description="Free bytes on the recording volume.")
    temperature_c: float | None = Field(
        default=None, description="CPU temperature in degrees Celsius, where the OS reports one."
    )
    agent_version: str = Field(max_length=64, description="Version of the enclosure agent.")
    os_release: str = Field(max_length=255, description="Operating system and kernel release.")
    hostname: str = Field(max_length=255, description="Host name of the enclosure computer.")


class ClockStatus(WirePart):
    ntp_synchronized: bool | None = Field(
        default=None,
        description="Whether the OS says its clock is NTP-synchronised (null: unknown).",
    )
    offset_s: float | None = Field(
        default=None,
        description="Estimated local clock offset from the service's (local - service) in s.",
    )
    skewed: bool = Field(default=False, description="True when |offset_s| is above the threshold.")


class LiveViewStatus(WirePart):
    active: bool = Field(default=False, description="True while preview frames are published.")
    until: UtcDatetime | None = Field(default=None, description="When live view stops by itself.")


class Status(WireMessage):
    """``{prefix}/enc/{eid}/status``: the heartbeat. Retained, QoS 1.

    A receiver keeps the latest per enclosure and ignores one whose ``(boot_id, seq)`` is not newer.
    """

    label: ClassVar[str] = "status"

    seq: int = Field(
        ge=0,
        le=MAX_SEQ,
        description="Sequence number, +1 each status message, from 0 at each boot.",
    )
    boot_id: BootId = Field(description="Identifies this run of the agent (new at each start).")
    camera: CameraStatus = Field(description="The camera and capture.")
    recording: RecordingStatus | None = Field(
        default=None, description="The recording in progress, or null when idle."
    )
    system: SystemStatus = Field(description="The enclosure computer.")
    clock: ClockStatus = Field(default_factory=ClockStatus, description="Clock synchronisation.")
    live_view: LiveViewStatus = Field(default_factory=LiveViewStatus, description="Live preview.")
    last_error: Reason | None = Field(
        default=None, description="The latest fault the agent reports, or null when healthy."
    )
