"""Recording sessions: create, follow, cancel (all or one enclosure), archive, list the proof.

Creating or canceling commits the decision and the ``desired`` documents FIRST, then publishes
the documents (retained, QoS 1, many at once) and records that the broker has them. If the
broker cannot be reached the answer is the same: the decision is durable and the bridge
publishes what is missing. Viewers read; operators and admins change.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Response, current_app
from flask_openapi3 import APIBlueprint, Tag
from pydantic import Field
from sqlalchemy.orm import Session

from controlsvc.api import http_cache, tokens
from controlsvc.api.enclosures import EDITORS, READERS, PathEnclosureId
from controlsvc.api.errors import problem_responses
from controlsvc.api.kept_bodies import KeptBodies
from controlsvc.api.pages import page_body
from controlsvc.api.web import db_session, settings
from controlsvc.config.settings import Settings
from controlsvc.domain.publisher import Publisher
from controlsvc.mqtt import publisher as mqtt_publisher
from controlsvc.store import outbox, recordings, session_views, sessions
from controlsvc.store.db import utcnow
from controlsvc.store.desired import Outgoing
from controlsvc.store.models.sessions import RecordingSession
from schemas.base import StrictModel
from schemas.rest.common import Page
from schemas.rest.sessions import (
    RecordingsQuery,
    SegmentOut,
    SessionCreate,
    SessionListQuery,
    SessionOut,
    SessionSummary,
)
from schemas.topics import Topics
from schemas.types import SessionId

log = logging.getLogger(__name__)

__all__ = ["SessionPath", "bp", "commit_and_publish", "register", "session_body"]

BODY_PROBLEMS = (400, 413, 415, 422)

bp = APIBlueprint(
    "sessions",
    __name__,
    url_prefix="/api/sessions",
    abp_tags=[Tag(name="sessions", description="Recording sessions across enclosures")],
    abp_security=tokens.JWT_SECURITY,
    abp_responses=problem_responses(401, 403),
)


class SessionPath(StrictModel):
    id: SessionId = Field(description="Session id.")


class SessionEnclosurePath(StrictModel):
    id: SessionId = Field(description="Session id.")
    eid: PathEnclosureId = Field(description="Enclosure id.")


SessionPage = Page[SessionSummary]
SegmentPage = Page[SegmentOut]


def _topics() -> Topics:
    return Topics(settings().mqtt.topic_prefix)


def session_body(session: Session, rs: RecordingSession) -> Response:
    """The session as ``GET /api/sessions/{id}`` answers it."""
    return _out(session, rs)


def _out(session: Session, rs: RecordingSession) -> Response:
    # Serialised by pydantic-core as it is built: a dict handed to Flask's encoder cost as
    # much again for a session of 1,000 enclosures, and a model validated first a third more.
    grace = settings().service.session_lost_grace_s
    body = session_views.session_json(session, rs, lost_grace_s=grace)
    return Response(body, mimetype="application/json")


def commit_and_publish(session: Session, outgoing: list[Outgoing]) -> None:
    """Commit the decision, then publish its documents (``store.outbox``)."""
    publisher: Publisher = mqtt_publisher.publisher_of(current_app)
    outbox.commit_then_publish(session, publisher, settings().mqtt.topic_prefix, outgoing)


@bp.post("", responses={201: SessionOut, **problem_responses(404, 409, *BODY_PROBLEMS)})
@tokens.require_role(*EDITORS)
def create_session(body: SessionCreate) -> Any:
    """Start a session on enclosures, now or at ``start_at`` (operators and admins).

    422 names unknown enclosures; 409 names the active session an enclosure is already in,
    and lost or offline enclosures unless ``allow_offline``.
    """
    session = db_session()
    rs, outgoing = sessions.create_session(
        session, _topics(), body, created_by_id=tokens.current_identity().user_id, now=utcnow()
    )
    commit_and_publish(session, outgoing)
    return _out(session, rs), 201


@bp.get("", responses={200: SessionPage, **problem_responses(422)})
@tokens.require_role(*READERS)
def list_sessions(query: SessionListQuery) -> Any:
    """Sessions, newest first; filter by ``status`` and ``archived`` (default: not archived)."""
    page = session_views.list_sessions(
        db_session(),
        limit=query.limit,
        cursor=query.cursor,
        status=query.status,
        archived=query.archived,
    )
    return page_body(page)


@bp.get("/<string:id>", responses={200: SessionOut, **problem_responses(404, 422)})
@tokens.require_role(*READERS)
def get_session(path: SessionPath) -> Any:
    """A session with every enclosure's progress (recorded seconds, frames, bytes, segments,
    last frame, gaps) and the totals. Send the ``ETag`` back as ``If-None-Match``: 304 until
    something in it changed. While only the figures that statuses move have changed, a
    process serves the body it built last for up to ``service.summary_cache_s`` (1 s); a
    state, a closed segment, a gap or an enclosure lost is in the next read."""
    session = db_session()
    rs = session_views.get_session(session, path.id)
    grace = settings().service.session_lost_grace_s
    version = session_views.detail_version(session, rs, lost_grace_s=grace)
    return http_cache.kept_json(
        current_app.extensions[_DETAILS_KEPT],
        rs.id,
        version.settled,
        http_cache.weak_etag(version.etag),
        lambda: session_views.session_json(session, rs, lost_grace_s=grace),
    )


_DETAILS_KEPT = "jaxmba.session_details_kept"
# Sessions whose detail a process keeps: the ones on the screens of a lab's day.
DETAILS_KEPT = 16


@bp.get("/<string:id>/recordings", responses={200: SegmentPage, **problem_responses(404, 422)})
@tokens.require_role(*READERS)
def list_recordings(path: SessionPath, query: RecordingsQuery) -> Any:
    """Every segment file of the session with its evidence (path, span, frames, bytes,
    SHA-256), by start time."""
    page = recordings.session_recordings(
        db_session(),
        path.id,
        limit=query.limit,
        cursor=query.cursor,
        enclosure_id=query.enclosure_id,
    )
    return page_body(page)


@bp.post("/<string:id>/cancel", responses={200: SessionOut, **problem_responses(404, 409, 422)})
@tokens.require_role(*EDITORS)
def cancel_session(path: SessionPath) -> Any:
    """Cancel the session (idempotent); 409 when it already finished otherwise."""
    session = db_session()
    rs, outgoing = sessions.cancel_session(session, _topics(), path.id, now=utcnow())
    commit_and_publish(session, outgoing)
    return _out(session, rs)


@bp.post(
    "/<string:id>/enclosures/<string:eid>/cancel",
    responses={200: SessionOut, **problem_responses(404, 409, 422)},
)
@tokens.require_role(*EDITORS)
def cancel_enclosure(path: SessionEnclosurePath) -> Any:
    """Stop one enclosure of a running session (idempotent); the others go on. 404 when the
    enclosure is not part of the session, 409 when it already finished."""
    session = db_session()
    rs, outgoing = sessions.cancel_enclosure(session, _topics(), path.id, path.eid, now=utcnow())
    commit_and_publish(session, outgoing)
    return _out(session, rs)


@bp.post("/<string:id>/archive", responses={200: SessionOut, **problem_responses(404, 409, 422)})
@tokens.require_role(*EDITORS)
def archive_session(path: SessionPath) -> Any:
    """Archive a finished session (idempotent): hidden from the default list."""
    session = db_session()
    rs = sessions.archive_session(session, path.id, now=utcnow())
    return _out(session, rs)


def register(app: Any, app_settings: Settings) -> None:
    tokens.init_app(app, app_settings)
    mqtt_publisher.init_app(app, app_settings)
    app.extensions[_DETAILS_KEPT] = KeptBodies(
        app_settings.service.summary_cache_s,
        entries=DETAILS_KEPT,
        gzip_level=http_cache.GZIP_LEVEL,
    )
    app.register_api(bp)
