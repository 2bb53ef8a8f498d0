"""Enclosures: the registry, status history and state transitions.

Viewers read; operators and admins edit names, locations and notes; admins register (which
creates the broker account and shows its password once) and retire.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from flask import current_app
from flask_openapi3 import APIBlueprint, Tag
from pydantic import AfterValidator, Field, WithJsonSchema
from pydantic_core import to_json

from controlsvc.api import http_cache, tokens
from controlsvc.api.errors import problem_responses
from controlsvc.api.kept_bodies import KeptBodies
from controlsvc.api.pages import page_body
from controlsvc.api.web import db_session, settings
from controlsvc.broker import accounts as broker_accounts
from controlsvc.config.settings import Settings
from controlsvc.mqtt import publisher as mqtt_publisher
from controlsvc.store import enclosures, fleet_summary, session_progress
from controlsvc.store.db import utcnow
from schemas.base import StrictModel
from schemas.enums import EnclosureState, Role
from schemas.ids import ENCLOSURE_ID_PATTERN, validate_enclosure_id
from schemas.rest.common import Page, PageQuery, RestOut
from schemas.rest.enclosures import (
    EnclosureCreate,
    EnclosureListQuery,
    EnclosureOut,
    EnclosurePatch,
    EnclosureRegistered,
    StatusHistoryItem,
    StatusHistoryQuery,
)
from schemas.rest.fleet import FleetSummary
from schemas.topics import Topics

__all__ = ["EnclosurePath", "TransitionOut", "bp", "register"]

BODY_PROBLEMS = (400, 413, 415, 422)
READERS = (Role.VIEWER, Role.OPERATOR, Role.ADMIN)
EDITORS = (Role.OPERATOR, Role.ADMIN)

bp = APIBlueprint(
    "enclosures",
    __name__,
    url_prefix="/api/enclosures",
    abp_tags=[Tag(name="enclosures", description="Registry, status history, state transitions")],
    abp_security=tokens.JWT_SECURITY,
    abp_responses=problem_responses(401, 403),
)


# flask-openapi3 4.3 wants OpenAPI 3.0 ``examples`` (a dict) on path parameters, while
# ``schemas.ids.EnclosureId`` carries JSON Schema ``examples`` (a list): same validation here,
# without the examples.
PathEnclosureId = Annotated[
    str,
    AfterValidator(validate_enclosure_id),
    WithJsonSchema({"type": "string", "pattern": ENCLOSURE_ID_PATTERN, "maxLength": 63}),
]


class EnclosurePath(StrictModel):
    eid: PathEnclosureId = Field(description="Enclosure id.")


class TransitionOut(RestOut):
    at: datetime = Field(description="When the state changed (service clock).")
    from_state: EnclosureState = Field(description="The state before.")
    to_state: EnclosureState = Field(description="The state after.")
    reason: str = Field(description="Why, in words.")


EnclosurePage = Page[EnclosureOut]
StatusHistoryPage = Page[StatusHistoryItem]
TransitionPage = Page[TransitionOut]


def _outs(encs: list[Any]) -> list[dict[str, Any]]:
    """Enclosures with their part in the session they record for now."""
    grace = settings().service.session_lost_grace_s
    parts = session_progress.enclosure_sessions(db_session(), encs, grace)
    return [
        enclosures.enclosure_out(enc)
        .model_copy(update={"session": parts.get(enc.id)})
        .model_dump(mode="json")
        for enc in encs
    ]


def _out(enc: Any) -> dict[str, Any]:
    return _outs([enc])[0]


@bp.get("", responses={200: EnclosurePage, **problem_responses(422)})
@tokens.require_role(*READERS)
def list_enclosures(query: EnclosureListQuery) -> Any:
    """Enclosures by id, a page at a time; filter by derived state, search id/name/location."""
    page = enclosures.list_enclosures(
        db_session(),
        limit=query.limit,
        cursor=query.cursor,
        state=query.state,
        q=query.q,
        include_retired=query.include_retired,
    )
    return {"items": _outs(page.items), "next_cursor": page.next_cursor}


@bp.post("", responses={201: EnclosureRegistered, **problem_responses(409, 503, *BODY_PROBLEMS)})
@tokens.require_role(Role.ADMIN)
def register_enclosure(body: EnclosureCreate) -> Any:
    """Register an enclosure (admin): creates its broker account and answers its password,
    this once. 409 when it exists, or when the service does not manage broker accounts."""
    mqtt = settings().mqtt
    if not broker_accounts.manages_accounts(mqtt):
        raise broker_accounts.AccountsNotManaged(broker_accounts.NOT_MANAGED)
    session = db_session()
    enc = enclosures.register_enclosure(session, body, now=utcnow())
    password = broker_accounts.create_account(mqtt, enc.id)
    enc.broker_account_managed = True
    session.flush()
    out = EnclosureRegistered(
        **enclosures.enclosure_out(enc).model_dump(), broker_password=password
    )
    return out.model_dump(mode="json"), 201


@bp.get("/summary", responses={200: FleetSummary, 304: None})
@tokens.require_role(*READERS)
def summary() -> Any:
    """The whole fleet in one compact response: one row per enclosure not retired, ordered by
    id, with what a dashboard shows (state, since, recording, disk, clock, fps, error, open
    alerts). Rows are arrays of values in the order of ``fields``. Send the ``ETag`` back as
    ``If-None-Match``: 304 until something in it changed (a status, a state, an edit, an
    alert). gzip with ``Accept-Encoding: gzip``. While only statuses move, a process serves
    the body it built last for up to ``service.summary_cache_s`` (1 s; ``as_of`` says when
    it was read); a state, an edit, an alert or a session change is in the next read."""
    session = db_session()
    version = fleet_summary.version(session)
    return http_cache.kept_json(
        current_app.extensions[_SUMMARY_KEPT],
        "summary",
        version.settled,
        http_cache.weak_etag(version.etag),
        lambda: to_json(fleet_summary.fleet_summary(session, now=utcnow())),
    )


_SUMMARY_KEPT = "jaxmba.summary_kept"


@bp.get("/<string:eid>", responses={200: EnclosureOut, **problem_responses(404, 422)})
@tokens.require_role(*READERS)
def get_enclosure(path: EnclosurePath) -> Any:
    """One enclosure with its state and latest status."""
    return _out(enclosures.get_enclosure(db_session(), path.eid))


@bp.patch(
    "/<string:eid>", responses={200: EnclosureOut, **problem_responses(404, 409, *BODY_PROBLEMS)}
)
@tokens.require_role(*EDITORS)
def patch_enclosure(path: EnclosurePath, body: EnclosurePatch) -> Any:
    """Change name, location, notes or ``expected_online`` (operators and admins); null
    clears location or notes."""
    return _out(enclosures.update_enclosure(db_session(), path.eid, body))


@bp.delete("/<string:eid>", responses={204: None, **problem_responses(404, 503)})
@tokens.require_role(Role.ADMIN)
def retire_enclosure(path: EnclosurePath) -> Any:
    """Retire an enclosure (admin): kept for history, hidden from the list, its retained
    topics cleared and (when the service manages accounts) its broker account removed.
    503 when the broker cannot be reached (nothing changes)."""
    app_settings = settings()
    session = db_session()
    enc = enclosures.retire_enclosure(
        session,
        mqtt_publisher.publisher_of(current_app),
        Topics(app_settings.mqtt.topic_prefix),
        path.eid,
        now=utcnow(),
    )
    if enc.broker_account_managed:
        broker_accounts.remove_enclosure_account(app_settings.mqtt, enc.id)
        enc.broker_account_managed = False
    return "", 204


@bp.get(
    "/<string:eid>/status-history",
    responses={200: StatusHistoryPage, **problem_responses(404, 422)},
)
@tokens.require_role(*READERS)
def status_history(path: EnclosurePath, query: StatusHistoryQuery) -> Any:
    """Status heartbeats of an enclosure, newest first (kept for [SERVICE]
    status_history_days)."""
    page = enclosures.status_history(
        db_session(),
        path.eid,
        limit=query.limit,
        cursor=query.cursor,
        since=query.since,
        until=query.until,
    )
    return page_body(
        page, lambda row: StatusHistoryItem.model_validate(row).model_dump(mode="json")
    )


@bp.get(
    "/<string:eid>/transitions",
    responses={200: TransitionPage, **problem_responses(404, 422)},
)
@tokens.require_role(*READERS)
def transitions(path: EnclosurePath, query: PageQuery) -> Any:
    """Changes of the enclosure's derived state, newest first, with time and reason."""
    page = enclosures.list_transitions(
        db_session(), path.eid, limit=query.limit, cursor=query.cursor
    )
    return page_body(page, lambda row: TransitionOut.model_validate(row).model_dump(mode="json"))


def register(app: Any, app_settings: Settings) -> None:
    tokens.init_app(app, app_settings)
    mqtt_publisher.init_app(app, app_settings)
    app.extensions[_SUMMARY_KEPT] = KeptBodies(
        app_settings.service.summary_cache_s, gzip_level=http_cache.GZIP_LEVEL
    )
    app.register_api(bp)
