"""Alert messages as lab staff read them: a sentence naming the enclosure by its display name
and the session by its name, no ids twice, no MQTT words. No Flask, no paho, no database."""

from __future__ import annotations

__all__ = [
    "camera_stalled",
    "clock_skew",
    "disk_low",
    "failed",
    "stopped_early",
    "timed_out",
    "who",
]


def who(eid: str, name: str | None = None) -> str:
    """``Cage 7 (demo-01)``, or the id alone when the display name is the id."""
    return f"{name} ({eid})" if name and name != eid else eid


def _session(name: str | None, session_id: str) -> str:
    return f"session “{name}”" if name else f"session {session_id}"


def _bytes(value: object) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "little space"
    size = float(value)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def stopped_early(enclosure: str, session_name: str | None, session_id: str, reason: str) -> str:
    return f"{enclosure} stopped recording {_session(session_name, session_id)} early: {reason}"


def failed(enclosure: str, session_name: str | None, session_id: str, reason: str) -> str:
    return f"{enclosure} could not record {_session(session_name, session_id)}: {reason}"


def camera_stalled(enclosure: str, session_name: str | None, session_id: str) -> str:
    return (
        f"The camera of {enclosure} stopped delivering frames during "
        f"{_session(session_name, session_id)}"
    )


def disk_low(enclosure: str, free_bytes: object, session_name: str | None, session_id: str) -> str:
    return (
        f"The recording disk of {enclosure} is below its reserve ({_bytes(free_bytes)} free) "
        f"during {_session(session_name, session_id)}"
    )


def timed_out(enclosure: str, session_name: str | None, session_id: str, why: str | None) -> str:
    """The enclosure counts as failed in the session (lost too long, never started, no end)."""
    return f"{enclosure} counts as failed in {_session(session_name, session_id)}: {why or '?'}"


def clock_skew(enclosure: str, offset_s: float) -> str:
    ahead = "ahead of" if offset_s > 0 else "behind"
    return (
        f"The clock of {enclosure} is {abs(offset_s):.1f} s {ahead} the service's: its file and "
        "frame times follow its own clock; check its time synchronisation (NTP)"
    )
