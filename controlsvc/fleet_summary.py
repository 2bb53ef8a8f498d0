"""The fleet at a glance: one compact row per enclosure, for ``GET /api/enclosures/summary``.

What a dashboard shows of 2,000 enclosures, in one response of ≤ 250 bytes per enclosure:
rows of values in the order of ``FIELDS`` (no repeated keys), read with two statements (the
enclosures with the few status values it needs taken out of the status document by the
database, and the open alerts counted per enclosure). No Flask here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from controlsvc.enclosure_state import status_fault
from controlsvc.models.enclosures import Enclosure
from controlsvc.models.sessions import Alert

__all__ = ["ERROR_MAX", "FIELDS", "fleet_summary", "iso_utc", "open_alert_counts", "summary_rows"]

FIELDS = (
    "id",
    "name",
    "location",
    "state",
    "since",
    "last_seen_at",
    "session_id",
    "recorded_s",
    "frames",
    "disk_free_pct",
    "clock_offset_s",
    "fps",
    "error",
    "open_alerts",
)
# The error text is cut to this many characters here (the whole of it is in the enclosure's
# own ``GET /api/enclosures/{eid}``): a fleet full of long errors stays within its byte budget.
ERROR_MAX = 80

_status = Enclosure.status
# The status values the summary shows, taken out of the stored status document in SQL (the
# documents themselves, ~1 KB each, never leave the database).
_STATUS_VALUES = (
    _status[("recording", "session_id")].as_string().label("session_id"),
    _status[("recording", "recorded_s")].as_float().label("recorded_s"),
    _status[("camera", "recording")].as_boolean().label("camera_recording"),
    _status[("camera", "frames_written")].as_integer().label("frames"),
    _status[("system", "disk_free_bytes")].as_float().label("disk_free"),
    _status[("system", "disk_total_bytes")].as_float().label("disk_total"),
    _status[("clock", "offset_s")].as_float().label("clock_offset_s"),
    _status[("camera", "connected")].as_boolean().label("connected"),
    _status[("camera", "measured_fps")].as_float().label("fps"),
    _status[("camera", "source")].as_string().label("source"),
    _status[("camera", "error")].as_string().label("camera_error"),
    _status[("last_error",)].as_string().label("last_error"),
)


def iso_utc(value: datetime | None) -> str | None:
    """``2026-12-03T18:40:00Z`` (whole seconds: what a dashboard shows, in few bytes)."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def open_alert_counts(session: Session) -> dict[str, int]:
    """Open (not recovered) alerts nobody has acknowledged, per enclosure."""
    query = (
        select(Alert.enclosure_id, func.count())
        .where(
            Alert.enclosure_id.is_not(None),
            Alert.recovered_at.is_(None),
            Alert.acked_at.is_(None),
        )
        .group_by(Alert.enclosure_id)
    )
    return {str(eid): int(count) for eid, count in session.execute(query)}


def summary_rows(session: Session) -> list[list[Any]]:
    """One row per enclosure not retired, ordered by id, values in the order of ``FIELDS``."""
    query = (
        select(
            Enclosure.id,
            Enclosure.name,
            Enclosure.location,
            Enclosure.state,
            func.coalesce(Enclosure.state_changed_at, Enclosure.registered_at).label("since"),
            Enclosure.last_seen_at,
            (Enclosure.status_boot_id == Enclosure.boot_id).label("current"),
            *_STATUS_VALUES,
        )
        .where(Enclosure.retired_at.is_(None))
        .order_by(Enclosure.id)
    )
    alerts = open_alert_counts(session)
    return [_row(row._mapping, alerts.get(row.id, 0)) for row in session.execute(query)]


def _row(values: Mapping[Any, Any], open_alerts: int) -> list[Any]:
    since = values["since"]
    head = [
        values["id"],
        values["name"],
        values["location"],
        values["state"],
        iso_utc(since if since is None or since.tzinfo else since.replace(tzinfo=UTC)),
        iso_utc(values["last_seen_at"]),
    ]
    if not values["current"]:  # no status, or one of a previous boot: nothing to show of it
        return [*head, None, None, None, None, None, None, None, open_alerts]
    recording = values["session_id"] is not None or bool(values["camera_recording"])
    connected = bool(values["connected"]) if values["connected"] is not None else True
    return [
        *head,
        values["session_id"],
        _round(values["recorded_s"], 1) if recording else None,
        values["frames"] if recording else None,
        _percent(values["disk_free"], values["disk_total"]),
        _round(values["clock_offset_s"], 3),
        _round(values["fps"], 1) if connected else None,
        _error(values),
        open_alerts,
    ]


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _percent(free: float | None, total: float | None) -> float | None:
    if free is None or not total:
        return None
    return round(100.0 * free / total, 1)


def _error(values: Mapping[Any, Any]) -> str | None:
    """The fault the status reports, as ``enclosure_state.status_fault`` words it."""
    camera = {
        "error": values["camera_error"],
        "source": values["source"],
        "connected": True if values["connected"] is None else bool(values["connected"]),
    }
    fault = status_fault({"last_error": values["last_error"], "camera": camera})
    if fault is None or len(fault) <= ERROR_MAX:
        return fault
    return fault[: ERROR_MAX - 1] + "…"


def fleet_summary(
    session: Session, *, now: datetime, rows: Sequence[Sequence[Any]] | None = None
) -> dict[str, Any]:
    """The body of ``GET /api/enclosures/summary``."""
    rows = summary_rows(session) if rows is None else rows
    return {"as_of": iso_utc(now), "count": len(rows), "fields": list(FIELDS), "rows": rows}
