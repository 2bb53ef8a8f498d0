"""REST bodies of alerts (``/api/alerts``): list them, acknowledge one for everybody."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from schemas.enums import AlertSeverity, SessionStatus
from schemas.ids import EnclosureId
from schemas.rest.common import PageQuery, RestOut
from schemas.types import SessionId, UtcDatetime

__all__ = [
    "ALERT_ID_PATTERN",
    "AlertListQuery",
    "AlertOut",
    "AlertStateFilter",
]

# ``{kind}:{enclosure}:{8 hex}`` today; any short id of these characters is looked up.
ALERT_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,128}$"


class AlertStateFilter(StrEnum):
    OPEN = "open"  # the condition still holds
    RECOVERED = "recovered"  # it has cleared


class AlertListQuery(PageQuery):
    state: AlertStateFilter | None = Field(
        default=None, description="open (condition holds), recovered (cleared); leave out: both."
    )
    acknowledged: bool | None = Field(
        default=None, description="true: only acknowledged; false: only not; leave out: both."
    )
    since: UtcDatetime | None = Field(
        default=None,
        description="Only alerts active at or after this time (still open, or recovered "
        "after it): `since=<24 h ago>` lists what is open and recent.",
    )
    enclosure_id: EnclosureId | None = Field(default=None, description="Only this enclosure.")
    session_id: SessionId | None = Field(default=None, description="Only this session.")


class AlertOut(RestOut):
    alert_id: str = Field(description="Id of the alert (path of its acknowledgement).")
    kind: str = Field(description="enclosure_lost, camera_stalled, recording_failed, ...")
    severity: AlertSeverity = Field(description="info, warning or critical.")
    enclosure_id: EnclosureId | None = Field(default=None, description="The enclosure concerned.")
    session_id: SessionId | None = Field(
        default=None, description="The session it happened in (null: outside sessions)."
    )
    enclosure_name: str | None = Field(
        default=None, description="The enclosure's display name (lists and GET only)."
    )
    session_name: str | None = Field(
        default=None, description="The session's name (lists and GET only)."
    )
    session_status: SessionStatus | None = Field(
        default=None,
        description="The session's status now (lists and GET only): an alert raised in a "
        "session canceled since says so.",
    )
    message: str = Field(description="What happened, in words.")
    raised_at: UtcDatetime = Field(description="When the condition was first seen.")
    recovered_at: UtcDatetime | None = Field(
        default=None, description="When it cleared (null: still open)."
    )
    recovered: bool = Field(description="True once the condition has cleared.")
    occurrences: int = Field(description="How often the condition was seen while open.")
    acknowledged: bool = Field(description="True once someone acknowledged it.")
    acked_at: UtcDatetime | None = Field(default=None, description="When it was acknowledged.")
    acked_by: str | None = Field(default=None, description="Who acknowledged it (email).")
    mailed: bool = Field(description="Whether alert mail went out for it (rate-limited).")
