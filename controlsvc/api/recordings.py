"""The recordings inventory across sessions, and its export for analysis pipelines.

Everybody reads. The per-enclosure timeline is ``GET /api/enclosures/{eid}/timeline`` (this
module adds it to the enclosures' blueprint's URL space with its own blueprint).
"""

from __future__ import annotations

from typing import Any

from flask import Response, stream_with_context
from flask_openapi3 import APIBlueprint, Tag

from controlsvc.api import tokens
from controlsvc.api.enclosures import READERS, EnclosurePath
from controlsvc.api.errors import problem_responses
from controlsvc.api.pages import page_body
from controlsvc.api.web import database, db_session
from controlsvc.config.settings import Settings
from controlsvc.store import recordings
from controlsvc.store.db import utcnow
from schemas.rest.common import Page
from schemas.rest.recordings import (
    ExportFormat,
    RecordingExportQuery,
    RecordingListQuery,
    RecordingOut,
    TimelineOut,
    TimelineQuery,
)

__all__ = ["bp", "register"]

bp = APIBlueprint(
    "recordings",
    __name__,
    url_prefix="/api",
    abp_tags=[Tag(name="recordings", description="Segment files across sessions, timelines")],
    abp_security=tokens.JWT_SECURITY,
    abp_responses=problem_responses(401, 403),
)

RecordingPage = Page[RecordingOut]
EXPORT_TYPES = {ExportFormat.CSV: "text/csv; charset=utf-8", ExportFormat.JSON: "application/json"}


def _filter(query: RecordingListQuery | RecordingExportQuery) -> recordings.Filter:
    return recordings.Filter(
        enclosure_id=query.enclosure_id,
        session_id=query.session_id,
        start=query.from_,
        end=query.to,
    )


@bp.get("/recordings", responses={200: RecordingPage, **problem_responses(404, 422)})
@tokens.require_role(*READERS)
def list_recordings(query: RecordingListQuery) -> Any:
    """Every segment file across sessions, by start time: path, span, frames, bytes, SHA-256,
    sidecar, session and enclosure. ``from``/``to`` keep the segments overlapping that window;
    404 for an unknown enclosure or session."""
    page = recordings.list_recordings(
        db_session(), _filter(query), limit=query.limit, cursor=query.cursor
    )
    return page_body(page)


@bp.get(
    "/recordings/export",
    responses={
        200: {
            "description": "CSV (a header row, then one row a segment) or a JSON array.",
            "content": {"text/csv": {"schema": {"type": "string"}}, "application/json": {}},
        },
        **problem_responses(404, 422),
    },
)
@tokens.require_role(*READERS)
def export_recordings(query: RecordingExportQuery) -> Any:
    """Every matching segment at once as a file for the analysis pipeline (``format=csv`` or
    ``json``), streamed as it is read; the same filters as the list."""
    where = _filter(query)
    where.check(db_session())
    write = recordings.export_csv if query.format is ExportFormat.CSV else recordings.export_json
    name = f"recordings-{utcnow():%Y%m%d-%H%M%S}.{query.format.value}"
    return Response(
        stream_with_context(write(database(), where)),
        content_type=EXPORT_TYPES[query.format],
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@bp.get(
    "/enclosures/<string:eid>/timeline",
    responses={200: TimelineOut, **problem_responses(404, 422)},
)
@tokens.require_role(*READERS)
def enclosure_timeline(path: EnclosurePath, query: TimelineQuery) -> Any:
    """What the enclosure recorded when, across sessions, and its gaps with their cause
    (default: the last 7 days; at most 31 days at once)."""
    out = recordings.timeline(db_session(), path.eid, start=query.from_, end=query.to, now=utcnow())
    return out.model_dump(mode="json")


def register(app: Any, app_settings: Settings) -> None:
    tokens.init_app(app, app_settings)
    app.register_api(bp)
