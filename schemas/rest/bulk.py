"""``POST /api/commands/bulk``: one command kind to many enclosures, a result per enclosure."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from schemas.base import StrictModel
from schemas.ids import EnclosureId
from schemas.rest.common import Problem, RestOut
from schemas.rest.enclosures import DEFAULT_COMMAND_TIMEOUT_S, MAX_COMMAND_TIMEOUT_S, CommandOut

__all__ = [
    "BULK_KINDS",
    "MAX_BULK_ENCLOSURES",
    "BulkCommandCreate",
    "BulkCommandItem",
    "BulkCommandOut",
]

# A site's whole fleet in one request, as a session may hold (MAX_SESSION_ENCLOSURES).
MAX_BULK_ENCLOSURES = 5000
# Kinds that take no parameters and make sense for many enclosures at once; recordings go
# through sessions, live view and snapshots are one enclosure's business.
BULK_KINDS = ("ping", "rebirth", "restart_agent")


class BulkCommandCreate(StrictModel):
    kind: Literal["ping", "rebirth", "restart_agent"] = Field(
        description="What to do: ping, rebirth (re-publish state and status) or restart_agent."
    )
    enclosure_ids: list[EnclosureId] = Field(
        min_length=1,
        max_length=MAX_BULK_ENCLOSURES,
        description=f"The enclosures to command (1-{MAX_BULK_ENCLOSURES}, each once).",
    )
    timeout_s: int = Field(
        default=DEFAULT_COMMAND_TIMEOUT_S,
        ge=1,
        le=MAX_COMMAND_TIMEOUT_S,
        description="Seconds to wait for each agent's answer; also each command's expiry.",
    )

    @field_validator("enclosure_ids")
    @classmethod
    def _each_once(cls, value: list[str]) -> list[str]:
        seen: set[str] = set()
        twice: set[str] = set()
        for eid in value:
            (twice if eid in seen else seen).add(eid)
        if twice:
            raise ValueError(f"enclosures listed more than once: {', '.join(sorted(twice))}")
        return value


class BulkCommandItem(RestOut):
    enclosure_id: str = Field(description="The enclosure, as asked.")
    command: CommandOut | None = Field(
        default=None, description="The command sent (null when it could not be created)."
    )
    problem: Problem | None = Field(
        default=None, description="Why no command was created (unknown or retired enclosure)."
    )


class BulkCommandOut(RestOut):
    items: list[BulkCommandItem] = Field(
        description="One result per enclosure, in the order asked."
    )
