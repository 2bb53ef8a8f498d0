"""What an enclosure recorded in a session, in the words the web UI uses: the API's
``RecordingProgress`` (one server-side computation), never a heartbeat's own counters."""

from __future__ import annotations

from typing import Any

from controlsvc.ctl.output import human_seconds, local_time, text

__all__ = ["BASIS_WORDS", "enclosure_text", "lost_text", "progress_text", "state_text"]

BASIS_WORDS = {
    "live": "live: closed files and the file being written",
    "evidence": "closed files only",
}


def progress_text(progress: Any) -> str:
    """``6 s recorded, 89 frames (live: ...)``; ``-`` when the API gave none."""
    if not isinstance(progress, dict):
        return "-"
    basis = str(progress.get("basis") or "")
    return (
        f"{human_seconds(float(progress.get('recorded_s') or 0))} recorded, "
        f"{text(progress.get('frames'))} frames ({BASIS_WORDS.get(basis, basis)})"
    )


def enclosure_text(part: dict[str, Any]) -> str:
    """``Cage 7 (demo-01)``, or the id alone when the display name is the id."""
    eid = text(part.get("enclosure_id"))
    name = part.get("enclosure_name")
    return f"{name} ({eid})" if name and name != eid else eid


def state_text(part: dict[str, Any]) -> str:
    """The enclosure's state in the session, ``lost`` while it is lost there."""
    return "lost" if part.get("lost") else text(part.get("state"))


def lost_text(part: dict[str, Any]) -> str:
    if not part.get("lost"):
        return ""
    return f"lost; counts as failed at {local_time(part.get('fails_at'))} unless it comes back"
