"""The JSON shapes of the original JABS clients, built from this service's rows, and the
bodies they send, validated. No Flask.

Ids are the layer's integers (``ids``), enums are spelled as the original's, datetimes are ISO
8601 with an explicit offset (UTC), every device object carries ``sensor_status.camera
.recording``, a full ``system_info`` and string ``location`` and ``state``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
)

from controlsvc.domain.session_state import EncState
from controlsvc.store.db import as_utc
from controlsvc.store.models.enclosures import Enclosure
from controlsvc.store.models.sessions import RecordingSession, SessionEnclosure
from schemas.enums import EnclosureState, SessionStatus
from schemas.types import MAX_RECORDING_S

__all__ = [
    "DEFAULT_FILENAME_PREFIX",
    "DeviceSpec",
    "DeviceState",
    "HeartbeatIn",
    "SessionIn",
    "device_out",
    "device_state",
    "iso",
    "parse_device_time",
    "session_out",
    "session_status",
    "row_status",
]

DEFAULT_FILENAME_PREFIX = "video_recording"
KIB = 1024
MIB = 1024 * 1024


class DeviceState(StrEnum):
    IDLE = "IDLE"
    BUSY = "BUSY"
    DOWN = "DOWN"


_SESSION_STATUS = {
    SessionStatus.SCHEDULED: "IN_PROGRESS",
    SessionStatus.RUNNING: "IN_PROGRESS",
    SessionStatus.COMPLETED: "COMPLETE",
    SessionStatus.COMPLETED_WITH_FAILURES: "COMPLETE",
    SessionStatus.CANCELED: "CANCELED",
}
_ROW_STATUS = {
    EncState.PENDING: "PENDING",
    EncState.STARTING: "PENDING",
    EncState.RECORDING: "RECORDING",
    EncState.COMPLETED: "COMPLETE",
    EncState.FAILED: "FAILED",
    EncState.TIMED_OUT: "FAILED",
    EncState.CANCELED: "CANCELED",
}
_DOWN = frozenset({EnclosureState.OFFLINE.value, EnclosureState.LOST.value})


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with its offset (``+00:00``): the UI's date pipe reads it right."""
    return None if value is None else as_utc(value).isoformat()


def session_status(status: str) -> str:
    return _SESSION_STATUS[SessionStatus(status)]


def row_status(state: str) -> str:
    return _ROW_STATUS[EncState(state)]


def device_state(enc: Enclosure, busy: bool) -> DeviceState:
    if enc.state in _DOWN:
        return DeviceState.DOWN
    return DeviceState.BUSY if busy else DeviceState.IDLE


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def device_out(jid: int, enc: Enclosure, *, busy: bool) -> dict[str, Any]:
    """The original's Device object from the enclosure's latest status (zeros before one)."""
    status: Mapping[str, Any] = enc.status or {}
    camera: Mapping[str, Any] = status.get("camera") or {}
    system: Mapping[str, Any] = status.get("system") or {}
    recording: Mapping[str, Any] = status.get("recording") or {}
    recording_now = camera.get("recording") is True
    sensor_camera: dict[str, Any] = {"recording": recording_now}
    if recording_now:
        sensor_camera["duration"] = int(_number(recording.get("recorded_s")))
        sensor_camera["fps"] = _number(camera.get("measured_fps"))
    return {
        "id": jid,
        "name": enc.name,
        "location": enc.location or "",
        "state": device_state(enc, busy).value,
        "last_update": iso(enc.last_seen_at or enc.status_received_at),
        "sensor_status": {"camera": sensor_camera},
        "system_info": {
            "release": str(system.get("os_release") or ""),
            "uptime": int(_number(system.get("uptime_s"))),
            "load": _number(system.get("load_1")),
            "total_ram": int(_number(system.get("ram_total_bytes")) // KIB),
            "free_ram": int(_number(system.get("ram_free_bytes")) // KIB),
            "total_disk": int(_number(system.get("disk_total_bytes")) // MIB),
            "free_disk": int(_number(system.get("disk_free_bytes")) // MIB),
        },
    }


def session_out(
    jid: int,
    rs: RecordingSession,
    parts: list[tuple[SessionEnclosure, dict[str, Any], float]],
) -> dict[str, Any]:
    """The original's Session: ``parts`` are (the enclosure's part, its Device object, the
    seconds it recorded)."""
    return {
        "id": jid,
        "name": rs.name,
        "creation_time": iso(rs.created_at),
        "duration": rs.duration_s,
        "status": session_status(rs.status),
        "fragment_hourly": rs.fragment_hourly,
        "apply_filter": rs.apply_filter,
        "target_fps": rs.target_fps,
        "device_statuses": [
            {
                "device": device,
                "status": row_status(se.state),
                "recording_time": int(recorded_s),
                "filename_prefix": se.file_prefix,
                "message": se.message,
            }
            for se, device, recorded_s in parts
        ],
    }


# -- request bodies --------------------------------------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class LoginIn(_Body):
    email_address: StrictStr = Field(min_length=1, max_length=320)
    password: StrictStr = Field(min_length=1, max_length=1024)


class DeviceSpec(_Body):
    device_id: StrictInt = Field(ge=1)
    filename_prefix: StrictStr = Field(DEFAULT_FILENAME_PREFIX, min_length=1, max_length=64)


class SessionIn(_Body):
    name: StrictStr = Field(min_length=1, max_length=200)
    duration: StrictInt = Field(gt=0, le=MAX_RECORDING_S)
    fragment_hourly: StrictBool = True
    target_fps: StrictInt = Field(30, ge=1, le=120)
    apply_filter: StrictBool = True
    device_spec: list[DeviceSpec] = Field(min_length=1, max_length=10_000)


class ChangePasswordIn(_Body):
    old_password: StrictStr = Field(max_length=1024)
    new_password: StrictStr = Field(max_length=1024)


class InviteIn(_Body):
    email: StrictStr = Field(min_length=1, max_length=320)
    admin: StrictBool = False
    url: StrictStr = Field(min_length=1, max_length=2048)


class ResetRequestIn(_Body):
    email: StrictStr = Field(min_length=1, max_length=320)
    url: StrictStr = Field(min_length=1, max_length=2048)


class ResetIn(_Body):
    password: StrictStr = Field(max_length=1024)


# -- the device client's heartbeat -----------------------------------------------------------


def parse_device_time(value: str) -> datetime:
    """The client's UTC timestamp: ``Z`` suffix and up to 7 fractional digits (cpprest)."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    main, sep, rest = text.partition(".")
    if sep:
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = f"{main}.{rest[:digits][:6].ljust(6, '0')}{rest[digits:]}"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise ValueError("needs a UTC offset or Z")
    return as_utc(parsed)


class CameraIn(_Body):
    recording: StrictBool
    duration: StrictInt | None = Field(None, ge=0)
    fps: StrictFloat | StrictInt | None = Field(None, ge=0)


class SensorStatusIn(_Body):
    camera: CameraIn


class SystemInfoIn(_Body):
    release: StrictStr = Field(max_length=200)
    uptime: StrictInt = Field(ge=0)
    load: StrictFloat | StrictInt = Field(ge=0)
    free_ram: StrictInt = Field(ge=0)
    total_ram: StrictInt = Field(ge=0)
    free_disk: StrictInt = Field(ge=0)
    total_disk: StrictInt = Field(ge=0)


class HeartbeatIn(_Body):
    """``POST device/heartbeat`` as the device client sends it; other fields (``state``, ...)
    are ignored."""

    name: StrictStr = Field(min_length=1, max_length=255)
    location: StrictStr | None = Field(None, max_length=200)
    timestamp: datetime | None = None
    session_id: StrictInt | None = Field(None, ge=0)
    err_msg: StrictStr | None = Field(None, max_length=2000)
    sensor_status: SensorStatusIn
    system_info: SystemInfoIn

    @field_validator("timestamp", mode="before")
    @classmethod
    def _device_time(cls, value: object) -> object:
        if value is None or isinstance(value, datetime):
            return value
        if not isinstance(value, str):
            raise ValueError("must be an ISO 8601 string")  # noqa: TRY004 - pydantic wants this
        return parse_device_time(value)
