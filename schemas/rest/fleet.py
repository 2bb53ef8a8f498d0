"""REST body of ``GET /api/enclosures/summary``: the whole fleet in one compact response."""

from __future__ import annotations

from pydantic import Field

from schemas.rest.common import RestOut
from schemas.types import UtcDatetime

__all__ = ["SUMMARY_FIELDS", "FleetSummary"]

# The names of a summary row's values, in order (the contract: the UI reads rows by them).
SUMMARY_FIELDS = (
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


class FleetSummary(RestOut):
    """Every enclosure not retired, ordered by id, as rows of values in the order of ``fields``
    (no repeated keys: ~135 bytes per enclosure, ~15 gzipped)."""

    as_of: UtcDatetime = Field(description="When the service read the fleet (its clock, UTC).")
    count: int = Field(ge=0, description="Number of rows.")
    fields: list[str] = Field(
        description=(
            "Names of the values of each row: id, name, location (a free string; the UI groups"
            " by its '/'-separated parts, room/rack), state (derived: offline, lost, idle,"
            " recording, error), since (when it entered that state), last_seen_at,"
            " session_id, recorded_s, frames (of its current recording, else null),"
            " disk_free_pct, clock_offset_s, fps (null when the camera is not connected),"
            " error (the fault its latest status reports, cut to 80 characters, else null),"
            " open_alerts (its open alerts nobody has acknowledged). Status values are null"
            " when the enclosure has no status of its current run."
        ),
        examples=[list(SUMMARY_FIELDS)],
    )
    rows: list[list[str | float | int | None]] = Field(
        description="One row per enclosure; values in the order of fields.",
        examples=[
            [
                [
                    "demo-01",
                    "Demo 01",
                    "Room 2/Rack A",
                    "recording",
                    "2026-12-03T18:00:00Z",
                    "2026-12-03T18:40:00Z",
                    "s-123",
                    61.0,
                    1830,
                    72.5,
                    0.01,
                    30.0,
                    None,
                    0,
                ]
            ]
        ],
    )
