"""Session templates and clones: start the same session again (same enclosures and file
prefixes, duration and settings) from a saved template or from an earlier session.

Both only build a ``SessionCreate``; ``sessions.create_session`` checks and records it as it
does any other (unknown, busy or lost enclosures are refused the same way). Plain functions
over a ``Session`` (they flush, the caller commits). No Flask, no paho.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from controlsvc.domain.errors import Conflict, NotFound
from controlsvc.store.db import utcnow
from controlsvc.store.models.session_templates import SessionTemplate
from controlsvc.store.models.sessions import SessionEnclosure
from controlsvc.store.models.users import User
from controlsvc.store.pagination import Page
from controlsvc.store.session_views import get_session
from schemas.rest.session_templates import TemplateCreate, TemplateOut
from schemas.rest.sessions import SessionCreate, SessionEnclosureIn, SessionStart

__all__ = [
    "clone_body",
    "create_template",
    "delete_template",
    "get_template",
    "list_templates",
    "template_body",
    "template_out",
]


def template_out(tpl: SessionTemplate) -> TemplateOut:
    return TemplateOut.model_validate(tpl)


def get_template(session: Session, template_id: int) -> SessionTemplate:
    tpl = session.get(SessionTemplate, template_id)
    if tpl is None:
        raise NotFound(f"no session template {template_id}", field="id")
    return tpl


def list_templates(session: Session, *, limit: int, cursor: str | None = None) -> Page:
    """Templates by name (the cursor is the last name shown)."""
    query = select(SessionTemplate).order_by(SessionTemplate.name).limit(limit + 1)
    if cursor:
        query = query.where(SessionTemplate.name > cursor)
    rows = list(session.scalars(query))
    items = rows[:limit]
    more = len(rows) > limit
    return Page([template_out(t) for t in items], items[-1].name if more else None)


def create_template(
    session: Session, body: TemplateCreate, *, user: User | None = None, now: datetime | None = None
) -> SessionTemplate:
    """Save a template; ``Conflict`` when the name is taken. Its enclosures are checked when a
    session starts from it (they may be registered or retired in between)."""
    if session.scalar(select(SessionTemplate.id).where(SessionTemplate.name == body.name)):
        raise Conflict(f"a session template is already named {body.name!r}", field="name")
    tpl = SessionTemplate(
        name=body.name,
        enclosures=[e.model_dump() for e in body.enclosures],
        duration_s=body.duration_s,
        fragment_hourly=body.fragment_hourly,
        segment_minutes=body.segment_minutes,
        target_fps=body.target_fps,
        apply_filter=body.apply_filter,
        notes=body.notes,
        created_at=now or utcnow(),
        created_by_id=user.id if user is not None else None,
        created_by=user.email if user is not None else None,
    )
    session.add(tpl)
    session.flush()
    return tpl


def delete_template(session: Session, template_id: int) -> None:
    session.delete(get_template(session, template_id))
    session.flush()


def template_body(tpl: SessionTemplate, start: SessionStart) -> SessionCreate:
    """The session a template describes, started as ``start`` says."""
    return SessionCreate(
        name=start.name or tpl.name,
        enclosures=[SessionEnclosureIn.model_validate(e) for e in tpl.enclosures],
        duration_s=tpl.duration_s,
        fragment_hourly=tpl.fragment_hourly,
        segment_minutes=tpl.segment_minutes,
        target_fps=tpl.target_fps,
        apply_filter=tpl.apply_filter,
        notes=tpl.notes,
        start_at=start.start_at,
        allow_offline=start.allow_offline,
    )


def clone_body(session: Session, session_id: str, start: SessionStart) -> SessionCreate:
    """A new session like ``session_id``: its enclosures and prefixes, duration, settings."""
    rs = get_session(session, session_id)
    parts = session.scalars(
        select(SessionEnclosure)
        .where(SessionEnclosure.session_id == rs.id)
        .order_by(SessionEnclosure.id)
    )
    return SessionCreate(
        name=start.name or rs.name,
        enclosures=[
            SessionEnclosureIn(id=se.enclosure_id, file_prefix=se.file_prefix) for se in parts
        ],
        duration_s=rs.duration_s,
        fragment_hourly=rs.fragment_hourly,
        segment_minutes=rs.segment_minutes,
        target_fps=rs.target_fps,
        apply_filter=rs.apply_filter,
        notes=rs.notes,
        start_at=start.start_at,
        allow_offline=start.allow_offline,
    )
