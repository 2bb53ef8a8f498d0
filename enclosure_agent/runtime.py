"""Settings that ``set_config`` may change while the agent runs (not saved to the file)."""

from __future__ import annotations

from typing import Any

from enclosure_agent.config import AgentConfig

__all__ = ["RUNTIME_KEYS", "apply_runtime_changes"]

RUNTIME_KEYS: dict[str, tuple[str, str]] = {
    "status_interval_s": ("status", "interval_s"),
    "default_fps": ("camera", "fps"),
    "crf": ("recording", "crf"),
    "disk_reserve_bytes": ("recording", "disk_reserve_bytes"),
    "preview_fps": ("preview", "fps"),
    "preview_width": ("preview", "width"),
    "log_level": ("agent", "log_level"),
}
"""``set_config`` key -> (config section, key)."""

_WHEN = {
    "status_interval_s": "status interval now; MQTT keepalive from the next connection",
    "default_fps": "default fps from the next recording",
    "crf": "crf from the next recording",
    "disk_reserve_bytes": "disk reserve now",
    "preview_fps": "preview rate now",
    "preview_width": "preview width now",
    "log_level": "log level now",
}


def apply_runtime_changes(
    config: AgentConfig, changes: dict[str, Any]
) -> tuple[AgentConfig, list[str]]:
    """``config`` with ``changes`` (validated; ``ConfigError`` if refused), and notes on when
    each takes effect."""
    for key, value in changes.items():
        section, name = RUNTIME_KEYS[key]
        config = config.with_changes(section, **{name: value})
    notes = [_WHEN[key] for key in changes]
    notes.append("not saved: the config file applies again after a restart")
    return config, notes
