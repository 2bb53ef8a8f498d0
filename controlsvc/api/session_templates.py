"""Session templates and clones: ``/api/session-templates`` (list, save, read, delete, start a
session from one) and ``POST /api/sessions/{id}/clone``. Viewers read; operators and admins
save, delete and start. A session started here is created, committed and published exactly as
``POST /api/sessions`` does (``controlsvc.api.sessions.commit_and_publish``).
"""

from __future__ import annotations

from typing import Any

from flask import Response
from flask_openapi3 import APIBlueprint, Tag
from pydantic import Field

from controlsvc.api import tokens
from controlsvc.api.enclosures import EDITORS, READERS
from controlsvc.api.errors import problem_responses
from controlsvc.api.sessions import SessionPath, commit_and_publish, session_body
from controlsvc.api.web import db_session, settings
from controlsvc.config.settings import Settings
from controlsvc.mqtt import publisher as mqtt_publisher
from controlsvc.store import session_templates, sessions
from controlsvc.store.db import utcnow
from schemas.base import StrictModel
from schemas.rest.common import Page
from schemas.rest.session_templates import TemplateCreate, TemplateListQuery, TemplateOut
from schemas.rest.sessions import SessionCreate, SessionOut, SessionStart
from schemas.topics import Topics

__all__ = ["bp", "register"]

BODY_PROBLEMS = (400, 413, 415, 422)

bp = APIBlueprint(
    "session_templates",
    __name__,
    url_prefix="/api",
    abp_tags=[Tag(name="sessions", description="Recording sessions across enclosures")],
    abp_security=tokens.JWT_SECURITY,
    abp_responses=problem_responses(401, 403),
)

TemplatePage = Page[TemplateOut]


class TemplatePath(StrictModel):
    id: int = Field(ge=1, le=2**53, description="Template id.")


def _start(body: SessionCreate) -> tuple[Response, int]:
    session = db_session()
    rs, outgoing = sessions.create_session(
        session,
        Topics(settings().mqtt.topic_prefix),
        body,
        created_by_id=tokens.current_identity().user_id,
        now=utcnow(),
    )
    commit_and_publish(session, outgoing)
    return session_body(session, rs), 201


@bp.get("/session-templates", responses={200: TemplatePage, **problem_responses(422)})
@tokens.require_role(*READERS)
def list_templates(query: TemplateListQuery) -> Any:
    """Saved session templates, by name."""
    page = session_templates.list_templates(db_session(), limit=query.limit, cursor=query.cursor)
    return {
        "items": [t.model_dump(mode="json") for t in page.items],
        "next_cursor": page.next_cursor,
    }


@bp.post(
    "/session-templates",
    responses={201: TemplateOut, **problem_responses(409, *BODY_PROBLEMS)},
)
@tokens.require_role(*EDITORS)
def create_template(body: TemplateCreate) -> Any:
    """Save a template: enclosures with their file prefixes, duration, settings (operators
    and admins); 409 when the name is taken."""
    session = db_session()
    tpl = session_templates.create_template(session, body, user=tokens.current_user(), now=utcnow())
    out = session_templates.template_out(tpl).model_dump(mode="json")
    session.commit()
    return out, 201


@bp.get("/session-templates/<int:id>", responses={200: TemplateOut, **problem_responses(404, 422)})
@tokens.require_role(*READERS)
def get_template(path: TemplatePath) -> Any:
    """One template."""
    tpl = session_templates.get_template(db_session(), path.id)
    return session_templates.template_out(tpl).model_dump(mode="json")


@bp.delete("/session-templates/<int:id>", responses={204: None, **problem_responses(404, 422)})
@tokens.require_role(*EDITORS)
def delete_template(path: TemplatePath) -> Any:
    """Delete a template (sessions started from it stay)."""
    session = db_session()
    session_templates.delete_template(session, path.id)
    session.commit()
    return "", 204


@bp.post(
    "/session-templates/<int:id>/sessions",
    responses={201: SessionOut, **problem_responses(404, 409, *BODY_PROBLEMS)},
)
@tokens.require_role(*EDITORS)
def start_from_template(path: TemplatePath, body: SessionStart) -> Any:
    """Start the session a template describes, now or at ``start_at``, named ``name`` or as
    the template; refused as ``POST /api/sessions`` refuses (422, 409)."""
    tpl = session_templates.get_template(db_session(), path.id)
    return _start(session_templates.template_body(tpl, body))


@bp.post(
    "/sessions/<string:id>/clone",
    responses={201: SessionOut, **problem_responses(404, 409, *BODY_PROBLEMS)},
)
@tokens.require_role(*EDITORS)
def clone_session(path: SessionPath, body: SessionStart) -> Any:
    """Start a new session like this one (its enclosures and prefixes, duration, settings),
    now or at ``start_at``, named ``name`` or as the original."""
    return _start(session_templates.clone_body(db_session(), path.id, body))


def register(app: Any, app_settings: Settings) -> None:
    tokens.init_app(app, app_settings)
    mqtt_publisher.init_app(app, app_settings)
    app.register_api(bp)
