"""Writing an agent config file: a commented TOML template, created with mode 0600.

The file holds the broker password (inside ``broker.url``), so it is created readable by its
owner only and replaced atomically; ``deploy/agent/jaxmba-agent.example.toml`` is this
template with placeholders (a test keeps them equal).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

from enclosure_agent.config import DEFAULT_DISK_RESERVE_BYTES
from enclosure_agent.recorder.writer import DEFAULT_CRF, DEFAULT_PRESET
from schemas.topics import DEFAULT_PREFIX

__all__ = ["CONFIG_FILE_MODE", "EXAMPLE_VALUES", "render_config", "write_config"]

CONFIG_FILE_MODE = 0o600

TEMPLATE = """\
# jaxmba enclosure agent configuration (docs/agent.md lists every key).
# This file holds the broker password: keep it mode 0600, owned by the agent's user.
version = 1

[agent]
# This enclosure's id: lowercase letters, digits and '-'; also its MQTT user and client id.
enclosure_id = {enclosure_id}
# Journal, outbox and lock; systemd's StateDirectory= provides /var/lib/jaxmba-agent.
state_dir = {state_dir}
log_level = "INFO"
# "json": one JSON object per log line, with enclosure, session and command ids as fields.
log_format = "text"

[broker]
# mqtt://user:password@host:port or mqtts://... (TLS); the user is the enclosure id.
url = {broker_url}
# CA certificate for mqtts:// (default: the system's trust store).
# ca_file = "/etc/jaxmba-agent/ca.pem"
topic_prefix = {topic_prefix}
# How long the broker keeps queued commands for us while we are away.
session_expiry_s = 600

[camera]
# testpattern, testpattern:grey, basler, basler:SERIAL, /dev/video0, or any FFmpeg input.
source = {camera}
width = 640
height = 480
# Frames per second when a recording asks for none.
fps = 30
# Keep the camera open while idle (camera health in status, instant snapshots).
keep_open = true

[recording]
# Recordings go to <root>/<session id>/<prefix>_<enclosure>_<UTC start>.mkv (never deleted).
root = {recordings}
# H.264 quality: 0 = lossless, 17 = visually lossless (default), 23 = x264's default.
crf = {crf}
preset = {preset}
# Segment length when a recording asks for none (or cut at every UTC hour).
segment_minutes = 60
fragment_hourly = false
# Free space to keep: no recording starts below it, a running one stops cleanly.
disk_reserve_bytes = {disk_reserve}
disk_check_interval_s = 5

[status]
# Seconds between status heartbeats; also the MQTT keepalive.
interval_s = 5
# Clock offset from the service's clock that is reported as skew.
clock_skew_threshold_s = 2.0

[preview]
fps = 2
width = 640
quality = 75

[outbox]
# SQLite event queue (default: <state_dir>/outbox.sqlite3).
# path = "/var/lib/jaxmba-agent/outbox.sqlite3"
"""

EXAMPLE_VALUES = {
    "enclosure_id": "enc-01",
    "broker_url": "mqtts://enc-01:CHANGE-ME@broker.example.org:8883",
    "state_dir": "/var/lib/jaxmba-agent",
    "recordings": "/srv/jaxmba/recordings",
    "camera": "/dev/video0",
}


def _toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def render_config(
    *,
    enclosure_id: str,
    broker_url: str,
    state_dir: str,
    recordings: str,
    camera: str = "testpattern",
) -> str:
    """The commented config text for these values (other keys at their defaults)."""
    return TEMPLATE.format(
        enclosure_id=_toml_string(enclosure_id),
        broker_url=_toml_string(broker_url),
        state_dir=_toml_string(state_dir),
        recordings=_toml_string(recordings),
        camera=_toml_string(camera),
        topic_prefix=_toml_string(DEFAULT_PREFIX),
        crf=DEFAULT_CRF,
        preset=_toml_string(DEFAULT_PRESET),
        disk_reserve=DEFAULT_DISK_RESERVE_BYTES,
    )


def write_config(path: Path, text: str, *, overwrite: bool = False) -> None:
    """Write ``text`` to ``path`` atomically with mode 0600; ``FileExistsError`` unless
    ``overwrite``."""
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists (use --force to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        os.fchmod(fd, CONFIG_FILE_MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
