"""How to record: fields shared by a session, a `start_recording` command and a `desired` document.

Each is an annotated type, so the three models keep their own field order on the wire while the
limits and the descriptions live here once. Booleans are strict: ``"yes"`` or ``1`` is refused.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StrictBool

from schemas.types import Fps

__all__ = [
    "ONE_SEGMENT_POLICY",
    "ApplyFilter",
    "FragmentHourly",
    "SegmentMinutes",
    "TargetFps",
    "check_one_segment_policy",
]

ONE_SEGMENT_POLICY = "choose either fragment_hourly or segment_minutes, not both"

TargetFps = Annotated[
    Fps | None,
    Field(description="Frames per second (1-120); null: the agent's configured default."),
]
FragmentHourly = Annotated[
    StrictBool, Field(description="Cut a new file at the top of every hour (UTC).")
]
SegmentMinutes = Annotated[
    int | None,
    Field(
        ge=1,
        le=1440,
        description="Cut a new file every N minutes; null: the agent's configured default."
        " Not with fragment_hourly.",
    ),
]
ApplyFilter = Annotated[
    StrictBool, Field(description="Apply the spatial denoise filter (FFmpeg hqdn3d).")
]


def check_one_segment_policy(fragment_hourly: bool, segment_minutes: int | None) -> None:
    """Refuse both ways of cutting files at once (a model validator calls this)."""
    if fragment_hourly and segment_minutes is not None:
        raise ValueError(ONE_SEGMENT_POLICY)
