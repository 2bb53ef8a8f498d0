"""The agent's configuration: a TOML file, validated, with command-line overrides.

TOML rather than INI because the agent's settings are typed (sizes, rates, booleans, paths)
and nested, TOML carries those types and tables natively, and Python reads it with the
standard library (``tomllib``). The service keeps INI because the original service used it.

Loading never touches the camera, the disk or the network; ``jaxmba-agent check`` does.
Every problem is reported as ``key: reason`` (``broker.url: ...``) by ``ConfigError``.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Self, cast
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from enclosure_agent.errors import ConfigError
from enclosure_agent.recorder import STALL_TIMEOUT_S, EncoderSettings, RecorderError
from enclosure_agent.recorder.sources import SPEC_HELP, open_source
from enclosure_agent.recorder.writer import DEFAULT_CRF, DEFAULT_PRESET, X264_PRESETS
from schemas.errors import describe_validation_error
from schemas.ids import EnclosureId
from schemas.topics import DEFAULT_PREFIX, Topics
from schemas.types import Fps

__all__ = [
    "CONFIG_VERSION",
    "DEFAULT_DISK_RESERVE_BYTES",
    "AgentConfig",
    "BrokerUrl",
    "Overrides",
    "load_config",
    "parse_broker_url",
]

CONFIG_VERSION = 1  # bump when a key changes meaning; older files are refused with the reason
DEFAULT_DISK_RESERVE_BYTES = 5 * 1024**3  # about 2 h of 720p near-lossless video in hand
DEFAULT_SESSION_EXPIRY_S = 600  # commands queued during a gap up to 10 min still arrive
MQTT_PORT, MQTTS_PORT = 1883, 8883
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
X264Preset = Literal[
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"
]
assert set(X264Preset.__args__) == set(X264_PRESETS)  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class BrokerUrl:
    """``mqtt[s]://user:password@host:port`` taken apart (the password is never logged)."""

    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None

    def redacted(self) -> str:
        """The URL with the password replaced by ``***``."""
        user = f"{self.username}:***@" if self.username else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{host}:{self.port}"


def parse_broker_url(url: str) -> BrokerUrl:
    """Parse ``mqtt[s]://[user[:password]@]host[:port]``; ``ValueError`` says what is wrong."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("mqtt", "mqtts"):
        given = f"{parts.scheme}://" if parts.scheme else "(none)"
        raise ValueError(
            f"scheme must be mqtt:// or mqtts://, not {given}"
            " (form: mqtt[s]://user:password@host:port)"
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("must be mqtt[s]://user:password@host:port with nothing after the port")
    if not parts.hostname:
        raise ValueError("has no host (form: mqtt[s]://user:password@host:port)")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("port must be a number in 1-65535") from None
    tls = parts.scheme == "mqtts"
    return BrokerUrl(
        host=parts.hostname,
        port=port or (MQTTS_PORT if tls else MQTT_PORT),
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class AgentSection(_Section):
    enclosure_id: EnclosureId = Field(
        description="This enclosure's id: also its MQTT user name and client id."
    )
    state_dir: Path | None = Field(
        default=None,
        description="Where the agent keeps its journal and outbox; default: $STATE_DIRECTORY"
        " (systemd) or ~/.local/state/jaxmba-agent/<enclosure id>.",
    )
    log_level: LogLevel = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR.")
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="text, or json: one JSON object per line with the enclosure, session and "
        "command ids as fields (for Loki/ELK).",
    )


class BrokerSection(_Section):
    url: str = Field(description="mqtt[s]://user:password@host:port; the user is the enclosure id.")
    ca_file: Path | None = Field(
        default=None, description="CA certificate(s) for mqtts://; default: the system store."
    )
    topic_prefix: str = Field(default=DEFAULT_PREFIX, description="Topic tree prefix.")
    session_expiry_s: int = Field(
        default=DEFAULT_SESSION_EXPIRY_S,
        ge=0,
        le=7 * 24 * 3600,
        description="How long the broker keeps our session (queued commands) while we are away.",
    )
    reconnect_min_s: float = Field(default=1.0, gt=0, le=60, description="First reconnect delay.")
    reconnect_max_s: float = Field(default=30.0, gt=0, le=600, description="Longest delay.")

    @field_validator("url")
    @classmethod
    def _url_parses(cls, value: str) -> str:
        parse_broker_url(value)
        return value.strip()

    @field_validator("topic_prefix")
    @classmethod
    def _prefix_valid(cls, value: str) -> str:
        Topics(value)  # raises TopicError (a ValueError) with the reason
        return value

    @model_validator(mode="after")
    def _delays_ordered(self) -> Self:
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must be >= reconnect_min_s")
        return self

    @property
    def parsed(self) -> BrokerUrl:
        return parse_broker_url(self.url)


class CameraSection(_Section):
    source: str = Field(default="testpattern", description=f"The camera: {SPEC_HELP}.")
    width: int = Field(default=640, ge=16, le=8192, description="Frame width in pixels.")
    height: int = Field(default=480, ge=16, le=8192, description="Frame height in pixels.")
    fps: Fps = Field(default=30, description="Frames per second when a recording asks for none.")
    stall_timeout_s: float = Field(
        default=STALL_TIMEOUT_S,
        ge=0.5,
        le=600,
        description="No frame for this long is a stall: camera_stalled, then reopened.",
    )
    keep_open: bool = Field(
        default=True,
        description="Keep the camera open while idle (health in status, instant snapshots);"
        " false: open it only to record, preview or snapshot.",
    )

    @model_validator(mode="after")
    def _source_spec_valid(self) -> Self:
        try:  # builds the source object only: nothing is opened
            open_source(self.source, self.width, self.height, float(self.fps))
        except (RecorderError, ValueError) as exc:
            raise ValueError(str(exc)) from None
        return self


class RecordingSection(_Section):
    root: Path = Field(description="Recordings go to <root>/<session id>/; never deleted by us.")
    crf: int = Field(default=DEFAULT_CRF, ge=0, le=51, description="H.264 CRF (0 = lossless).")
    preset: X264Preset = Field(
        default=cast(X264Preset, DEFAULT_PRESET), description="x264 speed preset."
    )
    segment_minutes: int = Field(
        default=60, ge=1, le=1440, description="Segment length when a recording asks for none."
    )
    fragment_hourly: bool = Field(
        default=False, description="Default for recordings that do not say: cut at every UTC hour."
    )
    segment_seconds: int | None = Field(
        default=None,
        ge=1,
        le=86400,
        description="Default segment length in seconds, overriding segment_minutes (demos, tests).",
    )
    denoise: str | None = Field(
        default=None,
        description="FFmpeg denoise filter used for apply_filter, e.g. 'hqdn3d=4:3:6:4.5';"
        " default: hqdn3d where FFmpeg has it, else atadenoise.",
    )
    disk_reserve_bytes: int = Field(
        default=DEFAULT_DISK_RESERVE_BYTES,
        ge=0,
        description="Free space to keep: no start below it, a recording stops when it is reached.",
    )
    disk_check_interval_s: float = Field(
        default=5.0, gt=0, le=600, description="How often free space is checked while recording."
    )

    @field_validator("denoise")
    @classmethod
    def _denoise_known(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                EncoderSettings(denoise=value)
            except RecorderError as exc:
                raise ValueError(str(exc)) from None
        return value


class StatusSection(_Section):
    interval_s: float = Field(
        default=5.0, ge=1, le=3600, description="Seconds between heartbeats; also MQTT keepalive."
    )
    clock_skew_threshold_s: float = Field(
        default=2.0, gt=0, description="Offset from the service's clock flagged as skew."
    )


class PreviewSection(_Section):
    fps: float = Field(default=2.0, gt=0, le=30, description="Live preview frames per second.")
    width: int = Field(default=640, ge=16, le=4096, description="Preview width in pixels.")
    quality: int = Field(default=75, ge=1, le=100, description="JPEG quality (1-100).")


class OutboxSection(_Section):
    path: Path | None = Field(
        default=None,
        description="SQLite file of the event queue; default <state_dir>/outbox.sqlite3.",
    )


class AgentConfig(_Section):
    """The whole agent configuration (one TOML document)."""

    version: Literal[1] = Field(default=1, description="Version of this file's format.")
    agent: AgentSection
    broker: BrokerSection
    camera: CameraSection = Field(default_factory=CameraSection)
    recording: RecordingSection
    status: StatusSection = Field(default_factory=StatusSection)
    preview: PreviewSection = Field(default_factory=PreviewSection)
    outbox: OutboxSection = Field(default_factory=OutboxSection)

    @model_validator(mode="after")
    def _user_is_enclosure(self) -> Self:
        user = self.broker.parsed.username
        if user is not None and user != self.agent.enclosure_id:
            raise ValueError(
                f"broker.url user {user!r} must be the enclosure id {self.agent.enclosure_id!r}"
            )
        return self

    # -- derived values ---------------------------------------------------------------------------
    @property
    def enclosure_id(self) -> str:
        return self.agent.enclosure_id

    @property
    def topics(self) -> Topics:
        return Topics(self.broker.topic_prefix)

    @property
    def state_dir(self) -> Path:
        if self.agent.state_dir is not None:
            return self.agent.state_dir
        systemd = os.environ.get("STATE_DIRECTORY")
        if systemd:
            return Path(systemd.split(":")[0])
        base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
        return Path(base) / "jaxmba-agent" / self.enclosure_id

    @property
    def outbox_path(self) -> Path:
        return self.outbox.path or self.state_dir / "outbox.sqlite3"

    def with_changes(self, section: str, **values: Any) -> AgentConfig:
        """A validated copy with ``values`` set in ``section`` (``ConfigError`` if refused)."""
        data = self.model_dump()
        data[section].update(values)
        return validate_config(data)


@dataclass(frozen=True, slots=True)
class Overrides:
    """Command-line values that win over the file (``None``: not given)."""

    enclosure_id: str | None = None
    broker: str | None = None
    recordings: Path | None = None
    camera: str | None = None
    state_dir: Path | None = None

    def apply(self, data: dict[str, Any]) -> dict[str, Any]:
        out = {
            key: dict(value) if isinstance(value, Mapping) else value for key, value in data.items()
        }
        pairs = (
            ("agent", "enclosure_id", self.enclosure_id),
            ("broker", "url", self.broker),
            ("recording", "root", None if self.recordings is None else str(self.recordings)),
            ("camera", "source", self.camera),
            ("agent", "state_dir", None if self.state_dir is None else str(self.state_dir)),
        )
        for section, key, value in pairs:
            if value is not None:
                table = out.setdefault(section, {})
                if not isinstance(table, dict):
                    raise ConfigError(f"{section}: must be a table ([{section}])")
                table[key] = value
        return out


def describe(exc: ValidationError) -> str:
    """One ``key: reason`` line per problem."""
    lines = []
    for field, message in describe_validation_error(exc):
        lines.append(f"{field or '(file)'}: {message}")
    return "\n".join(lines)


def validate_config(data: Mapping[str, Any]) -> AgentConfig:
    """``data`` (the parsed TOML) as an ``AgentConfig``; ``ConfigError`` with ``key: reason``."""
    version = data.get("version", CONFIG_VERSION)
    if version != CONFIG_VERSION:
        raise ConfigError(
            f"version: this agent reads config version {CONFIG_VERSION}, the file says {version!r}"
        )
    try:
        return AgentConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe(exc)) from None


def read_toml(path: Path) -> dict[str, Any]:
    """The TOML document at ``path``; ``ConfigError`` naming the file and the problem."""
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except PermissionError:
        raise ConfigError(f"{path}: permission denied") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
            "TOML files are UTF-8"
        ) from None


def load_config(path: Path | None, overrides: Overrides | None = None) -> AgentConfig:
    """Read ``path`` (if given), apply ``overrides`` and validate. Raises ``ConfigError``."""
    data: dict[str, Any] = read_toml(path) if path is not None else {}
    if overrides is not None:
        data = overrides.apply(data)
    if path is None:
        missing = [
            flag
            for flag, (section, key) in {
                "--enclosure-id": ("agent", "enclosure_id"),
                "--broker": ("broker", "url"),
                "--recordings": ("recording", "root"),
            }.items()
            if key not in data.get(section, {})
        ]
        if missing:
            raise ConfigError(f"(no --config): give a config file or {', '.join(missing)}")
    return validate_config(data)


def file_is_private(path: Path) -> bool:
    """True when no one but the owner can read ``path`` (it may hold the broker password)."""
    return (path.stat().st_mode & 0o077) == 0
