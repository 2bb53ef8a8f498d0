"""REST bodies of session templates (``/api/session-templates``): a saved session (the same
enclosures, file prefixes, duration and settings) to start again and again."""

from __future__ import annotations

from pydantic import Field

from schemas.rest.common import PageQuery, RestOut
from schemas.rest.sessions import SessionEnclosureIn, SessionSpec
from schemas.types import UtcDatetime

__all__ = ["TemplateCreate", "TemplateListQuery", "TemplateOut"]


class TemplateCreate(SessionSpec):
    """``POST /api/session-templates``."""

    name: str = Field(
        min_length=1,
        max_length=200,
        description="Name of the template (unique); sessions started from it take it by default.",
    )


class TemplateListQuery(PageQuery):
    pass


class TemplateOut(RestOut):
    id: int = Field(description="Template id.")
    name: str = Field(description="Its name (the default name of its sessions).")
    enclosures: list[SessionEnclosureIn] = Field(description="Enclosures and file prefixes.")
    duration_s: int = Field(description="Length of its sessions in seconds.")
    fragment_hourly: bool = Field(description="Hourly files.")
    segment_minutes: int | None = Field(default=None, description="File length in minutes.")
    target_fps: int | None = Field(default=None, description="Frames per second asked for.")
    apply_filter: bool = Field(description="Image filter on.")
    notes: str | None = Field(default=None, description="Notes copied to its sessions.")
    created_at: UtcDatetime = Field(description="When it was saved.")
    created_by: str | None = Field(default=None, description="Who saved it (email).")
