"""REST bodies of enclosures, their status history and commands."""

from __future__ import annotations

import uuid
from typing import Any, Self

from pydantic import Field, StrictBool, ValidationError, field_validator, model_validator

from schemas.base import StrictModel
from schemas.commands import COMMAND_PARAMS
from schemas.enums import CommandKind, CommandState, EnclosureState, Lifecycle
from schemas.errors import raise_nested
from schemas.ids import EnclosureId
from schemas.rest.common import DEFAULT_PAGE_LIMIT, PageQuery, RestOut
from schemas.rest.sessions import EnclosureSessionOut
from schemas.status import Status
from schemas.types import BootId, UtcDatetime

__all__ = [
    "CommandCreate",
    "CommandOut",
    "CommandWaitQuery",
    "DEFAULT_COMMAND_TIMEOUT_S",
    "EnclosureCreate",
    "EnclosureListQuery",
    "EnclosureOut",
    "EnclosurePatch",
    "EnclosureRegistered",
    "LOCATION_DESCRIPTION",
    "MAX_COMMAND_TIMEOUT_S",
    "MAX_COMMAND_WAIT_S",
    "MAX_FLEET_LIMIT",
    "RESERVED_ENCLOSURE_IDS",
    "StatusHistoryItem",
    "StatusHistoryQuery",
]

# GET /api/enclosures?limit= goes this high (other lists stop at MAX_PAGE_LIMIT): a fleet of
# 2,000 enclosures comes in one response.
MAX_FLEET_LIMIT = 5000
LOCATION_DESCRIPTION = (
    "Where the enclosure is: a free string; the UI groups enclosures by its '/'-separated"
    " parts, room/rack (e.g. 'Room 2/Rack A')."
)
DEFAULT_COMMAND_TIMEOUT_S = 30  # long enough for a reconnecting agent, short enough to notice
MAX_COMMAND_TIMEOUT_S = 3600
MAX_COMMAND_WAIT_S = 60.0  # GET /api/commands/{id}?wait= holds a request at most this long


class EnclosureOut(RestOut):
    id: EnclosureId = Field(description="Enclosure id (also its MQTT username).")
    name: str = Field(description="Display name.")
    location: str | None = Field(default=None, description=LOCATION_DESCRIPTION)
    notes: str | None = Field(default=None, description="Free notes.")
    state: EnclosureState = Field(
        description="Derived state: offline, lost, idle, recording, error."
    )
    lifecycle: Lifecycle | None = Field(
        default=None, description="Last lifecycle the agent published (null: never seen)."
    )
    last_seen_at: UtcDatetime | None = Field(
        default=None, description="When the last message from the enclosure arrived."
    )
    state_changed_at: UtcDatetime | None = Field(
        default=None, description="When state last changed."
    )
    boot_id: BootId | None = Field(default=None, description="The agent's current boot id.")
    agent_version: str | None = Field(default=None, description="The agent's version.")
    status: Status | None = Field(default=None, description="The latest status heartbeat.")
    registered_at: UtcDatetime = Field(description="When the enclosure was registered.")
    retired: bool = Field(default=False, description="True once deleted (kept for history).")
    expected_online: bool = Field(
        default=False,
        description="Expected to be online: lost or offline raises an alert even outside sessions.",
    )
    session: EnclosureSessionOut | None = Field(
        default=None,
        description="Its part in the session it records for now (null: none): state, lost, "
        "and what it recorded, the same figures as GET /api/sessions/{id}.",
    )


class EnclosureRegistered(EnclosureOut):
    """The answer to registration; the broker password is shown this once only."""

    broker_password: str = Field(description="The enclosure's MQTT password (shown once).")


# Words after /api/enclosures/ that name another resource: an enclosure with such an id could
# never be read back (GET /api/enclosures/summary answers the fleet summary).
RESERVED_ENCLOSURE_IDS = frozenset({"summary"})


class EnclosureCreate(StrictModel):
    id: EnclosureId = Field(
        description="Enclosure id: ^[a-z0-9][a-z0-9-]{0,62}$, not "
        + ", ".join(sorted(RESERVED_ENCLOSURE_IDS))
        + "."
    )
    name: str | None = Field(
        default=None, min_length=1, max_length=200, description="Display name (default: the id)."
    )
    location: str | None = Field(default=None, max_length=200, description=LOCATION_DESCRIPTION)
    notes: str | None = Field(default=None, max_length=10_000, description="Free notes.")
    expected_online: StrictBool = Field(
        default=False, description="Alert when it is lost or offline, even outside sessions."
    )

    @field_validator("id")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value in RESERVED_ENCLOSURE_IDS:
            raise ValueError(
                f"enclosure id {value!r} is reserved: /api/enclosures/{value} is another"
                " resource; choose another id"
            )
        return value


class EnclosurePatch(StrictModel):
    """Fields left out are unchanged; ``null`` clears location or notes."""

    name: str | None = Field(
        default=None, min_length=1, max_length=200, description="Display name."
    )
    location: str | None = Field(default=None, max_length=200, description=LOCATION_DESCRIPTION)
    notes: str | None = Field(default=None, max_length=10_000, description="Free notes.")
    expected_online: StrictBool | None = Field(
        default=None, description="Alert when it is lost or offline, even outside sessions."
    )

    @model_validator(mode="after")
    def _name_not_cleared(self) -> Self:
        for name in ("name", "expected_online"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be cleared")
        return self

    def changes(self) -> dict[str, Any]:
        """The fields given, with their new values."""
        return self.model_dump(include=self.model_fields_set)


class EnclosureListQuery(PageQuery):
    limit: int = Field(
        default=DEFAULT_PAGE_LIMIT,
        ge=1,
        le=MAX_FLEET_LIMIT,
        description=f"Items per page, up to {MAX_FLEET_LIMIT:,}: a whole fleet in one response.",
    )
    state: EnclosureState | None = Field(default=None, description="Only enclosures in this state.")
    q: str | None = Field(
        default=None, max_length=200, description="Search in id, name and location."
    )
    include_retired: bool = Field(default=False, description="Also list retired enclosures.")


class StatusHistoryQuery(PageQuery):
    since: UtcDatetime | None = Field(default=None, description="Only statuses at or after this.")
    until: UtcDatetime | None = Field(default=None, description="Only statuses before this.")

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.since is not None and self.until is not None and self.until <= self.since:
            raise ValueError("until must be after since")
        return self


class StatusHistoryItem(RestOut):
    at: UtcDatetime = Field(description="When the agent sent it.")
    received_at: UtcDatetime | None = Field(default=None, description="When the service got it.")
    boot_id: BootId = Field(description="The agent's boot id.")
    seq: int = Field(ge=0, description="Sequence number within the boot.")
    status: Status = Field(description="The status heartbeat.")


class CommandCreate(StrictModel):
    """``POST /api/enclosures/{eid}/commands``; ``params`` are checked against the kind's schema."""

    kind: CommandKind = Field(description="What to do.")
    params: dict[str, Any] = Field(default_factory=dict, description="Parameters of the kind.")
    timeout_s: int = Field(
        default=DEFAULT_COMMAND_TIMEOUT_S,
        ge=1,
        le=MAX_COMMAND_TIMEOUT_S,
        description="Seconds to wait for the agent's answer; also the command's expiry.",
    )

    @model_validator(mode="after")
    def _params_match_kind(self) -> Self:
        try:
            COMMAND_PARAMS[self.kind].model_validate(self.params)
        except ValidationError as exc:
            raise_nested("params", exc)
        return self


class CommandWaitQuery(StrictModel):
    wait: float = Field(
        default=0,
        ge=0,
        le=MAX_COMMAND_WAIT_S,
        description="Seconds to wait for the command to settle before answering.",
    )


class CommandOut(RestOut):
    id: uuid.UUID = Field(description="Command id.")
    enclosure_id: EnclosureId = Field(description="The enclosure commanded.")
    kind: CommandKind = Field(description="What to do.")
    params: dict[str, Any] = Field(default_factory=dict, description="Its parameters.")
    state: CommandState = Field(description="pending, sent, accepted, rejected, succeeded, ...")
    created_at: UtcDatetime = Field(description="When the API accepted it.")
    sent_at: UtcDatetime | None = Field(
        default=None, description="When the broker acknowledged it."
    )
    settled_at: UtcDatetime | None = Field(
        default=None, description="When it reached a terminal state."
    )
    deadline_at: UtcDatetime = Field(description="After this it is timed_out (and expired).")
    detail: str | None = Field(default=None, description="The agent's reason or message.")
    result: dict[str, Any] | None = Field(default=None, description="Result data from the ack.")
    enclosure_state: EnclosureState | None = Field(
        default=None, description="The enclosure's state when the command was created."
    )
